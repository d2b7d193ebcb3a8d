"""The one table of degradation kinds (``reasoner.kinds``) and every per-kind table keyed by it.

A kind added to ``reasoner/kinds.py`` (and the schema) but missed by a table fails here, or at import through
``check_table``; a severity map whose two directions disagree fails the property test.
"""

from typing import get_args

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasoner import schema
from reasoner import severity as sev
from reasoner.kinds import KINDS, LOWPASS, check_table, restoration_order

#: Factors of each kind other than its severity map's parameter (what ``factors_for`` keeps from ``base``).
BASE = {
    "haze": {"airlight": [0.9, 0.9, 0.95], "beta": 1.0},
    "rain": {"angle": 95.0},
    "motion_blur": {"angle": 30.0},
    "blur": {"kernel": "gaussian"},
    "low_resolution": {},
    "low_light": {},
    "noise": {"model": "gaussian"},
    "jpeg": {},
}
#: How far severity_of(factors_for(s)) may be from s: half a quality step for JPEG (an integer factor), float
#: round-off elsewhere.
TOLERANCE = {kind: 1e-9 for kind in KINDS} | {"jpeg": 0.5 / 90 + 1e-9}


def _reasoner_tables() -> dict[str, object]:
    """Every per-kind table in ``reasoner``, by name (the lead extends this to restorer, rl and agent)."""
    from reasoner.measure import ENTRIES, EVIDENCE, IMPLIED
    from reasoner.measure.calibration import FACTOR_HEADS
    from reasoner.vlm_output import ENTRY_MODELS, DegradationsOut

    return {
        "reasoner.measure.entries.ENTRIES": ENTRIES,
        "reasoner.measure.entries.IMPLIED": IMPLIED,
        "reasoner.measure.reasoning.EVIDENCE": EVIDENCE,
        "reasoner.measure.calibration.FACTOR_HEADS": FACTOR_HEADS,
        "reasoner.vlm_output.ENTRY_MODELS": ENTRY_MODELS,
        "reasoner.vlm_output.DegradationsOut": DegradationsOut.model_fields,
        "reasoner.schema.DEGRADATION_MODELS": schema.DEGRADATION_MODELS,
        "tests.test_kinds.BASE": BASE,
    }


# --- the table itself agrees with the schema and the severity module ---------------------------------------------


def test_kinds_agree_with_schema_and_physical_order():
    assert tuple(KINDS) == sev.PHYSICAL_ORDER == schema.KINDS
    assert set(get_args(schema.DegradationKind)) == set(KINDS)
    assert set(schema.DEGRADATION_MODELS) == set(KINDS)
    assert [spec.order for spec in KINDS.values()] == list(range(len(KINDS)))
    for name, spec in KINDS.items():
        model = schema.DEGRADATION_MODELS[name]
        assert spec.name == name
        assert model.model_fields["kind"].default == name
        assert model.model_fields["factors"].annotation is spec.factors
        assert spec.parameter in spec.factors.model_fields  # the severity map's parameter is a factor of the kind


def test_lowpass_and_restoration_order():
    assert LOWPASS == {"motion_blur", "blur", "low_resolution"}
    assert restoration_order(KINDS) == list(reversed(sev.PHYSICAL_ORDER))


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None)
@given(s=st.floats(0.0, 1.0))
def test_severity_map_round_trips(kind, s):
    spec = KINDS[kind]
    factors = spec.factors_for(s, BASE[kind])
    model = spec.factors(**factors)  # what a severity implies is a valid factor model of the kind
    assert set(factors) == set(spec.factors.model_fields)
    assert spec.severity_of(model) == pytest.approx(s, abs=TOLERANCE[kind])
    assert spec.severity_of(factors) == spec.severity_of(model)


@pytest.mark.parametrize("kind", KINDS)
def test_severity_map_is_monotone_on_a_grid(kind):
    grid = np.linspace(0.0, 1.0, 101)
    back = [KINDS[kind].severity_of(KINDS[kind].factors_for(float(s), BASE[kind])) for s in grid]
    assert all(b >= a for a, b in zip(back, back[1:]))
    assert back[0] == pytest.approx(0.0, abs=TOLERANCE[kind]) and back[-1] == pytest.approx(1.0, abs=TOLERANCE[kind])


def test_check_table_names_missing_and_unknown_kinds():
    full = dict.fromkeys(KINDS)
    assert check_table(full, "t") is full
    with pytest.raises(ImportError, match=r"t: missing kinds \['jpeg'\]"):
        check_table({k: 1 for k in KINDS if k != "jpeg"}, "t")
    with pytest.raises(ImportError, match=r"unknown kinds \['smudge'\]"):
        check_table(full | {"smudge": 1}, "t")
    assert "smudge" in check_table(full | {"smudge": 1}, "t", allow_extra=True)


# --- every per-kind table in reasoner covers every kind -------------------------------------------------------------


@pytest.mark.parametrize("name", list(_reasoner_tables()))
def test_per_kind_table_covers_every_kind(name):
    assert set(_reasoner_tables()[name]) == set(KINDS), name


def test_completion_schema_has_one_key_per_kind_in_physical_order():
    from reasoner.vlm_output import ENTRY_MODELS, DegradationsOut, completion_schema

    assert list(DegradationsOut.model_fields) == list(KINDS)
    assert list(completion_schema()["$defs"]["DegradationsOut"]["properties"]) == list(KINDS)
    for kind, model in ENTRY_MODELS.items():
        assert model.model_fields["factors"].annotation is KINDS[kind].factors


def test_calibration_covers_every_kind():
    from reasoner.measure.calibration import FACTOR_HEADS, FACTOR_TARGETS, load_calibration

    cal = load_calibration()
    assert cal.kinds == list(KINDS)
    assert set(KINDS) <= set(cal.presence_labels)
    assert set(cal.factor_heads) == set(FACTOR_TARGETS) == {k for k, t in FACTOR_HEADS.items() if t is not None}
    for kind, targets in FACTOR_TARGETS.items():
        assert {name for name, _ in targets} <= set(KINDS[kind].factors.model_fields), kind


def test_prompt_vocabulary_names_every_kind():
    from prompts import vocabulary_values

    vocabulary = vocabulary_values()["vocabulary"]
    for kind in KINDS:
        assert f"- {kind}:" in vocabulary


def test_measure_evidence_cites_measured_statistics():
    # Each kind's step cites statistics that features.measure_all really measures, and its template fills.
    from reasoner.measure.features import measure_all
    from reasoner.measure.reasoning import EVIDENCE, observation

    stats = measure_all(np.random.default_rng(0).random((64, 64, 3), dtype=np.float32))
    for kind, ev in EVIDENCE.items():
        assert set(ev.statistics) <= set(stats), kind
        assert observation(kind, stats)


@pytest.mark.parametrize("kind", KINDS)
def test_measure_entry_writer_writes_its_kind(kind):
    from reasoner.measure.entries import ENTRIES, IMPLIED, Reading
    from reasoner.measure.features import measure_all

    rgb = np.random.default_rng(1).random((64, 64, 3), dtype=np.float32)
    stats = measure_all(rgb)
    factors = IMPLIED[kind](0.5, stats)
    assert set(factors) <= set(KINDS[kind].factors.model_fields)
    entry = ENTRIES[kind](Reading(kind, 0.5, 0.9, factors, dict.fromkeys(KINDS, 0.9), stats, rgb))
    assert entry.kind == kind and entry.level == "moderate"
