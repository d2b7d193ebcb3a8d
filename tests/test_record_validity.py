"""Every record a producer writes validates against the schema and reads back: no NaN or infinity (JSON writes them as
null), every factor inside its bounds after rounding, angles in [0, 180), and images down to 1x1 diagnosed."""

import json
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reasoner.measure.backend as measure_mod
from reasoner.measure import MIN_SIDE, MeasureReasoner
from reasoner.measure.features import measure_all
from reasoner.schema import (
    DEGRADATION_MODELS,
    KINDS,
    PERIODIC_FACTORS,
    DiagnosisRecord,
    ImageInfo,
    Provenance,
    make_degradation,
    stored_evidence,
    stored_factor,
)
from reasoner.vlm_output import completion_json, completion_schema, parse_completion, to_record
from rl import degradations as D
from rl.ground_truth import ground_truth
from rl.photos import load_photo

# Small images diagnose in a few milliseconds: many examples still keep the file well under half a minute.
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def measure():
    return MeasureReasoner()


#: Fields that may be null in a record; a null anywhere else is a number that was not finite.
_OPTIONAL = ("path", "source_mode", "model_id", "model_version", "thinking")


def _leaves(obj, where=""):
    """Every (path, scalar) in a dumped record."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{where}[{i}]")
    else:
        yield where, obj


def assert_valid(rec: DiagnosisRecord) -> None:
    """What a user reloading the record relies on: it validates from its own JSON, unchanged, all numbers finite."""
    text = rec.model_dump_json()
    back = DiagnosisRecord.model_validate_json(text)
    assert back == rec
    assert back.model_dump_json() == text
    leaves = list(_leaves(json.loads(text)))
    bad = [(p, v) for p, v in leaves if v is None and p.rsplit(".", 1)[1] not in _OPTIONAL]
    bad += [(p, v) for p, v in leaves if isinstance(v, float) and not math.isfinite(v)]
    assert not bad, bad
    # Statistics are cited in prose too: a NaN formatted into a sentence is as wrong as one in the evidence.
    assert not re.search(r"\b(nan|inf)\b", text), re.search(r".{60}\b(nan|inf)\b.{20}", text)
    for d in rec.degradations:
        for name in PERIODIC_FACTORS & set(type(d.factors).model_fields):
            assert 0.0 <= getattr(d.factors, name) < 180.0


# --- images ----------------------------------------------------------------------------------------------------

#: Shapes far from square: single rows and columns, and strips just below and at the minimum side.
HUGE_ASPECT = [(1, 512), (512, 1), (2, 300), (300, 2), (7, 64), (64, 7), (8, 200), (200, 8)]
#: Stripe directions (degrees) where a direction is about to wrap, plus two ordinary ones.
EDGE_ANGLES = [0.0, 0.01, 0.04, 0.05, 179.94, 179.95, 179.96, 179.99, 90.0, 45.0]


@st.composite
def adversarial_images(draw):
    h, w = draw(st.one_of(st.tuples(st.integers(1, 16), st.integers(1, 16)), st.sampled_from(HUGE_ASPECT)))
    content = draw(st.sampled_from(["constant", "noise", "extremes", "hot_pixel", "stripes", "checkerboard"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if content == "constant":
        level = draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0))
        img = np.full((h, w, 3), level, np.float32)
    elif content == "noise":  # NaN-free float noise
        img = rng.random((h, w, 3), dtype=np.float32)
    elif content == "extremes":  # only 0 and 1, per channel
        img = rng.integers(0, 2, (h, w, 3)).astype(np.float32)
    elif content == "hot_pixel":
        back = draw(st.sampled_from([0.0, 1.0]))
        img = np.full((h, w, 3), back, np.float32)
        img[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = 1.0 - back
    elif content == "stripes":
        angle = math.radians(draw(st.sampled_from(EDGE_ANGLES) | st.floats(0.0, 180.0, exclude_max=True)))
        period = draw(st.floats(2.0, 8.0))
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * math.sin(angle) + yy * math.cos(angle)) / period)
        img = np.repeat(wave[..., None], 3, axis=2).astype(np.float32)
    else:
        cell = draw(st.integers(1, 4))
        img = np.repeat((((yy // cell) + (xx // cell)) % 2)[..., None], 3, axis=2).astype(np.float32)
    if draw(st.booleans()):
        img = np.rint(img * 255.0).astype(np.uint8)  # as decoded from an 8-bit file
    return content, img


@FAST
@given(adversarial_images())
def test_measure_records_are_valid_for_any_image(measure, case):
    _, img = case
    rec = measure.diagnose(img)
    assert_valid(rec)
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE:
        assert rec.degradations == [] and f"{w}x{h} px" in rec.reasoning[0].observation


@pytest.fixture(scope="module")
def photo():
    return np.ascontiguousarray(load_photo("astronaut")[64:256, 64:256])


@settings(max_examples=12, deadline=None)
@given(
    angle=st.floats(179.5, 180.0, exclude_max=True) | st.floats(0.0, 0.5),
    length=st.sampled_from([14.0, 24.0, 31.0]),
)
def test_near_horizontal_motion_blur_is_stored_in_range(measure, photo, angle, length):
    # The real path of the GRPO crash: a motion within a hair of horizontal, measured end to end.
    blurred = np.rint(D.apply(photo, [D.MotionBlurParams(length=length, angle=angle)]) * 255.0).astype(np.uint8)
    assert_valid(measure.diagnose(blurred))


# --- regressions -----------------------------------------------------------------------------------------------

#: (kind, degradation that makes measure report it, statistic the angle is read from).
_ANGLE_SOURCES = {
    "motion_blur": (D.MotionBlurParams(length=28.0, angle=0.0), "orient_min_angle"),
    "rain": (D.RainParams(coverage=0.07, angle=100.0, seed=4), "rain_angle"),
}


@pytest.fixture(scope="module")
def angle_images(photo):
    out = {}
    for kind, (params, _) in _ANGLE_SOURCES.items():
        img = np.rint(D.apply(photo, [params]) * 255.0) / 255.0
        out[kind] = (img.astype(np.float32), measure_all(img.astype(np.float32)))
    return out


@pytest.mark.parametrize(
    "kind, measured, stored",
    [
        # The GRPO crash: 179.96 rounds to 180.0, outside angle < 180; the same line as 0.0.
        ("motion_blur", 179.96, 0.0),
        # Just below the carry: stays where it is.
        ("motion_blur", 179.94, 179.9),
        # The statistic is taken modulo 180 in floating point: a tiny negative angle comes out as exactly 180.0.
        ("motion_blur", 180.0, 0.0),
        # Within 0.05 degrees of horizontal from the other side: rounds down to 0.0 as before.
        ("motion_blur", 0.04, 0.0),
        # The streak angle had the same rounding: near-horizontal rain was as exposed.
        ("rain", 179.97, 0.0),
        # An ordinary streak angle is stored exactly as before.
        ("rain", 100.04, 100.0),
    ],
)
def test_angle_at_the_wrap_is_stored_in_range(monkeypatch, measure, angle_images, kind, measured, stored):
    img, feats = angle_images[kind]
    key = _ANGLE_SOURCES[kind][1]
    monkeypatch.setattr(measure_mod, "measure_all", lambda rgb, *_: {**feats, key: measured})
    # the forced angle is not the streaks' own, along which they would be a few lines (rain_of_few_lines): what is
    # exercised here is how an angle is stored, so that rule stays out
    monkeypatch.setattr(measure_mod, "rain_of_few_lines", lambda degradations, *_: (degradations, {}))
    rec = measure.diagnose(img)
    entry = next((d for d in rec.degradations if d.kind == kind), None)
    assert entry is not None, f"{kind} not reported, so its angle is not exercised"
    assert entry.factors.angle == stored
    assert_valid(rec)


@pytest.mark.parametrize(
    "h, w, content",
    [
        # A single pixel: every local statistic was NaN and written as null.
        (1, 1, "noise"),
        (1, 1, "constant"),
        # One row / one column of two pixels.
        (1, 2, "noise"),
        (2, 1, "constant"),
        # 2x2: the Haar step has one coefficient, the flat-block noise estimate none.
        (2, 2, "noise"),
        # A one-pixel-high strip: long, but nothing vertical to measure.
        (1, 512, "noise"),
        (512, 1, "noise"),
        # 3x3 and 7x7 validated before, but cited "p=nan" in every verdict: the rain cells were empty.
        (3, 3, "noise"),
        (7, 7, "constant"),
    ],
)
def test_tiny_images_get_a_valid_unassessed_record(measure, h, w, content):
    img = np.random.default_rng(0).random((h, w, 3), dtype=np.float32) if content == "noise" else None
    img = img if img is not None else np.full((h, w, 3), 0.4, np.float32)
    rec = measure.diagnose(img)
    assert_valid(rec)
    assert rec.degradations == [] and rec.overall_severity == 0.0
    first = rec.reasoning[0]
    assert f"{w}x{h} px" in first.observation and str(MIN_SIDE) in first.observation
    assert "not assessed" in first.inference
    assert "lum_mean" in first.evidence  # what can be measured at any size is still cited


def test_horizontal_motion_on_noise_end_to_end(measure):
    # Found by search, no patching: horizontal motion over uniform noise measures orient_min_angle 179.990, which the
    # old code rounded to 180.0 and refused to store (a ValidationError out of diagnose).
    base = np.random.default_rng(24).random((128, 128, 3), dtype=np.float32)
    img = np.rint(D.apply(base, [D.MotionBlurParams(length=15.0, angle=0.0)]) * 255.0).astype(np.uint8)
    measured = measure_all(img.astype(np.float32) / 255.0)["orient_min_angle"]
    assert measured > 179.95, f"the case no longer lands on the wrap ({measured:.3f}); pick another seed"
    rec = measure.diagnose(img)
    assert_valid(rec)
    assert next(d for d in rec.degradations if d.kind == "motion_blur").factors.angle == 0.0


def test_minimum_side_is_assessed(measure):
    # The boundary: from MIN_SIDE up every statistic is defined and the calibration runs as usual.
    img = np.random.default_rng(1).random((MIN_SIDE, 40, 3), dtype=np.float32)
    rec = measure.diagnose(img)
    assert_valid(rec)
    assert len(rec.reasoning) == 10 and "not assessed" not in rec.reasoning[0].inference


def test_non_finite_statistic_is_not_assessed(monkeypatch, measure):
    # A degenerate input no size check foresaw: one NaN statistic spoils the calibration, so nothing is assessed.
    img = np.random.default_rng(2).random((32, 32, 3), dtype=np.float32)
    real = measure_all(img)
    monkeypatch.setattr(measure_mod, "measure_all", lambda rgb, *_: {**real, "edge_width": float("nan")})
    rec = measure.diagnose(img)
    assert_valid(rec)
    assert rec.degradations == [] and "edge_width" in rec.reasoning[0].observation


# --- the stored value of a factor ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, name, value, digits, stored",
    [
        # Periodic: wrapped after rounding, not clamped to 179.9 (that would be a different line).
        ("motion_blur", "angle", 179.96, 1, 0.0),
        ("rain", "angle", 180.0, None, 0.0),
        # Float modulo of a tiny negative is exactly the period; it must still wrap to 0.
        ("motion_blur", "angle", -1e-20, None, 0.0),
        ("motion_blur", "angle", -0.03, 1, 0.0),
        ("rain", "angle", 359.94, 1, 179.9),
        # Inclusive upper bound: rounding up past it is clamped back.
        ("haze", "transmission", 1.0004, 3, 1.0),
        ("noise", "sigma", 255.006, 2, 255.0),
        # Saturated estimates clamp to the bound.
        ("blur", "sigma", math.inf, 2, 50.0),
        ("low_resolution", "scale", 0.5, 2, 1.0),
        # Exclusive lower bound (exposure > 0): the smallest positive value at the stored precision.
        ("low_light", "exposure", 0.0004, 3, 0.001),
        ("low_light", "exposure", 0.0, None, 5e-324),
        # Integer field: rounded to an int inside 1..100.
        ("jpeg", "quality", 100.6, None, 100),
        ("jpeg", "quality", 0.2, None, 1),
        # List field: item by item under the item bounds.
        ("haze", "airlight", [1.2, -0.1, 0.5004], 3, [1.0, 0.0, 0.5]),
        # Valid values at full precision come back unchanged.
        ("motion_blur", "angle", 179.99999999999997, None, 179.99999999999997),
        ("rain", "density", 0.012345678, None, 0.012345678),
        # Strings are for validation to judge.
        ("noise", "model", "gaussian", None, "gaussian"),
    ],
)
def test_stored_factor(kind, name, value, digits, stored):
    assert stored_factor(kind, name, value, digits) == stored


@pytest.mark.parametrize(
    "kind, name, value",
    [
        ("noise", "sigma", math.nan),  # not measured: no stored value would be honest
        ("motion_blur", "angle", math.inf),  # an infinite angle has no direction
    ],
)
def test_stored_factor_refuses_what_was_not_measured(kind, name, value):
    with pytest.raises(ValueError, match="could not be measured"):
        stored_factor(kind, name, value)


def test_stored_evidence_leaves_out_non_finite():
    assert stored_evidence({"a": 1.23456, "b": math.nan, "c": -math.inf, "d": 2}, 3) == {"a": 1.235, "d": 2.0}


def _factor_values(kind: str):
    """Any factors for ``kind``: numbers anywhere on the real line, the schema's own choices for strings."""
    fields = DEGRADATION_MODELS[kind].model_fields["factors"].annotation.model_fields
    out = {}
    for name, f in fields.items():
        choices = getattr(f.annotation, "__args__", ())
        if all(isinstance(c, str) for c in choices) and choices:
            out[name] = st.sampled_from(choices)
        elif f.annotation is int:
            out[name] = st.integers(-(10**6), 10**6)
        else:
            number = st.floats(allow_nan=False, allow_infinity=name not in PERIODIC_FACTORS)
            out[name] = st.lists(number, min_size=3, max_size=3) if name == "airlight" else number
    return st.fixed_dictionaries(out)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    kind=st.sampled_from(KINDS),
    severity=st.floats(allow_nan=False),
    confidence=st.floats(allow_nan=False),
    digits=st.sampled_from([None, 0, 1, 2, 3, 4]),
)
def test_make_degradation_stores_any_finite_estimate(data, kind, severity, confidence, digits):
    factors = data.draw(_factor_values(kind))
    entry = make_degradation(kind, severity, confidence, digits={n: digits for n in factors}, **factors)
    back = type(entry).model_validate_json(entry.model_dump_json())
    assert back == entry


