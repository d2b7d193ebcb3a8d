"""The one table of degradation kinds: what each kind *is*, in one place.

Every per-package table (synthesis models, evidence, calibration heads, operators, instruction phrases, policy
vocabulary) is keyed by :data:`KINDS` and checked against it with :func:`check_table`, so a kind added here and
missed elsewhere fails at import or in ``tests/test_kinds.py``, not at a user's run.

A kind is: its name and physical order (synthesis applies mixtures in this order, restoration reverses it), whether
it removes high frequencies (``lowpass``: restored by a deconvolution or super-resolution, whose strength is never
raised on a retry because a residual means a wrong kernel, not a weak one), its typed factor model from
:mod:`reasoner.schema`, and its severity map (:mod:`reasoner.severity`) both ways: factors to severity, and the
factors a severity implies (so an edited severity moves its factors, and edited factors move the severity).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from reasoner import schema
from reasoner import severity as sev


@dataclass(frozen=True)
class KindSpec:
    """One degradation kind."""

    name: str
    order: int
    lowpass: bool
    factors: type[BaseModel]
    parameter: str
    severity: Callable[[Mapping], float]
    implied: Callable[[float], dict]
    summary: str

    def severity_of(self, factors: Mapping | BaseModel) -> float:
        """Severity in [0, 1] of these factors (a dict or the factor model)."""
        f = factors.model_dump() if isinstance(factors, BaseModel) else factors
        return float(self.severity(f))

    def factors_for(self, severity: float, base: Mapping | None = None) -> dict:
        """Factors with the severity map's parameter set for ``severity``, the other factors kept from ``base``.

        >>> KINDS["jpeg"].factors_for(0.5)
        {'quality': 55}
        >>> KINDS["noise"].factors_for(0.0, {"sigma": 20.0, "model": "gaussian"})
        {'sigma': 3.0, 'model': 'gaussian'}
        """
        return {**(dict(base) if base else {}), **self.implied(severity)}


def _low_light_implied(s: float) -> dict:
    # One image cannot split a gain into exposure and gamma; at gamma 1 the whole gain is exposure.
    return {"exposure": max(sev.low_light_gain_for(s), 1e-3), "gamma": 1.0}


_SPECS = (
    KindSpec("haze", 0, False, schema.HazeFactors, "transmission",
             lambda f: sev.haze_severity(f["transmission"]),
             lambda s: {"transmission": sev.haze_transmission(s)},
             "atmospheric scattering: contrast and colour fade towards the airlight with depth"),
    KindSpec("rain", 1, False, schema.RainFactors, "density",
             lambda f: sev.rain_severity(f["density"]),
             lambda s: {"density": sev.rain_coverage(s)},
             "rain streaks over the scene"),
    KindSpec("motion_blur", 2, True, schema.MotionBlurFactors, "length",
             lambda f: sev.motion_severity(f["length"]),
             lambda s: {"length": sev.motion_length(s)},
             "linear camera or object motion during the exposure"),
    KindSpec("blur", 3, True, schema.BlurFactors, "sigma",
             lambda f: sev.blur_severity(f["sigma"]),
             lambda s: {"sigma": sev.blur_sigma(s)},
             "isotropic optical blur (defocus or Gaussian)"),
    KindSpec("low_resolution", 4, True, schema.LowResolutionFactors, "scale",
             lambda f: sev.low_resolution_severity(f["scale"]),
             lambda s: {"scale": sev.low_resolution_scale(s)},
             "detail lost to down-sampling"),
    KindSpec("low_light", 5, False, schema.LowLightFactors, "exposure",
             lambda f: sev.low_light_severity(f["exposure"], f["gamma"]),
             _low_light_implied,
             "under-exposure: a dark, compressed tone curve"),
    KindSpec("noise", 6, False, schema.NoiseFactors, "sigma",
             lambda f: sev.noise_severity(f["sigma"]),
             lambda s: {"sigma": sev.noise_sigma(s)},
             "sensor noise"),
    KindSpec("jpeg", 7, False, schema.JpegFactors, "quality",
             lambda f: sev.jpeg_severity(f["quality"]),
             lambda s: {"quality": sev.jpeg_quality(s)},
             "block-DCT compression artefacts"),
)  # fmt: skip

#: Every kind, in physical (forward) order.
KINDS: dict[str, KindSpec] = {k.name: k for k in _SPECS}
#: Kinds that remove high frequencies (restored by deconvolution / super-resolution).
LOWPASS: frozenset[str] = frozenset(k.name for k in _SPECS if k.lowpass)

if tuple(KINDS) != sev.PHYSICAL_ORDER or set(KINDS) != set(schema.DEGRADATION_MODELS):  # pragma: no cover
    raise ImportError("reasoner.kinds, reasoner.severity.PHYSICAL_ORDER and reasoner.schema disagree on the kinds")
for _k in _SPECS:  # pragma: no branch
    if schema.DEGRADATION_MODELS[_k.name].model_fields["factors"].annotation is not _k.factors:  # pragma: no cover
        raise ImportError(f"reasoner.kinds: {_k.name} factors differ from the schema's")


def restoration_order(kinds: Iterable[str]) -> list[str]:
    """``kinds`` in restoration order: the reverse of the physical order (compression first, scene last).

    >>> restoration_order(["haze", "jpeg", "noise"])
    ['jpeg', 'noise', 'haze']
    """
    return sorted(set(kinds), key=lambda k: -KINDS[k].order)


def check_table(table: Mapping[str, object], what: str, *, allow_extra: bool = False) -> Mapping[str, object]:
    """Return ``table`` if it has an entry for every kind (and, unless ``allow_extra``, nothing else).

    Raises:
        ImportError: Naming the table and the kinds it misses, so an incomplete table fails at import.

    """
    missing = [k for k in KINDS if k not in table]
    extra = [] if allow_extra else [k for k in table if k not in KINDS]
    if missing or extra:
        raise ImportError(f"{what}: missing kinds {missing}, unknown kinds {extra}; see reasoner/kinds.py")
    return table
