"""A person's edit of a diagnosis entry (reasoner.edit): severity and factors move together, or the edit is refused.

The promise a person relies on: every edit the review table accepts changes the restored image; the others are
refused with a reason. The restorations here are the classical restorer on a small crop, planned from the record as
the graph's plan node does.
"""

import numpy as np
import pytest

from reasoner.edit import DEFAULT_FACTORS, DEFAULT_SEVERITY, EditRefused, edit_degradation
from reasoner.kinds import KINDS
from reasoner.schema import combined_severity, make_degradation
from reasoner.severity import LEVEL_THRESHOLDS


def entry(kind: str, severity: float, confidence: float = 0.9):
    return make_degradation(kind, severity, confidence, **KINDS[kind].factors_for(severity, DEFAULT_FACTORS[kind]))


@pytest.fixture(scope="module")
def degraded():
    """A crop degraded with each kind (as the image a person reviews has it): kind -> float32 HxWx3."""
    from rl import degradations as D
    from rl.photos import load_photo

    crop = np.ascontiguousarray(load_photo("astronaut")[100:196, 180:276])
    return {k: D.apply(crop, D.sample_ops(np.random.default_rng(i), kinds=(k,))) for i, k in enumerate(KINDS)}


@pytest.fixture
def image(degraded, request):
    kind = request.node.callspec.params.get("kind", "noise") if hasattr(request.node, "callspec") else "noise"
    return degraded[kind]


#: Kinds whose classical operator reads the severity map's parameter on these crops. The derain operator uses density
#: only as on/off, and the low-light operator holds the exposure to the image's statistics: an edit of theirs can
#: leave the image as it was, which the page finds on its preview and refuses (tests/test_ui.py).
READ = [k for k in KINDS if k not in ("rain", "low_light")]


def restored(image, degradations) -> np.ndarray:
    from test_schema import make_record

    from restorer.classical import ClassicalRestorer
    from restorer.plan import plan_from_record

    rec = make_record(degradations=list(degradations), overall_severity=combined_severity(list(degradations)))
    return ClassicalRestorer().restore(image, rec, [], plan_from_record(rec)).pixels


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_severity_edit_moves_the_factors_consistently(kind):
    before = entry(kind, 0.3)
    after = edit_degradation(before, severity=0.6)
    spec = KINDS[kind]
    assert after.severity == pytest.approx(0.6, abs=0.01) and after.level == "moderate"
    assert after.factors.model_dump()[spec.parameter] != before.factors.model_dump()[spec.parameter]
    assert spec.severity_of(after.factors) == pytest.approx(after.severity, abs=1e-6)  # consistent both ways


@pytest.mark.parametrize("kind", READ)
def test_a_severity_edit_moves_the_factors_and_changes_the_result(image, kind):
    before = entry(kind, 0.3)
    after = edit_degradation(before, severity=0.6)
    assert not np.array_equal(restored(image, [before]), restored(image, [after]))


@pytest.mark.parametrize("kind", READ)
def test_a_factor_edit_moves_the_severity_and_changes_the_result(image, kind):
    before = entry(kind, 0.3)
    spec = KINDS[kind]
    factors = {**before.factors.model_dump(), **spec.factors_for(0.7)}
    after = edit_degradation(before, factors=factors)
    assert after.severity == pytest.approx(0.7, abs=0.01) and after.level == "severe"
    assert not np.array_equal(restored(image, [before]), restored(image, [after]))


@pytest.mark.parametrize("kind", list(KINDS))
def test_ticking_an_absent_kind_adds_it_at_its_severity_and_changes_the_result(image, kind):
    added = edit_degradation(None, kind=kind, present=True)
    assert added.severity == pytest.approx(DEFAULT_SEVERITY, abs=0.01) and added.confidence == 1.0
    at = edit_degradation(None, kind=kind, present=True, severity=0.8)
    assert KINDS[kind].severity_of(at.factors) == pytest.approx(at.severity, abs=1e-6) and at.level == "severe"
    assert not np.array_equal(restored(image, []), restored(image, [added]))


def test_the_review_tables_old_failures_now_change_the_image(image):
    # The two cases: noise severity 0.2 -> 0.6 gave a byte-identical image; ticking "jpeg" was ignored.
    noise = entry("noise", 0.2)
    raised = edit_degradation(noise, severity=0.6)
    assert not np.array_equal(restored(image, [noise]), restored(image, [raised]))
    jpeg = edit_degradation(None, kind="jpeg", present=True)
    assert not np.array_equal(restored(image, [noise]), restored(image, [noise, jpeg]))


@pytest.mark.parametrize(
    "deg, edit, reason",
    [
        # A severity change too small to move JPEG's integer quality: nothing would change.
        (lambda: entry("jpeg", 0.3), dict(severity=0.303), "leaves quality at 73, so nothing would change"),
        # Out of range.
        (lambda: entry("noise", 0.3), dict(severity=1.5), "severity must be from 0 to 1"),
        (lambda: entry("noise", 0.3), dict(severity="lots"), "severity must be a number"),
        (lambda: entry("noise", 0.3), dict(confidence=-0.1), "confidence must be from 0 to 1"),
        # Factors the factor model refuses: out of bounds, unknown names, a choice it does not have.
        (lambda: entry("jpeg", 0.3), dict(factors={"quality": 500}), "quality: Input should be less than or equal"),
        (lambda: entry("noise", 0.3), dict(factors={"sigma": 5, "model": "laplace"}), "model: Input should be"),
        (lambda: entry("noise", 0.3), dict(factors={"sigma": 5, "model": "gaussian", "x": 1}), "x: Extra inputs"),
        # Both changed, disagreeing.
        (lambda: entry("jpeg", 0.3), dict(severity=0.9, factors={"quality": 90}), "disagree"),
        # Ticked present below the mild level: it would not be restored.
        (lambda: None, dict(kind="haze", present=True, severity=0.05), "below 0.10 (mild)"),
        # Settings of a kind that is not ticked present are not used.
        (lambda: None, dict(kind="rain", severity=0.5), "tick it present first"),
        (lambda: None, dict(kind="fog", present=True), "unknown kind"),
    ],
)
def test_edits_that_cannot_take_effect_are_refused_with_a_reason(deg, edit, reason):
    with pytest.raises(EditRefused, match=reason.replace("(", r"\(").replace(")", r"\)")) as e:
        edit_degradation(deg(), **edit)
    assert "\n" not in str(e.value)


def test_no_edit_returns_the_entry_and_unticking_drops_it():
    d = entry("noise", 0.4)
    assert edit_degradation(d) is d and edit_degradation(d, severity=d.severity, factors=d.factors) is d
    assert edit_degradation(d.model_dump(mode="json")) == d
    assert edit_degradation(d, present=False) is None and edit_degradation(None, kind="noise") is None
    assert edit_degradation(d, confidence=0.5).confidence == 0.5


def test_a_severity_below_mild_keeps_the_kind_but_stops_restoring_it(image):
    d = entry("noise", 0.4)
    low = edit_degradation(d, severity=LEVEL_THRESHOLDS[0] / 2)
    assert low.level == "none"
    assert np.array_equal(restored(image, [low]), image)  # nothing restored: the input back


def test_consistent_severity_and_factors_together_are_accepted():
    d = entry("jpeg", 0.3)
    after = edit_degradation(d, severity=0.5, factors={"quality": 55})
    assert after.severity == 0.5 and after.factors.quality == 55
