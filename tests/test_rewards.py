"""GRPO rewards (rl/rewards.py): table-driven cases through the real classical restorer and measure scorer."""

from __future__ import annotations

import doctest
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import rl.reward_engine as engine_mod
import rl.rewards as rewards_mod
from reasoner.schema import DiagnosisRecord
from reasoner.vlm_output import completion_json, from_record
from rl.ground_truth import ground_truth, synthesize
from rl.photos import load_photo
from rl.reward_engine import RewardEngine
from rl.rewards import (
    REWARDS,
    DiagnosisAccuracy,
    Fidelity,
    FormatReward,
    SeverityReduction,
    build_rewards,
    completion_text,
)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    # A textured 96x96 crop of a bundled photo: quantised to 8 bits, as dataset images are.
    img = load_photo("chelsea")[100:196, 150:246]
    return np.round(img * 255) / 255


def _said(record: DiagnosisRecord) -> list[dict]:
    """A conversational completion stating ``record``."""
    return [{"role": "assistant", "content": completion_json(from_record(record))}]


def _case(clean: np.ndarray, kind: str | None, claim: str | None, seed: int = 0):
    """(degraded u8 image, completion claiming ``claim`` (the true record when it matches), true record JSON)."""
    if kind is None:
        image, truth = clean, ground_truth([], clean, seed=seed)
    else:
        syn = synthesize(clean, seed, kinds=[kind])
        image, truth = syn.image, syn.record
    image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if claim is None:
        said = ground_truth([], clean, seed=seed)
    elif claim == kind:
        said = truth
    else:
        said = synthesize(clean, seed + 1, kinds=[claim]).record  # a confident claim of another kind
    return image, _said(said), truth.model_dump_json()


def test_completion_text_accepts_trl_shapes():
    assert completion_text("x") == "x"
    assert completion_text([{"role": "assistant", "content": "ab"}]) == "ab"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "c"}]}]) == "c"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{not json", 0.0),
        ('{"reasoning": []}', 0.0),  # valid JSON, not a completion
        ("", 0.0),
        (None, 1.0),  # the true record (filled in below)
        ("thinking first </think>", 1.0),  # thinking before the JSON is allowed
    ],
)
def test_format_reward(clean, text, expected):
    image, said, _ = _case(clean, "noise", "noise")
    body = said[0]["content"]
    if text is None:
        text = body
    elif text.endswith("</think>"):
        text = text + body
    assert FormatReward()([None], [[{"role": "assistant", "content": text}]], image=[image]) == [expected]


# (true kind, claimed kind, expected sign of severity_reduction, expected sign of fidelity)
CASES = [
    ("noise", "noise", +1, +1),  # a right diagnosis of a noisy image: severity drops, closer to the clean image
    ("haze", "haze", +1, +1),
    (None, "blur", None, -1),  # heavy blur claimed on a clean image: over-processing (sharpening) loses fidelity
    (None, None, 0, 0),  # a clean verdict on a clean image: nothing is done
    ("noise", None, 0, 0),  # a missed degradation: nothing is done, nothing gained
]


@pytest.mark.parametrize("kind, claim, sev_sign, fid_sign", CASES)
def test_restoring_rewards_signs(clean, kind, claim, sev_sign, fid_sign):
    image, said, _ = _case(clean, kind, claim)
    sev = SeverityReduction(workers=0)([None], [said], image=[image])[0]
    fid = Fidelity(workers=0)([None], [said], image=[image], clean=[clean])[0]
    assert sev is not None and fid is not None
    if sev_sign == 0:
        assert sev == 0.0
    elif sev_sign is not None:
        assert np.sign(sev) == sev_sign, sev
    if fid_sign == 0:
        assert fid == 0.0
    else:
        assert np.sign(fid) == fid_sign and abs(fid) > 0.02, fid


def test_over_processing_is_penalised_more_than_a_right_plan(clean):
    image, right, _ = _case(clean, "noise", "noise")
    _, wrong, _ = _case(clean, "noise", "blur")
    fid = Fidelity(workers=0)([None, None], [right, wrong], image=[image] * 2, clean=[clean] * 2)
    assert fid[0] > fid[1]