# --- the other producers -----------------------------------------------------------------------------------------


def _from_json_schema(schema: dict, defs: dict) -> st.SearchStrategy:
    """Any JSON value the (completion) schema admits; fails on a keyword it does not know, so none is skipped."""
    node = {k: v for k, v in schema.items() if k not in ("title", "description", "$defs")}
    if "$ref" in node:
        return _from_json_schema(defs[node.pop("$ref").rsplit("/", 1)[1]], defs)
    if "anyOf" in node:
        return st.one_of([_from_json_schema(n, defs) for n in node.pop("anyOf")])
    kind = node.pop("type", None)
    if "enum" in node:
        out = st.sampled_from(node.pop("enum"))
    elif kind == "object":
        assert node.pop("additionalProperties") is False and set(node.pop("required")) == set(node["properties"])
        out = st.fixed_dictionaries({k: _from_json_schema(v, defs) for k, v in node.pop("properties").items()})
    elif kind == "array":
        items = _from_json_schema(node.pop("items"), defs)
        out = st.lists(items, min_size=node.pop("minItems", 0), max_size=node.pop("maxItems", 8))
    elif kind == "string":
        out = st.from_regex(node.pop("pattern"), fullmatch=True)
    elif kind in ("number", "integer"):
        ex_lo, ex_hi = "exclusiveMinimum" in node, "exclusiveMaximum" in node
        lo = node.pop("exclusiveMinimum") if ex_lo else node.pop("minimum", None)
        hi = node.pop("exclusiveMaximum") if ex_hi else node.pop("maximum", None)
        if kind == "integer":
            out = st.integers(None if lo is None else lo + ex_lo, None if hi is None else hi - ex_hi)
        else:
            out = st.floats(lo, hi, exclude_min=ex_lo, exclude_max=ex_hi, allow_nan=False, allow_infinity=False)
    elif kind == "boolean":
        out = st.booleans()
    elif kind == "null":
        out = st.none()
    else:
        raise AssertionError(f"schema type not covered: {kind!r}")
    assert not node, f"schema keywords not covered: {sorted(node)}"
    return out


