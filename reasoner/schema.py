"""The diagnosis record: what a reasoner says about one image.

Imports only pydantic and the standard library (and the pure-math severity module), so any component, a model
server's post-processor included, can validate records without pulling in image or model code.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasoner.severity import LEVEL_THRESHOLDS, PHYSICAL_ORDER, level_for, overall_severity

SCHEMA_NAME = "rnr.diagnosis_record"
SCHEMA_VERSION = "1.1.0"  # 1.1: optional free-form `thinking` of thinking model variants
SCHEMA_PATH = Path(__file__).parent / "schemas" / "diagnosis_record.schema.json"

DegradationKind = Literal["noise", "blur", "motion_blur", "haze", "low_light", "jpeg", "rain", "low_resolution"]
Level = Literal["none", "mild", "moderate", "severe"]
KINDS: tuple[str, ...] = PHYSICAL_ORDER
LEVELS: tuple[str, ...] = ("none", "mild", "moderate", "severe")

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


class _Strict(BaseModel):
    # JSON has no NaN or infinity: pydantic writes them as null, which no float field reads back. Refusing them on the
    # way in makes a bad producer fail where it is, not when someone reloads the record.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ImageInfo(_Strict):
    """Identity of the diagnosed image, after orientation and colour conversion."""

    path: str | None = Field(None, max_length=4096, description="Path as given by the user, if read from a file.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the file's bytes (or of the pixels).")
    width: int = Field(ge=1, le=1_000_000, description="Width in pixels after EXIF orientation.")
    height: int = Field(ge=1, le=1_000_000, description="Height in pixels after EXIF orientation.")
    source_mode: str | None = Field(None, max_length=16, description="PIL mode of the file before conversion.")


class ReasoningStep(_Strict):
    """One link of the chain of thought: a measured or seen observation and what it implies."""

    observation: str = Field(min_length=1, max_length=600, description="What was observed, citing the evidence.")
    evidence: dict[str, float] = Field(
        default_factory=dict, max_length=16, description="Measured statistics the observation cites, by name."
    )
    inference: str = Field(min_length=1, max_length=600, description="What the observation implies.")
    kinds: list[DegradationKind] = Field(
        default_factory=list, max_length=8, description="Degradation kinds this step is about."
    )


# --- typed physical factors, one model per kind -------------------------------------------------------------


class NoiseFactors(_Strict):
    """Additive sensor noise."""

    sigma: float = Field(ge=0, le=255, description="Noise std at mid-grey, on the 0-255 scale.")
    model: Literal["gaussian", "poisson_gaussian"] = Field(
        description="gaussian: signal-independent; poisson_gaussian: variance grows with intensity."
    )


class BlurFactors(_Strict):
    """Isotropic optical blur."""

    sigma: float = Field(ge=0, le=50, description="Equivalent Gaussian std of the kernel, in pixels.")
    kernel: Literal["gaussian", "defocus"] = Field(description="Kernel shape: Gaussian or defocus disk.")


class MotionBlurFactors(_Strict):
    """Linear camera or object motion during exposure."""

    length: float = Field(ge=0, le=500, description="Length of the linear kernel, in pixels.")
    angle: float = Field(ge=0, lt=180, description="Direction of motion in degrees, counter-clockwise from +x.")


class HazeFactors(_Strict):
    """Atmospheric scattering I = J t + A (1 - t), t = exp(-beta d)."""

    transmission: float = Field(ge=0, le=1, description="Mean transmission t over the image.")
    airlight: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        min_length=3, max_length=3, description="Atmospheric light A as RGB in [0, 1]."
    )
    beta: float = Field(ge=0, le=20, description="Scattering coefficient for depth normalised to [0, 1].")


class LowLightFactors(_Strict):
    """Under-exposure out = exposure * x ** gamma, plus the sensor noise it brings."""

    exposure: float = Field(gt=0, le=1, description="Linear exposure multiplier (1 = correctly exposed).")
    gamma: float = Field(ge=0.2, le=5, description="Tone-curve exponent applied before the exposure.")


class JpegFactors(_Strict):
    """Block-DCT compression."""

    quality: int = Field(ge=1, le=100, description="IJG quality factor (100 = lightest).")


class RainFactors(_Strict):
    """Rain streaks over the scene."""

    density: float = Field(ge=0, le=1, description="Streak coverage: mean streak opacity over the image.")
    angle: float = Field(ge=0, lt=180, description="Streak direction in degrees, counter-clockwise from +x.")


class LowResolutionFactors(_Strict):
    """Detail lost to down-sampling (the image may since have been up-sampled back)."""

    scale: float = Field(ge=1, le=16, description="Linear down-sampling factor the content has suffered.")


class _DegradationBase(_Strict):
    severity: float = Field(ge=0, le=1, description="Severity in [0, 1], from the physical factor by one map.")
    level: Level = Field(description=f"none/mild/moderate/severe from severity by thresholds {LEVEL_THRESHOLDS}.")
    confidence: float = Field(ge=0, le=1, description="Probability that this kind is present.")

    @model_validator(mode="after")
    def _level_matches_severity(self):
        expected = level_for(self.severity)
        if self.level != expected:
            raise ValueError(
                f"level {self.level!r} does not match severity {self.severity:.3f} (expected {expected!r})"
            )
        return self


class NoiseDegradation(_DegradationBase):
    """Noise entry."""

    kind: Literal["noise"] = "noise"
    factors: NoiseFactors


class BlurDegradation(_DegradationBase):
    """Blur entry."""

    kind: Literal["blur"] = "blur"
    factors: BlurFactors


class MotionBlurDegradation(_DegradationBase):
    """Motion-blur entry."""

    kind: Literal["motion_blur"] = "motion_blur"
    factors: MotionBlurFactors


class HazeDegradation(_DegradationBase):
    """Haze entry."""

    kind: Literal["haze"] = "haze"
    factors: HazeFactors


class LowLightDegradation(_DegradationBase):
    """Low-light entry."""

    kind: Literal["low_light"] = "low_light"
    factors: LowLightFactors


class JpegDegradation(_DegradationBase):
    """JPEG entry."""

    kind: Literal["jpeg"] = "jpeg"
    factors: JpegFactors


class RainDegradation(_DegradationBase):
    """Rain entry."""

    kind: Literal["rain"] = "rain"
    factors: RainFactors


class LowResolutionDegradation(_DegradationBase):
    """Low-resolution entry."""

    kind: Literal["low_resolution"] = "low_resolution"
    factors: LowResolutionFactors


Degradation = Annotated[
    NoiseDegradation
    | BlurDegradation
    | MotionBlurDegradation
    | HazeDegradation
    | LowLightDegradation
    | JpegDegradation
    | RainDegradation
    | LowResolutionDegradation,
    Field(discriminator="kind"),
]

DEGRADATION_MODELS: dict[str, type[_DegradationBase]] = {
    "noise": NoiseDegradation,
    "blur": BlurDegradation,
    "motion_blur": MotionBlurDegradation,
    "haze": HazeDegradation,
    "low_light": LowLightDegradation,
    "jpeg": JpegDegradation,
    "rain": RainDegradation,
    "low_resolution": LowResolutionDegradation,
}


class Semantics(_Strict):
    """What the scene contains, as far as it changes how to restore it."""

    description: str = Field(max_length=600, description="One or two sentences describing the scene.")
    objects: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=16, description="Salient objects or regions."
    )
    faces: bool = Field(description="Faces or skin regions present (preserve identity, avoid over-smoothing).")
    text: bool = Field(description="Text or line-art present (preserve strokes, avoid hallucinated glyphs).")
    sky: bool = Field(description="Open sky present (smooth gradients, banding risk, haze cue).")
    fine_texture: bool = Field(description="Fine texture present (foliage, fabric, hair: denoise gently).")
    coarse: bool = Field(description="True when estimated from pixel statistics rather than recognised by a model.")


class Provenance(_Strict):
    """Who produced the record, how, and how long it took."""

    backend: str = Field(min_length=1, max_length=64, description="Reasoner backend name.")
    model_id: str | None = Field(None, max_length=512, description="Model id or path, if a model was used.")
    model_version: str | None = Field(None, max_length=128, description="Model revision or calibration version.")
    rnr_version: str = Field(max_length=64, description="reason-restore version that wrote the record.")
    elapsed_s: float = Field(ge=0, description="Wall time spent diagnosing this image, seconds.")
    created_at: datetime = Field(description="When the record was written (UTC).")
    settings: dict[str, str | int | float | bool] = Field(
        default_factory=dict, max_length=32, description="Decoding or estimator settings used."
    )


class DiagnosisRecord(_Strict):
    """A structured diagnosis of one image: reasoning, degradations, semantics and provenance."""

    schema_name: Literal["rnr.diagnosis_record"] = SCHEMA_NAME
    version: str = Field(SCHEMA_VERSION, pattern=r"^\d+\.\d+\.\d+$", description="Semver of the record schema.")
    image: ImageInfo
    reasoning: list[ReasoningStep] = Field(
        default_factory=list, max_length=32, description="Ordered chain of thought."
    )
    degradations: list[Degradation] = Field(
        default_factory=list, max_length=8, description="One entry per assessed kind, in physical order."
    )
    semantics: Semantics
    thinking: str | None = Field(
        None, max_length=32_000, description="A thinking model's free-form reasoning before it wrote the record."
    )
    overall_severity: float = Field(ge=0, le=1, description="1 - prod(1 - severity) over the degradations.")
    provenance: Provenance

    @model_validator(mode="before")
    @classmethod
    def _check_version(cls, data):
        if isinstance(data, dict) and "version" in data:
            check_version(str(data["version"]))
        return data

    @model_validator(mode="after")
    def _one_entry_per_kind(self):
        kinds = [d.kind for d in self.degradations]
        dup = {k for k in kinds if kinds.count(k) > 1}
        if dup:
            raise ValueError(f"degradations list a kind more than once: {sorted(dup)}")
        return self

    def severity(self, kind: str) -> float:
        """Severity of ``kind`` (0 when the record has no entry for it)."""
        return next((d.severity for d in self.degradations if d.kind == kind), 0.0)

    def severities(self) -> dict[str, float]:
        """Severity of every kind in the vocabulary, 0 for kinds without an entry."""
        return {k: self.severity(k) for k in KINDS}

    def detected(self) -> list[Degradation]:
        """Entries whose level is not "none", in physical order."""
        return sorted((d for d in self.degradations if d.level != "none"), key=lambda d: KINDS.index(d.kind))


class UnsupportedVersionError(ValueError):
    """A record written by an incompatible schema version."""


def check_version(version: str, current: str = SCHEMA_VERSION, name: str = SCHEMA_NAME) -> None:
    """Accept ``version`` if its major equals ``current``'s and its minor is not newer; raise a clear error otherwise.

    Shared by every exported document (records, traces) with its own ``current`` version and ``name``.
    """
    m, cur = _SEMVER.match(version), _SEMVER.match(current)
    if m is None:
        raise UnsupportedVersionError(f"record version {version!r} is not semver (MAJOR.MINOR.PATCH)")
    major, minor = int(m.group(1)), int(m.group(2))
    if major != int(cur.group(1)) or minor > int(cur.group(2)):
        raise UnsupportedVersionError(
            f"{name} version {version} cannot be read by this reason-restore, which reads "
            f"{cur.group(1)}.0 to {cur.group(1)}.{cur.group(2)}; convert the record or upgrade reason-restore"
        )


#: Factors that are directions of undirected lines, stored modulo their exclusive upper bound (180 degrees): a line at
#: 179.97 degrees is the line at -0.03, so wrapping is exact where clamping to just below 180 would not be.
PERIODIC_FACTORS: frozenset[str] = frozenset({"angle"})


def _bounds(metadata) -> tuple[float, float, bool, bool]:
    """(low, high, low excluded, high excluded) from a pydantic field's annotated-types constraints."""
    lo, hi, lo_open, hi_open = -math.inf, math.inf, False, False
    for c in metadata:
        if getattr(c, "ge", None) is not None:
            lo, lo_open = float(c.ge), False
        elif getattr(c, "gt", None) is not None:
            lo, lo_open = float(c.gt), True
        if getattr(c, "le", None) is not None:
            hi, hi_open = float(c.le), False
        elif getattr(c, "lt", None) is not None:
            hi, hi_open = float(c.lt), True
    return lo, hi, lo_open, hi_open