def test_fidelity_without_clean_uses_structural_drift(clean):
    image, blur_claim, _ = _case(clean, None, "blur")
    _, nothing, _ = _case(clean, None, None)
    fid = Fidelity(workers=0)([None, None], [nothing, blur_claim], image=[image] * 2)
    assert fid[0] == 0.0 and -1.0 <= fid[1] <= 0.0


def test_per_kind_severity_reduction(clean):
    image, said, _ = _case(clean, "noise", "noise")
    assert SeverityReduction(workers=0, per_kind=True)([None], [said], image=[image])[0] > 0


def test_what_a_plan_left_of_its_kind_costs_the_severity_reward(coffee_rain):
    # Screen-blended rain over the coffee photo: one deraining leaves streaks on the saucer that read at presence
    # 0.34, under the 0.5 an input is reported from. The engine re-scores a restoration as the agent's judgement
    # does (the residue of each restored kind from RESIDUE_SHARE of the threshold), so the half-derained output keeps
    # a rain severity, while the same pixels scored as an input read clean: a plan that half-removes a kind does not
    # earn the full severity drop.
    from reasoner import load_reasoner

    rainy = np.rint(coffee_rain * 255).astype(np.uint8)
    said = load_reasoner("measure").diagnose(rainy.astype(np.float32) / 255)
    assert [d.kind for d in said.degradations] == ["rain"]
    with RewardEngine(workers=0) as engine:
        (restored,) = engine.restore([rainy], [said])
        before, as_input = engine.score([rainy, restored.pixels])
        reward = SeverityReduction(engine, estimate="severity")([None], [_said(said)], image=[rainy])[0]
    assert restored.severities["rain"] >= 0.1 and as_input.severities["rain"] == 0.0
    assert reward == pytest.approx(before.overall - restored.overall)
    assert reward < before.overall - as_input.overall


@pytest.mark.parametrize(
    "kind, claim, lo, hi",
    [
        ("noise", "noise", 0.999, 1.0),  # exact
        (None, None, 0.999, 1.0),  # both clean
        ("noise", None, 0.0, 0.5),  # missed: F1 0
        (None, "blur", 0.0, 0.5),  # false alarm: F1 0
        ("noise", "haze", 0.0, 0.5),
    ],
)
def test_diagnosis_accuracy(clean, kind, claim, lo, hi):
    image, said, truth = _case(clean, kind, claim)
    got = DiagnosisAccuracy()([None], [said], record=[truth], image=[image])[0]
    assert lo <= got <= hi


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_unparseable_is_none_never_a_score(clean, name):
    image, _, truth = _case(clean, "noise", "noise")
    fn = REWARDS[name](**({"workers": 0} if name in ("severity_reduction", "fidelity") else {}))
    got = fn([None, None], ["{broken", [{"role": "assistant", "content": ""}]], image=[image] * 2, record=[truth] * 2)
    assert got == ([0.0, 0.0] if name == "format" else [None, None])


class _Failing:
    """A restorer that always fails (importable by workers as tests.test_rewards:_Failing)."""

    name = "failing"

    def restore(self, image, record, references, plan):
        raise RuntimeError("boom")


def test_failed_restoration_is_none(clean):
    image, said, _ = _case(clean, "noise", "noise")
    for cls in (SeverityReduction, Fidelity):
        fn = cls(restorer="tests.test_rewards:_Failing", workers=0)
        assert fn([None], [said], image=[image], clean=[clean]) == [None]


def test_self_scoring_is_refused():
    with pytest.raises(ValueError, match="itself"):
        SeverityReduction(scorer="qwen3vl")


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_rewards_pickle_with_stable_names(clean, name):
    fn = REWARDS[name]()
    again = pickle.loads(pickle.dumps(fn))
    assert fn.__name__ == again.__name__ == name and type(again) is type(fn)
    image, said, truth = _case(clean, "noise", "noise")
    if name in ("severity_reduction", "fidelity"):
        again = REWARDS[name](workers=0)
    assert again([None], [said], image=[image], record=[truth], clean=[clean])[0] is not None