_COMPLETIONS = _from_json_schema(completion_schema(), completion_schema()["$defs"])
_PROVENANCE = Provenance(
    backend="qwen3vl", rnr_version="0.0.0", elapsed_s=0.5, created_at="2026-12-01T00:00:00Z", settings={"t": 0.7}
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completion=_COMPLETIONS, thinking=st.none() | st.text(max_size=40))
def test_every_admitted_completion_yields_a_valid_record(completion, thinking):
    # What a grammar-constrained model writes, as text, through the same parse and conversion the backends use.
    text = json.dumps(completion, ensure_ascii=False, separators=(",", ":"))
    parsed_thinking, parsed = parse_completion(text)
    info = ImageInfo(path="a.png", sha256="0" * 64, width=640, height=480, source_mode="RGB")
    rec = to_record(parsed, info, _PROVENANCE, thinking)
    assert_valid(rec)
    assert parse_completion(completion_json(parsed))[1] == parsed


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_kinds=st.integers(0, 3), size=st.sampled_from([(1, 1), (9, 40), (48, 32)]))
def test_ground_truth_records_are_valid(seed, n_kinds, size):
    ops = D.sample_ops(np.random.default_rng(seed), None, n_kinds)
    info = ImageInfo(sha256="0" * 64, width=size[1], height=size[0], source_mode="RGB")
    assert_valid(ground_truth(ops, info, seed=seed))