def stored_number(
    value: float,
    metadata,
    *,
    digits: int | None = None,
    periodic: bool = False,
    integer: bool = False,
    what: str = "value",
) -> float | int:
    """The value a record stores for a number whose field carries the constraints ``metadata``.

    Rounded to ``digits`` decimals (None keeps full precision; ``integer`` rounds to an int); a ``periodic`` number
    (lower bound 0, exclusive upper bound the period) is wrapped into its range before rounding and again after it,
    because rounding carries 179.96 to 180; then clamped into the bounds, an exclusive bound replaced by the nearest
    value inside it at the stored precision. Values already valid at that precision come back unchanged.

    Raises:
        ValueError: For NaN, or an infinite periodic value: no stored value would be honest, so a producer must
            leave out what it could not measure.

    """
    x = float(value)
    lo, hi, lo_open, hi_open = _bounds(metadata)
    if math.isnan(x) or (periodic and math.isinf(x)):
        raise ValueError(f"{what} is {x}: leave out what could not be measured instead of storing it")
    if periodic:
        x %= hi
    if math.isfinite(x):
        x = float(round(x)) if integer else round(x, digits) if digits is not None else x
    if periodic and x >= hi:  # rounding up, or the float modulo of a tiny negative, lands on the period itself
        x -= hi
    step = 1.0 if integer else 10.0**-digits if digits is not None else None
    if lo_open:
        lo = lo + step if step else math.nextafter(lo, math.inf)
    if hi_open:
        hi = hi - step if step else math.nextafter(hi, -math.inf)
    x = min(max(x, lo), hi)
    return int(x) if integer else x