def test_restoring_rewards_keep_their_latest_batch_for_sample_logging(clean):
    """last_batch: (input, restored or None, text) per completion of the latest call; never pickled or shown."""
    image, said, _ = _case(clean, "noise", "noise")
    fn = SeverityReduction(workers=0)
    fn([None, None], [said, "oops"], image=[image, image])
    (src0, out0, text0), (src1, out1, text1) = fn.last_batch
    assert np.array_equal(src0, image) and out0.shape == image.shape and not np.array_equal(out0, image)
    assert out1 is None and text1 == "oops" and text0 == completion_text(said)  # unparsed: nothing restored
    assert pickle.loads(pickle.dumps(fn)).last_batch == [] and "last_batch" not in repr(fn)


def test_worker_pool_and_cache_agree_with_inline(clean):
    image, said, _ = _case(clean, "haze", "haze")
    inline = SeverityReduction(workers=0)([None], [said], image=[image])
    with RewardEngine(workers=1) as eng:
        pooled = SeverityReduction(eng)([None, None], [said, said], image=[image, image])
        assert pooled == inline * 2 and eng.misses == 1 and eng.hits == 0  # same (image, plan): restored once
        Fidelity(eng)([None], [said], image=[image], clean=[clean])
        assert eng.hits == 1  # the fidelity reward reuses the severity reward's restoration
        pool = eng._pool
    assert eng._pool is None and engine_mod._WORKER is None  # the workers' backends lived in the workers only
    with pytest.raises(RuntimeError):
        pool.submit(int)  # leaving the block stopped the pool


def test_full_cache_never_loses_a_hit_of_the_same_call(clean):
    """A batch with cached and new (image, plan) pairs on a full LRU: the new entries may evict the hits' entries."""
    cases = [_case(clean, kind, kind) for kind in ("noise", "haze", "jpeg")]
    with RewardEngine(workers=0, cache_size=2) as eng:
        fn = SeverityReduction(eng)
        first = fn([None], [cases[0][1]], image=[cases[0][0]])
        # the cached pair first, then two new ones: their puts evict the first pair (and the scorer cache too)
        again = fn([None] * 3, [c[1] for c in cases], image=[c[0] for c in cases])
        assert again[0] == first[0] and all(v is not None for v in again)
        assert eng.hits == 1 and len(eng._restored) == 2


def test_engines_hold_their_own_state():
    """No process-wide state: two engines share nothing, a pickled engine keeps its settings but not pool or cache."""
    a, b = RewardEngine(workers=0), RewardEngine(workers=0)
    a.score([np.zeros((8, 8, 3), np.uint8)])
    assert len(a._scores) == 1 and not b._scores
    copy = pickle.loads(pickle.dumps(a))
    assert (copy.restorer, copy.scorer, copy.workers) == ("classical", "measure", 0) and not copy._scores
    for module in (rewards_mod, engine_mod):
        assert not [k for k, v in vars(module).items() if isinstance(v, RewardEngine | OrderedDict)]
    with pytest.raises(ValueError, match="belong to the engine"):
        SeverityReduction(a, workers=2)


def test_build_rewards_from_recipe_mapping():
    with RewardEngine(workers=0) as engine:
        fns, weights = build_rewards(
            {"format": 0.2, "severity_reduction": {"weight": 1.0, "per_kind": True}, "fidelity": 0.5}, engine
        )
    assert [f.__name__ for f in fns] == ["format", "severity_reduction", "fidelity"] and weights == [0.2, 1.0, 0.5]
    assert fns[1].per_kind and fns[1].workers == 0 and fns[2].scorer == "measure"
    assert fns[1].engine is fns[2].engine is engine  # one engine: the fidelity reward reuses restorations
    with pytest.raises(ValueError, match="unknown reward"):
        build_rewards({"speed": 1.0})
    with pytest.raises(ValueError, match="fidelity"):
        build_rewards({"fidelity": {"weight": 1, "gamma": 2}})


def test_doctests():
    result = doctest.testmod(rewards_mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 6
    assert doctest.testmod(engine_mod).failed == 0
