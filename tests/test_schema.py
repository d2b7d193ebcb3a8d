import json
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from reasoner import severity as S
from reasoner.schema import (
    KINDS,
    SCHEMA_PATH,
    DiagnosisRecord,
    ImageInfo,
    Provenance,
    ReasoningStep,
    Semantics,
    UnsupportedVersionError,
    combined_severity,
    json_schema_text,
    make_degradation,
)

FACTORS = {
    "noise": {"sigma": 12.5, "model": "poisson_gaussian"},
    "blur": {"sigma": 1.7, "kernel": "defocus"},
    "motion_blur": {"length": 14.0, "angle": 33.0},
    "haze": {"transmission": 0.45, "airlight": [0.9, 0.91, 0.95], "beta": 1.6},
    "low_light": {"exposure": 0.2, "gamma": 1.4},
    "jpeg": {"quality": 23},
    "rain": {"density": 0.03, "angle": 95.0},
    "low_resolution": {"scale": 3.0},
}


def make_record(**over) -> DiagnosisRecord:
    degs = [make_degradation(k, 0.1 + 0.1 * i, 0.9, **FACTORS[k]) for i, k in enumerate(KINDS)]
    fields = dict(
        image=ImageInfo(path="x.png", sha256="0" * 64, width=640, height=480, source_mode="RGB"),
        reasoning=[
            ReasoningStep(observation="sigma 12", evidence={"sigma": 12.0}, inference="noisy", kinds=["noise"])
        ],
        degradations=degs,
        semantics=Semantics(
            description="d", objects=["sky"], faces=False, text=True, sky=True, fine_texture=False, coarse=True
        ),
        overall_severity=combined_severity(degs),
        provenance=Provenance(
            backend="measure",
            rnr_version="0.1.0",
            elapsed_s=0.05,
            created_at=datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=timezone.utc),
            settings={"threshold": 0.5},
        ),
    )
    fields.update(over)
    return DiagnosisRecord(**fields)


def test_round_trip_json_exact():
    rec = make_record()
    text = rec.model_dump_json()
    back = DiagnosisRecord.model_validate_json(text)
    assert back == rec
    assert back.model_dump_json() == text


def test_committed_json_schema_matches_models():
    # Golden test: regenerate with `rnr schema --out reasoner/schemas/diagnosis_record.schema.json`.
    assert SCHEMA_PATH.read_text() == json_schema_text()


def test_schema_lists_every_kind_and_bounds():
    schema = json.loads(json_schema_text())
    text = json.dumps(schema)
    for kind in KINDS:
        assert f'"const": "{kind}"' in text
    sev = schema["$defs"]["NoiseDegradation"]["properties"]["severity"]
    assert sev["minimum"] == 0 and sev["maximum"] == 1


@pytest.mark.parametrize(
    "version, ok",
    [
        ("1.1.0", True),  # current
        ("1.0.0", True),  # older minor: records without `thinking`
        ("1.1.7", True),  # newer patch is compatible
        ("2.0.0", False),  # unknown major
        ("0.9.0", False),  # older major
        ("1.9.0", False),  # newer minor than this build knows
        ("one", False),  # not semver
    ],
)
def test_version_policy(version, ok):
    data = make_record().model_dump(mode="json") | {"version": version}
    if ok:
        DiagnosisRecord.model_validate(data)
    else:
        with pytest.raises(ValidationError, match="version"):
            DiagnosisRecord.model_validate(data)


def test_unknown_major_message_is_clear():
    data = make_record().model_dump(mode="json") | {"version": "2.0.0"}
    with pytest.raises(ValidationError) as e:
        DiagnosisRecord.model_validate(data)
    assert "upgrade reason-restore" in str(e.value)
    assert isinstance(e.value.errors()[0]["ctx"]["error"], UnsupportedVersionError)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(extra_field=1),  # extra="forbid"
        lambda d: d["degradations"][0].update(severity=1.5),  # bound
        lambda d: d["degradations"][0].update(level="severe"),  # level contradicts severity
        lambda d: d["degradations"][0]["factors"].update(quality=50),  # factors of another kind
        lambda d: d["degradations"].append(dict(d["degradations"][0])),  # duplicate kind
        lambda d: d["image"].update(sha256="xyz"),  # not a sha256
        lambda d: d["degradations"][3]["factors"].update(airlight=[1.0, 1.0]),  # airlight needs RGB
        lambda d: d.update(schema_name="other"),  # wrong schema name
    ],
)
def test_invalid_records_rejected(mutate):
    data = make_record().model_dump(mode="json")
    mutate(data)
    with pytest.raises(ValidationError):
        DiagnosisRecord.model_validate(data)


def test_severity_helpers():
    rec = make_record()
    assert rec.severity("noise") == pytest.approx(0.7)  # noise is 7th in physical order
    assert set(rec.severities()) == set(KINDS)
    empty = make_record(degradations=[], overall_severity=0.0)
    assert empty.severity("noise") == 0.0 and empty.detected() == []


@given(st.floats(0, 1))
def test_levels_follow_thresholds(s):
    lvl = S.level_for(s)
    mild, moderate, severe = S.LEVEL_THRESHOLDS
    assert lvl == ("severe" if s >= severe else "moderate" if s >= moderate else "mild" if s >= mild else "none")


# (forward map, inverse, two parameters in increasing order, whether severity rises with the parameter)
MAPS = [
    (S.noise_severity, S.noise_sigma, (5, 40), True),
    (S.blur_severity, S.blur_sigma, (0.8, 4), True),
    (S.motion_severity, S.motion_length, (5, 31), True),
    (S.haze_severity, S.haze_transmission, (0.3, 0.8), False),
    (S.jpeg_severity, S.jpeg_quality, (15, 85), False),
    (S.rain_severity, S.rain_coverage, (0.01, 0.05), True),
    (S.low_resolution_severity, S.low_resolution_scale, (2, 4), True),
]


@pytest.mark.parametrize("fwd, inv, params, rising", MAPS)
def test_severity_maps_monotone_and_invertible(fwd, inv, params, rising):
    lo, hi = fwd(params[0]), fwd(params[1])
    assert (lo < hi) if rising else (lo > hi)
    for p in params:
        assert fwd(inv(fwd(p))) == pytest.approx(fwd(p), abs=0.01)


def test_low_light_severity_monotone_in_both_parameters():
    assert S.low_light_severity(0.1, 1.5) > S.low_light_severity(0.3, 1.5)  # less exposure
    assert S.low_light_severity(0.2, 2.0) > S.low_light_severity(0.2, 1.2)  # stronger gamma
    assert S.low_light_gain(0.2, 1.5) == pytest.approx(S.low_light_gain_for(S.low_light_severity(0.2, 1.5)))
