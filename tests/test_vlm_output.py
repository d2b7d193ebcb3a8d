"""The completion contract between vision-language reasoners and records."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasoner.measure import MeasureReasoner
from reasoner.schema import KINDS
from reasoner.vlm_output import (
    Completion,
    CompletionError,
    completion_json,
    completion_schema,
    from_record,
    parse_completion,
    split_thinking,
    to_record,
)
from rl.degradations import BlurParams, NoiseParams, apply
from rl.photos import load_photo


@pytest.fixture(scope="module")
def record():
    img = load_photo("astronaut")[:256, :256]
    return MeasureReasoner().diagnose(apply(img, [NoiseParams(20.0, seed=1), BlurParams("gaussian", sigma=2.0)]))


def test_round_trip_through_json(record):
    text = completion_json(from_record(record))
    thinking, comp = parse_completion(text)
    assert thinking is None
    back = to_record(comp, record.image, record.provenance)
    assert [d.kind for d in back.degradations] == [d.kind for d in record.degradations]
    assert back.severities() == pytest.approx(record.severities())
    assert back.overall_severity == pytest.approx(record.overall_severity)
    assert not back.semantics.coarse


@pytest.mark.parametrize(
    ("reply", "thinking"),
    [
        ("<think>dark, grainy</think>\n{}", "dark, grainy"),  # thinking variant
        ("dark, grainy</think>{}", "dark, grainy"),  # the opening tag was in the prompt
        ("Let me look.\n{}", "Let me look."),  # free text before the JSON
        ("{}", None),
    ],
)
def test_split_thinking(reply, thinking):
    assert split_thinking(reply) == (thinking, "{}")


def test_thinking_is_kept_in_the_record(record):
    thinking, comp = parse_completion("<think>The sky is grey.</think>" + completion_json(from_record(record)))
    assert to_record(comp, record.image, record.provenance, thinking).thinking == "The sky is grey."


@pytest.mark.parametrize(
    "reply",
    [
        "",  # nothing
        "not json",
        '{"reasoning": []}',  # too few steps, missing keys
        '{"reasoning": [{"observation": "a\\nb", "inference": "x", "kinds": []}]}',  # control character
    ],
)
def test_invalid_replies_fail_in_one_line(reply):
    with pytest.raises(CompletionError) as e:
        parse_completion(reply)
    assert "\n" not in str(e.value)


def test_schema_has_one_key_per_kind_and_no_levels():
    schema = completion_schema()
    degs = schema["$defs"]["DegradationsOut"]
    assert list(degs["properties"]) == list(KINDS)
    assert set(degs["required"]) == set(KINDS)
    assert "level" not in json.dumps(schema)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_schema_valid_completion_becomes_a_valid_record(record, data):
    # Whatever a grammar lets through (any severities, any subset of kinds) assembles into a valid record.
    sev = {k: data.draw(st.one_of(st.none(), st.floats(0, 1))) for k in KINDS}
    base = json.loads(completion_json(from_record(record)))
    factors = {
        "noise": {"sigma": 10.0, "model": "gaussian"},
        "blur": {"sigma": 1.5, "kernel": "defocus"},
        "motion_blur": {"length": 9.0, "angle": 179.9},
        "haze": {"transmission": 0.0, "airlight": [1, 1, 1], "beta": 20},
        "low_light": {"exposure": 1.0, "gamma": 0.2},
        "jpeg": {"quality": 1},
        "rain": {"density": 1.0, "angle": 0.0},
        "low_resolution": {"scale": 16},
    }
    base["degradations"] = {
        k: None if s is None else {"severity": s, "confidence": 0.5, "factors": factors[k]} for k, s in sev.items()
    }
    comp = Completion.model_validate(base)
    rec = to_record(comp, record.image, record.provenance)
    assert {d.kind for d in rec.degradations} == {k for k, s in sev.items() if s is not None}