def stored_factor(kind: str, name: str, value, digits: int | None = None):
    """The value a record stores for factor ``name`` of ``kind``: :func:`stored_number` under that field's bounds.

    Angles (:data:`PERIODIC_FACTORS`) wrap into [0, 180); integer fields round to int; list fields (the airlight) are
    stored item by item. Strings, and names the kind does not have, pass through for validation to judge.

    >>> stored_factor("motion_blur", "angle", 179.96, 1)
    0.0
    >>> stored_factor("haze", "transmission", 1.0004, 3)
    1.0
    """
    field = DEGRADATION_MODELS[kind].model_fields["factors"].annotation.model_fields.get(name)
    if field is None or isinstance(value, str):
        return value
    what = f"{kind} factor {name}"
    if get_origin(field.annotation) is list:
        meta = get_args(get_args(field.annotation)[0])[1].metadata
        return [stored_number(v, meta, digits=digits, what=f"{what}[{i}]") for i, v in enumerate(value)]
    return stored_number(
        value,
        field.metadata,
        digits=digits,
        periodic=name in PERIODIC_FACTORS,
        integer=field.annotation is int,
        what=what,
    )


def stored_evidence(values: Mapping[str, float], digits: int | None = None) -> dict[str, float]:
    """Evidence as a record stores it: each statistic rounded to ``digits``, those that are not finite left out.

    A non-finite statistic is one that could not be measured (an empty region of a degenerate image): JSON would
    write it as null, which the schema refuses, and any number put in its place would be cited as if measured.
    """
    out = {}
    for name, v in values.items():
        x = float(v)
        if math.isfinite(x):
            out[name] = round(x, digits) if digits is not None else x
    return out


def make_degradation(
    kind: str, severity: float, confidence: float, *, digits: Mapping[str, int] | None = None, **factors
) -> Degradation:
    """Build an entry of ``kind`` with its level derived from ``severity``.

    Every number goes through :func:`stored_number` under its field's bounds (factors through :func:`stored_factor`),
    so what any producer writes validates and reads back.

    Args:
        kind: The degradation kind.
        severity: Severity in [0, 1]; the level is derived from it after storing.
        confidence: Presence probability in [0, 1].
        digits: Decimal places per factor name (e.g. ``{"angle": 1}``); factors not listed keep full precision.
        **factors: The kind's physical factors, by name.

    """
    model = DEGRADATION_MODELS[kind]
    fields = model.model_fields["factors"].annotation
    digits = digits or {}
    stored = {name: stored_factor(kind, name, v, digits.get(name)) for name, v in factors.items()}
    base = _DegradationBase.model_fields
    sev = stored_number(severity, base["severity"].metadata, what=f"{kind} severity")
    conf = stored_number(confidence, base["confidence"].metadata, what=f"{kind} confidence")
    return model(severity=sev, level=level_for(sev), confidence=conf, factors=fields(**stored))


def combined_severity(degradations: list[Degradation]) -> float:
    """The record's ``overall_severity`` for these entries."""
    return overall_severity(d.severity for d in degradations)


def json_schema() -> dict:
    """The JSON Schema of :class:`DiagnosisRecord` (what is committed under ``reasoner/schemas``)."""
    schema = DiagnosisRecord.model_json_schema()
    schema["$id"] = f"https://reason-restore.dev/schemas/{SCHEMA_NAME}/{SCHEMA_VERSION}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def json_schema_text() -> str:
    """:func:`json_schema` serialised exactly as committed."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
