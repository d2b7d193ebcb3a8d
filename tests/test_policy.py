"""The decide policy (``agent/policy.py``) as tables of cases: verdicts, retries, final decisions, retry plans.

No graph, no pixels: each case is a record, the attempts so far and settings, and the step the policy must take.
"""

import pytest
from pydantic import ValidationError
from test_schema import FACTORS, make_record

from agent.policy import (
    MAX_STRENGTH,
    REVEALABLE,
    Final,
    Retry,
    conclude,
    decide,
    judge,
    lineage_kinds,
    mixed_lowpass,
    per_kind,
    retry_plan,
    revealed_blur,
    revealed_kinds,
    revealed_noise,
    stronger_after_revealed,
    superseding,
)
from agent.state import Settings
from agent.trace import AttemptTrace
from reasoner.kinds import KINDS
from reasoner.schema import LowLightFactors, combined_severity, make_degradation
from restorer.plan import Operation, Plan, confidence_weight, plan_from_record


def record(**severities: float):
    """A diagnosis with these kinds at these severities (confidence 0.9, so plans weigh every kind fully)."""
    degs = [make_degradation(k, s, 0.9, **FACTORS[k]) for k, s in severities.items()]
    return make_record(degradations=degs, overall_severity=combined_severity(degs))


#: The input every case restores: noisy (0.6) and blurred (0.5), overall 0.8.
INPUT = record(noise=0.6, blur=0.5)


def attempt(index: int, verdict: str, after: dict | None, strengths: dict | None = None, source=None) -> AttemptTrace:
    """Attempt ``index`` judged ``verdict``; ``after`` is what the scorer saw (None: the restorer failed)."""
    rec = record(**after) if after is not None else None
    sev = rec.severities() if rec is not None else INPUT.severities()
    ops = [Operation(kind=k, severity=INPUT.severity(k), strength=v) for k, v in (strengths or {"noise": 1.0}).items()]
    return AttemptTrace(index=index, source=source, plan=Plan(operations=ops), record_after=rec, severity_after=sev,
                        overall_after=rec.overall_severity if rec else INPUT.overall_severity, structure=0.99,
                        verdict=verdict, reason="-", elapsed_s=0.0)  # fmt: skip


def better(i, **after):
    return attempt(i, "better", after)


S = Settings()
#: A bolder retry's factors: 1.5 on every kind.
BOLDER = per_kind(1.5)

#: (attempts so far, settings, the step decide must take).
DECIDE = {
    # residual noise after an improvement: the same source again, stronger on noise only
    "better, noise left": ([better(0, noise=0.3)], S, Retry("stronger", None, per_kind(1.3, frozenset({"noise"})))),
    # only low-pass residue (blur): a wider deconvolution kernel would ring, so accept
    "better, only blur left": (
        [better(0, blur=0.3)],
        S,
        Final("accepted", 0, "attempt 0: overall severity 0.80 -> 0.30"),
    ),
    # kinds the input did not have (restorer artefacts) are not chased
    "better, only new kinds": (
        [better(0, jpeg=0.4)],
        S,
        Final("accepted", 0, "attempt 0: overall severity 0.80 -> 0.40"),
    ),
    # below done_below: good enough
    "better, done": ([better(0, noise=0.05)], S, Final("accepted", 0, "attempt 0: overall severity 0.80 -> 0.05")),
    # residue but no attempt left
    "better, out of attempts": (
        [better(0, noise=0.5), better(1, noise=0.4), better(2, noise=0.3)],
        S,
        Final("accepted", 2, "attempt 2: overall severity 0.80 -> 0.30"),
    ),
    # nothing changed: bolder on every kind
    "no change": ([attempt(0, "no_change", {"noise": 0.6, "blur": 0.5})], S, Retry("bolder", None, BOLDER)),
    # the first harmful attempt: gentler, nothing left out yet
    "worse once": ([attempt(0, "worse", {"noise": 0.9, "blur": 0.5})], S, Retry("gentler", None, per_kind(0.5))),
    # a second harmful attempt in a row: also leave out what it made worse than the input had it (noise +0.3)
    "drift twice": (
        [attempt(0, "worse", {"noise": 0.9, "blur": 0.5}), attempt(1, "drift", {"noise": 0.9, "blur": 0.52})],
        S,
        Retry("gentler", None, per_kind(0.5), frozenset({"noise"})),
    ),
    # a rise within worsened_margin (blur +0.04) is not "made worse"
    "worse twice, small rise": (
        [attempt(0, "failed", None), attempt(1, "worse", {"noise": 0.6, "blur": 0.54})],
        S,
        Retry("gentler", None, per_kind(0.5)),
    ),
    # failed twice: the failed attempt's severities are its source's, so nothing counts as made worse
    "failed twice": (
        [attempt(0, "failed", None), attempt(1, "failed", None)],
        S,
        Retry("gentler", None, per_kind(0.5)),
    ),
    # harmful after an improvement is not two in a row
    "better then worse": (
        [better(0, noise=0.3), attempt(1, "worse", {"noise": 0.9})],
        S,
        Retry("gentler", None, per_kind(0.5)),
    ),
    # out of attempts after a harmful one: roll back to the best earlier attempt
    "worse last, roll back": (
        [better(0, noise=0.3), better(1, noise=0.2), attempt(2, "worse", {"noise": 0.9})],
        S,
        Final("rolled_back", 1, "attempt 1: overall severity 0.80 -> 0.20"),
    ),
    # nothing ever improved: the input is returned
    "all failed": (
        [attempt(i, "failed", None) for i in range(3)],
        S,
        Final("unchanged", None, "no attempt improved on the input (3 tried); input returned"),
    ),
    # "better" than its source but not by min_gain against the input: not returned
    "better by too little": (
        [better(0, noise=0.6, blur=0.49)],
        Settings(max_attempts=1),
        Final("unchanged", None, "no attempt improved on the input (1 tried); input returned"),
    ),
    # equal overall severities: the first such attempt wins
    "tie": (
        [better(0, noise=0.3), better(1, noise=0.3)],
        Settings(max_attempts=2),
        Final("rolled_back", 0, "attempt 0: overall severity 0.80 -> 0.30"),
    ),
    # the factors come from the settings
    "settings' factors": (
        [better(0, noise=0.3)],
        Settings(residual_factor=2.0),
        Retry("stronger", None, per_kind(2.0, frozenset({"noise"}))),
    ),
    # a retry restores the same source as the attempt it follows
    "source kept": (
        [better(0, noise=0.3), attempt(1, "no_change", {"noise": 0.3}, source=0)],
        S,
        Retry("bolder", 0, BOLDER),
    ),
}


@pytest.mark.parametrize("case", DECIDE)
def test_decide(case):
    attempts, settings, expected = DECIDE[case]
    assert decide(INPUT, attempts, settings) == expected


#: (structure, source's overall, attempt's overall, plan's kinds, verdict): min_structure 0.9 (0.75 when the plan
#: removes rain), min_gain 0.02.
JUDGE = [
    (0.89, 0.8, 0.1, ["noise"], "drift"),  # content moved: drift, however much better it scores
    (0.95, 0.8, 0.77, ["noise"], "better"),  # more than min_gain down
    (0.95, 0.8, 0.78, ["noise"], "no_change"),  # exactly min_gain down is not an improvement
    (0.95, 0.8, 0.82, ["noise"], "no_change"),  # nor exactly min_gain up a harm
    (0.95, 0.8, 0.83, ["noise"], "worse"),  # more than min_gain up
    (0.9, 0.8, 0.5, ["noise"], "better"),  # structure at the bound is kept
    (0.8, 0.8, 0.5, ["rain", "haze"], "better"),  # streaks removed: their structure goes with them
    (0.74, 0.8, 0.5, ["rain"], "drift"),  # ... down to min_structure_derain
    (0.8, 0.8, 0.5, ["haze"], "drift"),  # the allowance is rain's alone
]


@pytest.mark.parametrize("structure, before, after, kinds, verdict", JUDGE)
def test_judge(structure, before, after, kinds, verdict):
    assert judge(structure, before, after, S, kinds)[0] == verdict


def test_judge_reasons_are_the_traces():
    assert judge(0.5, 0.8, 0.1, S)[1] == "structure 0.50 below 0.90: the content moved"
    assert judge(0.95, 0.8, 0.9, S)[1] == "overall severity rose 0.80 -> 0.90"


def test_conclude_without_attempts_returns_the_input():
    # The first plan was empty: nothing was detected, nothing was tried.
    assert conclude(INPUT, [], S) == Final("unchanged", None, "no degradation detected; input returned unchanged")


#: (retry, strengths of the last attempt, expected strengths of the retry's plan in restoration order).
PLANS = {
    # each kind's own strength times its factor, rounded to 4 places
    "stronger on noise": (
        Retry("stronger", None, per_kind(1.3, frozenset({"noise"}))),
        {"noise": 1.3, "blur": 0.7},
        {"noise": 1.69, "blur": 0.7},
    ),  # fmt: skip
    # capped at the schema's bound
    "capped": (
        Retry("bolder", None, per_kind(1.5)),
        {"noise": 2.5, "blur": 1.0},
        {"noise": MAX_STRENGTH, "blur": 1.5},
    ),
    # a kind the last try of the same source left out (a split, a kind at fault) stays out: a bolder retry after a
    # split would otherwise put the deconvolution back at a fresh strength
    "left out": (Retry("gentler", None, per_kind(0.5)), {"noise": 0.5}, {"noise": 0.25}),
    # skipped kinds are left out
    "skip": (Retry("gentler", None, per_kind(0.5), frozenset({"noise"})), {"noise": 1.0, "blur": 1.0}, {"blur": 0.5}),
    # everything skipped: an empty plan (the graph then concludes)
    "all skipped": (Retry("gentler", None, per_kind(0.5), frozenset({"noise", "blur"})), {"noise": 1.0}, {}),
}


@pytest.mark.parametrize("case", PLANS)
def test_retry_plan(case):
    retry, last, expected = PLANS[case]
    plan = retry_plan(retry, INPUT, [attempt(0, "better", {"noise": 0.3}, strengths=last)])
    assert {op.kind: op.strength for op in plan.operations} == expected
    assert plan.kinds == [k for k in plan_from_record(INPUT).kinds if k in expected]  # restoration order kept


def test_retry_plan_restores_the_sources_record():
    # A retry of attempt 0's output plans from what the scorer saw there, not from the input's record, and only its
    # tone: noise (or a denoising's smoothing read as blur) is not restored on top of a restoration.
    first = attempt(0, "better", {"noise": 0.3, "blur": 0.4, "low_light": 0.35})
    plan = retry_plan(Retry("stronger", 0, per_kind(1.0)), INPUT, [first])
    assert plan.kinds == ["low_light"] and plan.operations[0].severity == 0.35


def test_tone_revealed_by_a_better_attempt_is_restored_on_top_of_it():
    # mio_A_dark+noise_5_camera: read as noisy only (the noise lifts the brightest percentiles); once denoised it reads
    # dim, and brightening the denoised image took it from 11.5 to 25.4 dB
    first = better(0, low_light=0.3)
    step = decide(INPUT, [first], S)
    assert step == Retry("revealed", 0, per_kind(1.0), frozenset(KINDS) - {"low_light"})
    assert REVEALABLE == {"low_light", "haze"}
    plan = retry_plan(step, INPUT, [first])
    assert plan.kinds == ["low_light"] and plan.operations[0].strength == 1.0
    # haze too; blur, noise, JPEG found after a denoising are not chased (see "better, only new kinds")
    assert decide(INPUT, [better(0, haze=0.4)], S).rule == "revealed"
    # before a stronger pass on what the first left: a haze under heavy noise reads only once denoised (MiO haze +
    # noise on the tower photo: noise read alone, denoised twice, returned hazy at 8.7 dB; dehazed on top, 12.5)
    noisy_haze = better(0, noise=0.3, haze=0.4)
    assert decide(INPUT, [noisy_haze], S) == Retry("revealed", 0, per_kind(1.0), frozenset(KINDS) - {"haze"})
    assert decide(INPUT, [better(0, noise=0.3)], S).rule == "stronger"  # nothing revealed: as before
    # the refinement did not help: the first attempt gets the stronger pass it would have had, from its strengths
    first = attempt(0, "better", {"noise": 0.3, "haze": 0.4}, strengths={"noise": 0.8})
    for verdict in ("worse", "uncertain", "drift"):
        on_top = attempt(1, verdict, {"noise": 0.3}, strengths={"haze": 0.6}, source=0)
        on_top = on_top.model_copy(update={"rule": "revealed"})
        step = decide(INPUT, [first, on_top], S)
        assert step == Retry("stronger", None, per_kind(1.3, frozenset({"noise"})), base=0), verdict
        assert retry_plan(step, INPUT, [first, on_top]).strengths == {"noise": round(0.8 * 1.3, 4)}
    assert stronger_after_revealed(INPUT, [first, on_top.model_copy(update={"verdict": "better"})], S) is None
    done = attempt(0, "better", {"haze": 0.4}, strengths={"noise": 0.8})  # nothing left to pass again
    assert stronger_after_revealed(INPUT, [done, on_top], S) is None
    assert decide(INPUT, [done, on_top], S).rule != "stronger"
    both = better(0, low_light=0.3, haze=0.4)  # a dim photo denoised reads hazy too: brightened alone
    assert revealed_kinds(INPUT, [both], both) == {"low_light"}
    # a gamma-only read (highlights already near white) is a dark-toned scene, not darkness the noise hid
    gamma_only = LowLightFactors(exposure=0.99, gamma=1.2)
    toned = first.record_after.degradations[0].model_copy(update={"factors": gamma_only})
    toned = first.model_copy(update={"record_after": first.record_after.model_copy(update={"degradations": [toned]})})
    assert revealed_kinds(INPUT, [toned], toned) == frozenset()
    assert isinstance(decide(INPUT, [better(0, blur=0.6, jpeg=0.4)], S), Final)


def test_noise_a_brightening_reveals_is_removed_on_top_of_it_at_full_strength():
    dim = record(low_light=0.4)
    bright = attempt(0, "better", {"noise": 0.3}, strengths={"low_light": 1.0})
    unsure = bright.record_after.degradations[0].model_copy(update={"confidence": 0.6})
    unsure = bright.model_copy(
        update={"record_after": bright.record_after.model_copy(update={"degradations": [unsure]})}
    )
    for first, weight in ((bright, 1.0), (unsure, confidence_weight(0.6))):
        step = decide(dim, [first], S)
        assert step.rule == "revealed" and step.source == 0 and step.skip == frozenset(KINDS) - {"noise"}
        plan = retry_plan(step, dim, [first])
        assert plan.kinds == ["noise"] and plan.operations[0].strength == pytest.approx(1.0, abs=1e-4), weight
    assert revealed_noise(dim, [bright], bright) == 1.0
    # not when the input read noise already, the attempt did more than brighten, or it was not better
    assert revealed_noise(record(low_light=0.4, noise=0.2), [bright], bright) is None
    both = attempt(0, "better", {"noise": 0.3}, strengths={"low_light": 1.0, "haze": 1.0})
    assert revealed_noise(dim, [both], both) is None
    assert revealed_noise(dim, [bright], bright.model_copy(update={"verdict": "uncertain"})) is None
    assert revealed_noise(dim, [better(0, low_light=0.1)], better(0, low_light=0.1)) is None
    # a denoising on top of anything else is still not planned (see test_retry_plan_restores_the_sources_record)
    denoised = attempt(0, "better", {"noise": 0.3, "haze": 0.4}, strengths={"noise": 1.0})
    assert retry_plan(Retry("revealed", 0, per_kind(1.0)), dim, [denoised]).kinds == ["haze"]


def test_blur_a_deblocking_reveals_is_planned_with_it_from_the_input():
    # a soft JPEG read as JPEG alone: once deblocked it reads blurred; the blur is planned from the input with the
    # deblocking (not on top of it: deconvolving a restored image compounds), and a better one supersedes it
    soft = record(jpeg=0.3)
    first = attempt(0, "better", {"blur": 0.3}, strengths={"jpeg": 1.0})
    step = decide(soft, [first], S)
    assert step.rule == "revealed" and step.source is None and [d.kind for d in step.add] == ["blur"]
    plan = retry_plan(step, soft, [first])
    assert plan.kinds == ["jpeg", "blur"] and plan.operations[1].params == step.add[0].factors.model_dump()
    deblurred = scored(1, "better", 0.4, 1.0).model_copy(update={"rule": "revealed", "plan": plan})
    deblocked = scored(0, "better", 1.2, 0.5).model_copy(update={"plan": first.plan})
    assert conclude(soft, [deblocked, deblurred], S).chosen == 1  # whatever the estimates say
    assert conclude(soft, [deblocked, deblurred.model_copy(update={"verdict": "uncertain"})], S).chosen == 0
    # not after a worse deblocking, a retry, or a plan that was more than a deblocking; not beside a low-pass kind
    assert decide(soft, [first.model_copy(update={"verdict": "worse"})], S).rule != "revealed"
    assert revealed_blur(soft, first.model_copy(update={"index": 1})) is None
    assert revealed_blur(soft, attempt(0, "better", {"blur": 0.3}, strengths={"jpeg": 1.0, "noise": 1.0})) is None
    assert revealed_blur(record(jpeg=0.3, low_resolution=0.5), first) is None
    assert revealed_blur(soft, better(0, jpeg=0.1)) is None  # no blur read after it


def test_haze_under_noise_is_split_off_and_read_again():
    # the first plan denoised and dehazed gently (noise hid the haze) and helped; a "split" retry denoises alone,
    # and the haze its output reads is restored on top of it
    hazy = record(noise=0.8, haze=0.2)
    first = attempt(0, "better", {"haze": 0.1}, strengths={"noise": 1.0, "haze": 0.25})
    step = decide(hazy, [first], S)
    assert step == Retry("split", None, per_kind(1.0), frozenset({"haze"}))
    assert retry_plan(step, hazy, [first]).kinds == ["noise"]
    phone = attempt(0, "better", {"haze": 0.1}, strengths={"jpeg": 1.0, "noise": 1.0, "haze": 0.28})  # saved as JPEG
    assert decide(record(noise=0.8, haze=0.2, jpeg=0.3), [phone], S) == step
    assert decide(hazy, [first.model_copy(update={"verdict": "uncertain"})], S).rule == "bolder"  # its own retries
    alone = attempt(1, "better", {"haze": 0.5}, strengths={"noise": 1.0}).model_copy(update={"rule": "split"})
    step = decide(hazy, [first, alone], S)
    assert step == Retry("revealed", 1, per_kind(1.0), frozenset(KINDS) - {"haze"})
    # only that split reads the input's haze again: any other split from the input that happens to lack it does not
    assert revealed_kinds(hazy, [first, alone], alone) == frozenset()
    assert revealed_kinds(hazy, [first, alone], alone, frozenset({"haze"})) == {"haze"}
    plan = retry_plan(step, hazy, [first, alone])
    assert plan.kinds == ["haze"] and plan.operations[0].severity == 0.5  # the haze read after the denoising
    # not with one attempt left, not for other mixtures, not after a retry
    # the denoising alone is a step, never the result: with the haze restored on top rejected, the first plan wins
    # even where the estimate rates the denoising higher (a noisy hazy coffee crop: +3.6 dB estimated for the
    # denoising, truly +0.8; the first plan +6.2, truly +9.0)
    q = scored(1, "better", 3.6, 1.9).quality
    step_only = [
        first.model_copy(update={"quality": scored(0, "better", 6.2, 5.9, spread_log=1.0).quality}),
        alone.model_copy(update={"quality": q}),
        attempt(2, "worse", {}, {"haze": 0.25}, source=1),
    ]
    assert conclude(hazy, step_only, S).chosen == 0
    reread = Retry("split", None, per_kind(1.0), frozenset({"haze"}))
    assert decide(hazy, [first], S.model_copy(update={"max_attempts": 2})) != reread
    assert decide(record(noise=0.8, haze=0.2, blur=0.4), [attempt(0, "uncertain", {}, strengths={
        "noise": 1.0, "blur": 1.0, "haze": 0.25})], S) != reread  # fmt: skip
    assert getattr(decide(hazy, [first, alone.model_copy(update={"rule": "stronger"})], S), "rule", None) != "revealed"


def test_a_better_reread_supersedes_the_first_plan():
    # a noisy hazy lion crop: the first plan +5.2 dB estimated (truly +1.9), the haze read again after the denoising
    # and restored on top +3.7 (truly +9.4): both better, the re-read is returned whatever the estimates say
    hazy = record(noise=0.8, haze=0.2)
    first = scored(0, "better", 5.2, 2.9).model_copy(update={"plan": Plan(operations=[
        Operation(kind="noise", severity=0.8), Operation(kind="haze", severity=0.2, strength=0.25)])})  # fmt: skip
    step = scored(1, "better", 5.7, 2.7).model_copy(update={"rule": "split", "plan": Plan(operations=[
        Operation(kind="noise", severity=0.8)])})  # fmt: skip
    again = scored(2, "better", 3.7, 3.8, spread_log=1.0).model_copy(update={"rule": "revealed", "source": 1,
        "plan": Plan(operations=[Operation(kind="haze", severity=0.5)])})  # fmt: skip
    assert conclude(hazy, [first, step, again], S).chosen == 2
    # left "uncertain" with a positive estimate it still supersedes the first plan (the MiO lion crop: +3.6 dB
    # +-4.4 estimated, truly +9.3 over the first plan); not with a negative estimate, nor where the members
    # extrapolate (the naturally hazy china photo, 2.5 dB worse), nor when it drifted
    unsure = again.model_copy(update={"verdict": "uncertain"})
    assert conclude(hazy, [first, step, unsure], S).chosen == 2
    for no in ({"gain_db": -0.4}, {"spread_log": None}):
        assert conclude(hazy, [first, step, unsure.model_copy(update={"quality": unsure.quality.model_copy(
            update=no)})], S).chosen == 0  # fmt: skip
    assert conclude(hazy, [first, step, again.model_copy(update={"verdict": "drift"})], S).chosen == 0
    # a split that is no re-read (the first plan was not exactly noise and haze) supersedes nothing
    other = first.model_copy(update={"plan": Plan(operations=[Operation(kind="noise", severity=0.8),
        Operation(kind="blur", severity=0.3)])})  # fmt: skip
    assert conclude(hazy, [other, step, again], S).chosen == 0


def test_a_dehazing_that_failed_the_haze_check_is_judged_on_a_large_clean_estimate():
    # under heavy noise a true dehazing can lower the global contrast it is checked on: a coffee crop under MiO haze
    # and grey noise, denoised and dehazed, estimated +11.1 dB, truly +6.5, refused as "not haze" and returned hazy.
    # From +4 dB with no artefact and members not extrapolating the estimate decides (the truly worse refusals were
    # estimated at most +2.9: the naturally hazy china photo)
    from reasoner.quality.artefacts import NOT_HAZE

    strengths = {"noise": 1.0, "haze": 1.0}
    q = QualityTrace(gain_db=11.1, uncertainty_db=6.0, spread_db=3.0, spread_log=0.5)
    assert judge_quality(0.99, q, S, NOT_HAZE, list(strengths), strengths, input_lum=0.5)[0] == "better"
    for no in ({"gain_db": 2.9}, {"spread_log": None}, {"artefacts": {"banding": 0.3}}):
        assert judge_quality(0.99, q.model_copy(update=no), S, NOT_HAZE, list(strengths), strengths,
                             input_lum=0.5)[0] == "worse"  # fmt: skip
    # nor without noise removed: a hazy astronaut crop (camera JPEG) whose airlight was read too bright, +4.6 dB
    # estimated, truly -1.5
    assert judge_quality(0.99, q, S, NOT_HAZE, ["haze"], {"haze": 1.0}, input_lum=0.5)[0] == "worse"
    # the other implausible change (a flat image's tone moved) is refused whatever the estimate
    flat = "a large tone or colour change on an image with almost no texture"
    assert judge_quality(0.99, q, S, flat, list(strengths), strengths, input_lum=0.5)[0] == "worse"


def test_a_dehazing_refused_as_not_haze_is_retried_without_the_haze():
    from reasoner.quality.artefacts import NOT_HAZE

    rec = record(noise=0.5, haze=0.3)
    refused = attempt(0, "worse", {"haze": 0.0}, {"noise": 1.0, "haze": 1.0}).model_copy(
        update={"reason": f"{NOT_HAZE}; estimated +0.5 dB (spread 1.3)"})  # fmt: skip
    step = decide(rec, [refused], S)
    assert step == Retry("gentler", None, per_kind(1.0), frozenset({"haze"}))
    assert retry_plan(step, rec, [refused]).kinds == ["noise"]
    # any other harm keeps the usual gentler retry of every kind
    other = refused.model_copy(update={"reason": "estimated -3.0 dB (spread 1.0)"})
    assert decide(rec, [other], S).rule == "gentler" and retry_plan(decide(rec, [other], S), rec, [other]).kinds == [
        "noise", "haze"]  # fmt: skip


def test_revealed_kinds_are_restored_once():
    # the refinement restored low light; its output still reading a little dim is not chased again, and the input's
    # own low light is the first plan's business, not a refinement's
    first = better(0, low_light=0.3)
    second = attempt(1, "better", {"low_light": 0.2}, strengths={"low_light": 1.0}, source=0)
    assert revealed_kinds(INPUT, [first, second], second) == frozenset()
    dim = record(noise=0.6, low_light=0.4)
    assert revealed_kinds(dim, [first], first) == frozenset()
    # a brightened image read as hazy is the brightening's lifted shadows (own cases, seed 2: a dim camera crop
    # brightened +12.1 dB, "dehazed" on top to +7.4 and that accepted); nor is anything read after a deblurring alone
    bright = attempt(0, "better", {"haze": 0.4}, strengths={"low_light": 1.0})
    assert revealed_kinds(record(low_light=0.6), [bright], bright) == frozenset()
    sharp = attempt(0, "better", {"low_light": 0.4}, strengths={"blur": 1.0})
    assert revealed_kinds(INPUT, [sharp], sharp) == frozenset()
    # a defocus hides haze, not darkness (agent.policy.HIDDEN_BY)
    veiled = attempt(0, "better", {"low_light": 0.4, "haze": 0.4}, strengths={"blur": 1.0})
    assert revealed_kinds(INPUT, [veiled], veiled) == frozenset({"haze"})
    assert lineage_kinds([first, second], 1) == {"noise", "low_light"}


def test_max_strength_is_the_schemas_bound():
    assert MAX_STRENGTH == 3.0 == Operation.model_json_schema()["properties"]["strength"]["maximum"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("failure_factor", 0.0),  # a retry at zero strength would do nothing
        ("failure_factor", 1.5),  # "gentler" must not be stronger
        ("residual_factor", 0.9),  # "stronger" must not be weaker
        ("no_change_factor", 4.0),  # above the strength bound
        ("worsened_margin", -0.1),
    ],
)
def test_settings_refuse_factors_out_of_bounds(field, value):
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


# --- with the artefact-aware scorer (reasoner.quality): estimated gain, spread, artefacts --------------------------

from agent.policy import assured_gain, judge_quality  # noqa: E402
from agent.trace import QualityTrace  # noqa: E402


def scored(index, verdict, gain, spread=0.5, artefacts=None, strengths=None, after=None, spread_log=0.3):
    """Attempt ``index`` with a quality estimate (gain dB, ensemble spread) and artefacts found; ``spread_log`` None:
    the scorer's members extrapolate."""
    a = attempt(index, verdict, after or {"noise": 0.1}, strengths)
    q = QualityTrace(gain_db=gain, uncertainty_db=2 * spread, spread_db=spread, artefacts=artefacts or {},
                     spread_log=spread_log)  # fmt: skip
    return a.model_copy(update={"quality": q})


#: (structure, gain, spread, artefacts, implausible, expected verdict); the plan restored noise, unless the name ends
#: "(deblurred)": motion_blur, or "(rain)": rain.
JUDGE_QUALITY = {
    # clearly better: the gain minus one spread stays above the 0.25 dB margin
    "clear gain": (0.99, 3.0, 1.0, {}, None, "better"),
    # a gain the scorer is unsure of (3 - 1 * 2.9 < 0.25): not kept on its own
    "unsure gain": (0.99, 3.0, 2.9, {}, None, "uncertain"),
    # clearly worse: even one spread up it loses more than the margin
    "clear loss": (0.99, -3.0, 1.0, {}, None, "worse"),
    # a small estimated loss with an artefact found counts as worse
    "loss with artefact": (0.99, -0.2, 1.0, {"ringing": 1.3}, None, "worse"),
    # a small estimated loss without artefacts is undecided
    "small loss": (0.99, -0.2, 1.0, {}, None, "uncertain"),
    # content moved: drift, whatever the estimate
    "drift": (0.5, 5.0, 0.1, {}, None, "drift"),
    # removing rain streaks lowers structure on purpose: judged by the estimate down to min_structure_derain
    "derained (rain)": (0.8, 3.0, 1.0, {}, None, "better"),
    # a strong tone change on a featureless image is never trusted
    "implausible": (0.99, 5.0, 0.1, {}, "a large tone change on an image with almost no texture", "worse"),
    # clipping that a denoiser does not make (black areas put back at 0): the plain margin
    "clipped, not its doing": (0.99, 2.0, 0.5, {"clipped_highlights": 0.03}, None, "better"),
    # the same gain where the deconvolution's overshoot clipped: must clear the artefact margin too (2 - 0.5 < 2.25)
    "clipped (deblurred)": (0.99, 2.0, 0.5, {"clipped_highlights": 0.03}, None, "uncertain"),
    # ... which a clear gain does (4 - 0.5 > 2.25)
    "clear gain, clipped (deblurred)": (0.99, 4.0, 0.5, {"crushed_shadows": 0.03}, None, "better"),
}


@pytest.mark.parametrize("name", JUDGE_QUALITY)
def test_judge_quality(name):
    structure, gain, spread, artefacts, why, expected = JUDGE_QUALITY[name]
    q = QualityTrace(gain_db=gain, uncertainty_db=2 * spread, spread_db=spread, artefacts=artefacts)
    kinds = {"(deblurred)": ["motion_blur"], "(rain)": ["rain"]}.get(name.rsplit(" ", 1)[-1], ["noise"])
    assert judge_quality(structure, q, S, why, kinds)[0] == expected


@pytest.mark.parametrize(
    "gain, spread, removed, expected",
    [
        (-0.6, 3.2, (0.77, 0.01), "better"),  # the own astronaut at sigma 7: truly +4.7 dB, was returned noisy
        (1.0, 3.0, (0.77, 0.01), "better"),
        (-3.0, 1.0, (0.77, 0.01), "worse"),  # surely below 0: the worse row comes first
        (-0.6, 3.2, (0.10, 0.0), "uncertain"),  # too little taken away: a false noise diagnosis
        (-0.6, 3.2, (0.77, 0.30), "uncertain"),  # correlated: texture went too
    ],
)
def test_white_noise_taken_away_is_better_unless_surely_worse(gain, spread, removed, expected):
    q = QualityTrace(gain_db=gain, uncertainty_db=2 * spread, spread_db=spread, removed_noise=removed)
    assert judge_quality(0.99, q, S, None, ["noise"])[0] == expected


#: (attempts so far, the step decide must take) with quality estimates.
DECIDE_QUALITY = {
    # the best discounted estimate wins, not the lowest severity: attempt 1 (3 - 0.5) beats attempt 0 (4 - 2)
    "best discounted gain": (
        [scored(0, "better", 4.0, 2.0), scored(1, "better", 3.0, 0.5), scored(2, "uncertain", 6.0, 6.0)],
        ("rolled_back", 1),
    ),
    # nothing estimated better: the input comes back, even if the severities dropped
    "none better": (
        [scored(0, "uncertain", 1.0, 2.0), scored(1, "worse", -2.0), scored(2, "uncertain", 0.1)],
        ("unchanged", None),
    ),  # fmt: skip
    # none assured, but an uncertain estimate above half its error (uncertainty 2 x spread here): the likeliest one
    # (3.4 - 2.3 = 1.1 beats 2.0 - 1.0 = 1.0) comes back ("likely better"); one at 0.5 x its error does not
    "likely better": (
        [scored(0, "uncertain", 3.4, 2.3), scored(1, "uncertain", 2.0, 1.0), scored(2, "uncertain", 1.0, 1.0)],
        ("rolled_back", 0),
    ),  # fmt: skip
    # ... not where the members extrapolate, nor with an artefact that signals harm after the plan's operators
    "extrapolating is not likely": ([scored(0, "uncertain", 3.4, 2.3, spread_log=None)], ("unchanged", None)),
    "harm at fault is not likely": (
        [scored(0, "uncertain", 3.4, 2.3, {"crushed_shadows": 0.02}, {"motion_blur": 1.0})],
        ("unchanged", None),
    ),
    # ... and never over an attempt assured better, however much higher its estimate
    "assured beats likely": ([scored(0, "uncertain", 8.0, 2.0), scored(1, "better", 1.0, 0.3)], ("accepted", 1)),
    # a deblurring that clipped pays the artefact margin in the choice too: the gentler clean retry (2.5 - 1 = 1.5)
    # beats it (4 - 1 - 2 = 1)
    "own artefact pays its margin": (
        [
            scored(0, "better", 4.0, 1.0, {"crushed_shadows": 0.02}, {"motion_blur": 1.0}),
            scored(1, "better", 2.5, 1.0, None, {"motion_blur": 0.5}),
        ],
        ("accepted", 1),
    ),
    # ranks within the 0.25 dB margin are the same to the scorer: the output re-scored least degraded wins (a gentler
    # retry estimated 0.2 dB higher but leaving twice the noise does not); beyond the margin the rank decides
    "within the margin, the least left": (
        [scored(0, "better", 3.0, 0.5, after={"noise": 0.3}), scored(1, "better", 3.2, 0.5, after={"noise": 0.6})],
        ("rolled_back", 0),
    ),
    "beyond the margin, the rank": (
        [scored(0, "better", 3.0, 0.5, after={"noise": 0.3}), scored(1, "better", 3.4, 0.5, after={"noise": 0.6})],
        ("accepted", 1),
    ),
    # ... but only between attempts that dosed the tone kinds alike: a stronger dehazing raises contrast and reads
    # less of everything else, so there the rank decides
    "tone doses differ, the rank": (
        [
            scored(0, "better", 3.2, 0.5, strengths={"haze": 1.0}, after={"noise": 0.3}),
            scored(1, "better", 3.0, 0.5, strengths={"haze": 1.3}, after={"noise": 0.1}),
        ],
        ("rolled_back", 0),
    ),  # fmt: skip
    # an artefact the plan's operators do not make (clipping after a denoiser) costs nothing
    "artefact not its own": (
        [
            scored(0, "better", 4.0, 1.0, {"crushed_shadows": 0.02}, {"noise": 1.0}),
            scored(1, "better", 2.5, 1.0, None, {"noise": 0.5}),
        ],
        ("rolled_back", 0),
    ),
}


@pytest.mark.parametrize("name", DECIDE_QUALITY)
def test_conclude_by_estimated_gain(name):
    attempts, (decision, chosen) = DECIDE_QUALITY[name]
    final = conclude(INPUT, attempts, S)
    assert (final.decision, final.chosen) == (decision, chosen)


def test_a_likely_better_attempt_says_so_and_can_be_turned_off():
    attempts = [scored(0, "uncertain", 3.4, 2.3), scored(1, "uncertain", 2.0, 1.0)]
    final = conclude(INPUT, attempts, S)
    assert final.chosen == 0 and "likely better" in final.reason and "+3.4 dB" in final.reason
    assert conclude(INPUT, attempts, S.model_copy(update={"quality_likely_k": 5.0})).decision == "unchanged"


def test_a_better_attempt_with_ringing_retries_gentler_on_the_low_pass_kinds_only():
    # ringing comes from the deconvolution: the retry weakens blur, not the denoiser
    a = scored(0, "better", 2.0, 0.5, {"ringing": 1.4}, {"noise": 1.0, "blur": 1.0})
    step = decide(INPUT, [a], S)
    assert isinstance(step, Retry) and step.rule == "gentler"
    assert step.factors["blur"] == 0.5 and step.factors["noise"] == 1.0


def test_an_uncertain_loss_retries_gentler_not_bolder():
    step = decide(INPUT, [scored(0, "uncertain", -0.2, 1.0)], S)
    assert isinstance(step, Retry) and step.rule == "gentler"


def test_an_uncertain_gain_held_back_by_clipping_retries_without_the_motion_deblurring():
    # dehazing + motion deblurring, estimated +3 dB but the deconvolution clipped: drop it, keep the dehazing
    a = scored(0, "uncertain", 3.0, 1.0, {"clipped_highlights": 0.03}, {"motion_blur": 1.0, "haze": 1.0})
    step = decide(INPUT, [a], S)
    assert isinstance(step, Retry) and step.rule == "gentler"
    assert step.skip == {"motion_blur"} and step.factors["haze"] == 1.0
    # ringing after a defocus deblurring is no such sign (mostly found on attempts that helped), but a mixed plan
    # left undecided is split: the dehazing alone
    b = scored(0, "uncertain", 3.0, 3.0, {"ringing": 5.0}, {"blur": 1.0, "haze": 1.0})
    assert decide(INPUT, [b], S) == Retry("split", None, per_kind(1.0), frozenset({"blur"}))
    assert decide(INPUT, [scored(0, "uncertain", 3.0, 3.0, {"ringing": 5.0}, {"blur": 1.0})], S).rule == "bolder"


def test_an_uncertain_gain_retries_bolder():
    step = decide(INPUT, [scored(0, "uncertain", 0.4, 1.0)], S)
    assert isinstance(step, Retry) and step.rule == "bolder"


def test_an_uncertain_motion_deblurring_is_not_retried_bolder():
    # a stronger motion deconvolution raises the estimate, not the truth (rnr_016_coffee: +0.9 -> +1.8 dB estimated,
    # -0.1 -> -0.8 true): conclude instead, here with the input unchanged
    a = scored(0, "uncertain", 0.9, 0.8, strengths={"motion_blur": 1.0})
    assert decide(INPUT, [a], S) == Final(
        "unchanged", None, "no attempt was estimated to improve on the input (1 tried); input returned"
    )
    # one that was better is still refined as before
    b = scored(0, "better", 3.0, 0.5, strengths={"motion_blur": 1.0, "noise": 1.0}, after={"noise": 0.3})
    assert decide(INPUT, [b], S).rule == "stronger"


#: (gain, spread dB, spread in signed log, verdict) of a dehazing: where the members extrapolate, the dB bound is two
#: spreads down (``quality_z_extrapolating``), not one.
EXTRAPOLATING = {
    # rnr_014_sklearn_china_rain: a hazy sky with rain streaks read as haze and dehazed into dark streaks and blotches,
    # truly -19.9 dB: one spread down it was kept (+3.9), two spreads down it is not (+0.1)
    "members extrapolate": (7.63, 3.77, None, "uncertain"),
    # the same estimate inside the fitted statistics: one spread down
    "members inside": (7.63, 3.77, 0.9, "better"),
    # the dehazed rainy astronaut (truly +8.0 dB) is clear enough either way
    "clear while extrapolating": (5.12, 2.2, None, "better"),
}


@pytest.mark.parametrize("name", EXTRAPOLATING)
def test_an_extrapolating_estimate_is_discounted_two_spreads(name):
    gain, spread, spread_log, expected = EXTRAPOLATING[name]
    q = QualityTrace(gain_db=gain, spread_db=spread, spread_log=spread_log, artefacts={"false_texture": 1.0})
    assert judge_quality(0.99, q, S, None, ["haze"])[0] == expected
    # the final choice ranks by the same bound
    a = scored(0, "better", gain, spread, spread_log=spread_log, strengths={"haze": 1.0})
    assert assured_gain(a.quality, ["haze"], S) == pytest.approx(gain - (2.0 if spread_log is None else 1.0) * spread)


#: (gain, spread dB, spread in signed log, artefacts, expected verdict): members agreeing on the sign of a big change
#: but not on its size.
AGREEING = {
    # the dim astronaut brightened right (members 2.8, 2.9, 24, 28, 36 dB; truly +18 dB): the dB bound is -1.6, the
    # signed-log bound +1.95
    "big gain, members agree on the sign": (12.2, 13.8, 1.0, {}, "better"),
    # the same spread with an artefact found: the signed-log bound is not trusted (it once kept a -12 dB dehazing)
    "big gain with an artefact": (12.2, 13.8, 1.0, {"false_texture": 2.3}, "uncertain"),
    # members that straddle 0 in signed log too stay unsure
    "members straddle zero": (1.0, 1.5, 0.9, {}, "uncertain"),
    # where the members extrapolate the model gives no signed-log spread (a hazy, rainy crop dehazed 4 dB worse)
    "members extrapolate": (15.3, 27.2, None, {}, "uncertain"),
    # a trace from before 1.7.0 (no signed-log spread): the dB bound alone
    "old trace": (12.2, 13.8, None, {}, "uncertain"),
}


@pytest.mark.parametrize("name", AGREEING)
def test_members_agreeing_on_a_big_gain_assure_it(name):
    gain, spread, spread_log, artefacts, expected = AGREEING[name]
    q = QualityTrace(gain_db=gain, spread_db=spread, spread_log=spread_log, artefacts=artefacts)
    verdict, reason = judge_quality(0.99, q, S, None, ["low_light", "jpeg"])
    assert verdict == expected
    assert ("agrees on at least" in reason) == (name == "big gain, members agree on the sign")


def test_the_signed_log_bound_ranks_the_final_choice():
    # attempt 0 assures +1.95 dB only in signed log, attempt 1 +1.5 dB in dB: attempt 0 is returned
    a0 = scored(0, "better", 12.2, 13.8)
    a0 = a0.model_copy(update={"quality": a0.quality.model_copy(update={"spread_log": 1.0})})
    a1 = scored(1, "better", 2.0, 0.5)
    final = conclude(INPUT, [a0, a1], S)
    assert (final.decision, final.chosen) == ("rolled_back", 0)


#: (gain, spread, spread_log, artefacts, the plan's strengths, expected verdict) for plans that brighten.
BRIGHTENED = {
    # the ensemble unsure how much (0.3 - 0.6 < 0.25) but not whether: a brightening at its dose counts as better
    "at its dose, estimated to help": (0.3, 0.6, 0.43, {}, {"low_light": 1.0, "motion_blur": 1.0}, "better"),
    "gentler than its dose": (0.3, 0.6, 0.43, {}, {"low_light": 0.5}, "better"),
    # bolder than diagnosed: over-brightening is what the ensemble cannot rule out
    "bolder than its dose": (0.3, 0.6, 0.43, {}, {"low_light": 1.5}, "uncertain"),
    # any artefact (crushed shadows, clipping: the camera crop that was truly -0.4 dB) keeps it undecided
    "with an artefact": (2.3, 4.8, 0.94, {"crushed_shadows": 0.02}, {"low_light": 1.0}, "uncertain"),
    # a clean photo called dark: the estimate is below 0
    "estimated to hurt": (-1.05, 2.8, 1.1, {}, {"low_light": 1.0}, "uncertain"),
    # the members extrapolate: their estimate assures nothing
    "extrapolating": (0.3, 0.6, None, {}, {"low_light": 1.0}, "uncertain"),
    # no strengths given (a refinement judged against the input): the row does not apply
    "no strengths": (0.3, 0.6, 0.43, {}, None, "uncertain"),
}


def judged_at_dose(row: tuple, kinds_without_strengths: list[str]) -> tuple[QualityTrace, str]:
    """The estimate of an at-dose table row and the verdict on it (the plan's kinds are its strengths' keys)."""
    gain, spread, spread_log, artefacts, strengths, _ = row
    q = QualityTrace(gain_db=gain, uncertainty_db=2 * spread, spread_db=spread, spread_log=spread_log,
                     artefacts=artefacts)  # fmt: skip
    return q, judge_quality(0.99, q, S, None, list(strengths or kinds_without_strengths), strengths)[0]


@pytest.mark.parametrize("name", BRIGHTENED)
def test_a_brightening_at_its_dose_is_judged_by_whether_it_helps(name):
    q, verdict = judged_at_dose(BRIGHTENED[name], ["low_light"])
    assert verdict == BRIGHTENED[name][-1]
    # the same estimate on a plan that does not brighten is undecided: the brightening row is what decides
    assert judge_quality(0.99, q, S, None, ["noise"], {"noise": 1.0})[0] == "uncertain"


#: (gain, spread, spread_log, artefacts, the plan's strengths, expected verdict) for plans of noise and JPEG.
DENOISED_AND_DEBLOCKED = {
    # mio_A_noise+jpeg_2_gradio_cheetah: +0.6 dB +-3.3 estimated, truly +3.3, once returned noisy and blocky
    "at their dose, estimated to help": (0.59, 3.3, 0.5, {}, {"jpeg": 1.0, "noise": 1.0}, "better"),
    "gentler than their dose": (0.6, 3.0, 0.5, {}, {"jpeg": 1.0, "noise": 0.25}, "better"),
    # a bolder retry smoothed the cheetah's fur away (truly +1.9 against +3.3 at its dose)
    "bolder than their dose": (0.6, 3.0, 0.5, {}, {"jpeg": 1.5, "noise": 1.5}, "uncertain"),
    "with an artefact": (0.6, 3.0, 0.5, {"over_smoothing": -1.45}, {"jpeg": 1.0, "noise": 1.0}, "uncertain"),
    # between 0 and the margin: the one such attempt that was worse (-0.72 dB) was estimated +0.18
    "estimated inside the margin": (0.18, 2.7, 0.5, {}, {"jpeg": 1.0, "noise": 1.0}, "uncertain"),
    "extrapolating": (0.6, 3.0, None, {}, {"jpeg": 1.0, "noise": 1.0}, "uncertain"),
    "with a third kind": (0.6, 3.0, 0.5, {}, {"jpeg": 1.0, "noise": 1.0, "haze": 1.0}, "uncertain"),
    "no strengths": (0.6, 3.0, 0.5, {}, None, "uncertain"),
}


@pytest.mark.parametrize("name", DENOISED_AND_DEBLOCKED)
def test_a_denoising_and_deblocking_at_their_dose_is_judged_by_whether_it_helps(name):
    _, verdict = judged_at_dose(DENOISED_AND_DEBLOCKED[name], ["jpeg", "noise"])
    assert verdict == DENOISED_AND_DEBLOCKED[name][-1]


#: (gain, spread, spread_log, artefacts, the plan's strengths, expected verdict) for plans that deblur a defocus.
DEBLURRED = {
    # a soft lens on a held-out coffee crop: +0.9 dB estimated (spread 0.7), truly +6.5, once returned blurred
    "at its dose, estimated to help": (0.91, 0.7, 0.6, {}, {"blur": 1.0}, "better"),
    "gentler than its dose": (0.4, 0.3, 0.3, {}, {"blur": 0.25}, "better"),
    # clipping is a tone artefact the deconvolution does not make (the soft-disk crops that clipped were +4 to +6.5)
    "with tone clipping": (0.54, 0.8, 0.44, {"clipped_highlights": 0.005}, {"blur": 1.0}, "better"),
    "bolder than its dose": (0.9, 0.7, 0.6, {}, {"blur": 1.5}, "uncertain"),
    "with ringing": (0.9, 0.7, 0.6, {"ringing": 4.6}, {"blur": 1.0}, "uncertain"),
    "with amplified noise": (0.9, 0.7, 0.6, {"amplified_noise": 5.2}, {"blur": 1.0}, "uncertain"),
    "with ghosts": (0.9, 0.7, 0.6, {"ghosting": 0.45}, {"blur": 1.0}, "uncertain"),
    # the brick wall under a soft disk of radius 4: +0.5 estimated, members far apart, truly -0.94 with halos
    "members disagreeing": (0.47, 2.0, 0.97, {}, {"blur": 1.0}, "uncertain"),
    # the estimate says little for a deblurring (soft disks on coffee and china crops: +0.04 and +0.13 dB estimated,
    # truly +3.2 and +3.3): inside the margin counts, a loss does not
    "estimated inside the margin": (0.05, 0.4, 0.4, {}, {"blur": 1.0}, "better"),
    "estimated a loss": (-0.1, 0.1, 0.4, {}, {"blur": 1.0}, "uncertain"),
    "extrapolating": (0.9, 0.7, None, {}, {"blur": 1.0}, "uncertain"),
    # a motion deconvolution or an up-sampling is not covered, alone or beside the deblurring, nor a dehazing
    "motion": (0.9, 0.7, 0.6, {}, {"motion_blur": 1.0}, "uncertain"),
    "up-sampling": (0.9, 0.7, 0.6, {}, {"low_resolution": 1.0}, "uncertain"),
    "with motion": (0.9, 0.7, 0.6, {}, {"blur": 1.0, "motion_blur": 1.0}, "uncertain"),
    "with up-sampling": (0.9, 0.7, 0.6, {}, {"blur": 1.0, "low_resolution": 1.0}, "uncertain"),
    "with a dehazing": (0.9, 0.7, 0.6, {}, {"blur": 1.0, "haze": 1.0}, "uncertain"),
    # other kinds at their dose beside it are: a soft disk read with a false rain on a held-out motorcycle crop,
    # +0.6 dB estimated with tones clipped, truly +5.1, was split and returned blurred
    "with rain, tones clipped": (0.6, 1.2, 0.61, {"clipped_highlights": 0.01}, {"blur": 1.0, "rain": 0.9}, "better"),
    "with a deblocking": (0.2, 0.5, 0.38, {}, {"blur": 1.0, "jpeg": 1.0}, "better"),
    "with rain beyond its dose": (0.9, 0.7, 0.6, {}, {"blur": 1.0, "rain": 1.3}, "uncertain"),
    "no strengths": (0.9, 0.7, 0.6, {}, None, "uncertain"),
}


@pytest.mark.parametrize("name", DEBLURRED)
def test_a_deblurring_at_its_dose_is_judged_by_whether_it_helps(name):
    _, verdict = judged_at_dose(DEBLURRED[name], ["blur"])
    assert verdict == DEBLURRED[name][-1]


#: The same for a defocus disk the diagnosis is sure of (``measure`` reads its radius off the spectrum's zero rings).
DISK = {
    # the soft-disk tower of the held-out protocol: estimated -3.4 dB (spread 2.4), truly +6.8, once returned blurred
    "the tower, estimated a loss": (-3.4, 2.4, 0.5, {}, {"blur": 1.0}, "better"),
    # a held-out soft disk estimated -0.95 with ringing found, truly +4.7: a right disk's deconvolution rings
    "with ringing": (-0.95, 1.85, 0.5, {"ringing": 1.4}, {"blur": 1.0}, "better"),
    "gentler than its dose": (-1.0, 1.0, 0.4, {}, {"blur": 0.5}, "better"),
    # a calibration brick wall, truly -6.1: estimated far below any right disk
    "estimated far below": (-10.35, 8.5, 0.8, {}, {"blur": 1.0}, "worse"),
    "with ghosts": (-1.0, 1.0, 0.4, {"ghosting": 0.5}, {"blur": 1.0}, "worse"),
    "with new texture": (0.5, 1.0, 0.4, {"false_texture": 2.5}, {"blur": 1.0}, "uncertain"),
    "bolder than its dose": (-1.0, 0.5, 0.4, {}, {"blur": 1.5}, "worse"),
    "extrapolating": (-1.0, 0.5, None, {}, {"blur": 1.0}, "worse"),
    "with a second kind": (-1.0, 0.5, 0.4, {}, {"blur": 1.0, "rain": 1.0}, "worse"),
}


@pytest.mark.parametrize("name", DISK)
def test_a_defocus_disk_deblurring_at_its_dose_is_returned_unless_harm_shows(name):
    gain, spread, spread_log, artefacts, strengths, expected = DISK[name]
    q = QualityTrace(gain_db=gain, uncertainty_db=2 * spread, spread_db=spread, spread_log=spread_log,
                     artefacts=artefacts)  # fmt: skip
    assert judge_quality(0.99, q, S, None, list(strengths), strengths, disk=True)[0] == expected
    # without a disk (a Gaussian kernel: the spread says less) the same estimate is judged as before
    if expected == "better" and gain < 0:
        assert judge_quality(0.99, q, S, None, list(strengths), strengths)[0] != "better"


#: (gain, spread dB, spread in signed log, artefacts, strengths, input's mean luminance, expected verdict) of a
#: dehazing (agent.policy.dehazed_at_dose); the numbers are the protocols' attempts.
DEHAZE = {
    # a held-out MiO haze on a coffee crop, estimated +1.1 dB (spread 1.2), truly +6.8, once returned hazy
    "coffee, estimated a small gain": (1.12, 1.2, 0.4, {}, {"haze": 1.0}, 0.63, "better"),
    "gentler than its dose": (0.5, 0.8, 0.3, {}, {"haze": 0.5}, 0.6, "better"),
    # a hazy sky crossed by rain streaks read as haze, estimated +2.4 (spread 2.9), truly -15.7: a bright frame
    "a bright frame": (2.41, 2.9, 1.2, {}, {"haze": 0.74}, 0.87, "uncertain"),
    "luminance unknown": (1.12, 1.2, 0.4, {}, {"haze": 1.0}, None, "uncertain"),
    "estimated a loss": (-0.3, 1.2, 0.4, {}, {"haze": 1.0}, 0.6, "uncertain"),
    "with clipped highlights": (1.27, 1.2, 0.4, {"clipped_highlights": 0.03}, {"haze": 0.5}, 0.6, "uncertain"),
    "bolder than its dose": (1.12, 1.2, 0.4, {}, {"haze": 1.5}, 0.6, "uncertain"),
    "extrapolating": (1.12, 1.2, None, {}, {"haze": 1.0}, 0.6, "uncertain"),
    "with a second kind": (1.12, 1.2, 0.4, {}, {"haze": 1.0, "rain": 1.0}, 0.6, "uncertain"),
    # a hazy photo at high ISO, denoised and dehazed at their dose (session 24: 44 of 44 such attempts left
    # uncertain were truly better, +0.6 to +10 dB), also saved as JPEG; not with the noise bolder than its dose
    "with the noise found with it": (1.6, 1.8, 0.7, {}, {"noise": 1.0, "haze": 1.0}, 0.55, "better"),
    "with noise and JPEG": (0.8, 1.3, 0.5, {}, {"jpeg": 1.0, "noise": 1.0, "haze": 0.5}, 0.5, "better"),
    "noise bolder than its dose": (1.6, 1.8, 0.7, {}, {"noise": 1.5, "haze": 1.0}, 0.55, "uncertain"),
    "noise with a blur": (1.6, 1.8, 0.7, {}, {"noise": 1.0, "haze": 1.0, "blur": 1.0}, 0.55, "uncertain"),
}


@pytest.mark.parametrize("name", DEHAZE)
def test_a_dehazing_at_its_dose_of_a_frame_not_too_bright_is_returned(name):
    gain, spread, spread_log, artefacts, strengths, lum, expected = DEHAZE[name]
    q = QualityTrace(gain_db=gain, uncertainty_db=2 * spread, spread_db=spread, spread_log=spread_log,
                     artefacts=artefacts)  # fmt: skip
    verdict, reason = judge_quality(0.99, q, S, None, list(strengths), strengths, input_lum=lum)
    assert verdict == expected
    if expected == "better":
        assert "dehazing at its own dose" in reason
        # without the luminance (the severity scorer, an old caller) the same estimate stays unsure
        assert judge_quality(0.99, q, S, None, list(strengths), strengths)[0] == "uncertain"
    if name == "a bright frame":  # the same attempt on a darker frame is trusted
        assert judge_quality(0.99, q, S, None, list(strengths), strengths, input_lum=0.6)[0] == "better"


def test_an_undecided_mixed_plan_is_split_from_its_deconvolution():
    # mio_A_defocus+haze_5_gradio_cheetah2: blur + haze estimated +0.9 dB (truly +6.7), bolder +1.1 and +1.2 (truly
    # +7.1, +6.5), returned unchanged; the dehazing alone was accepted, truly +6.8 dB
    a = scored(0, "uncertain", 0.9, 1.4, strengths={"blur": 1.0, "haze": 0.79})
    step = decide(INPUT, [a], S)
    assert step == Retry("split", None, per_kind(1.0), frozenset({"blur"}))
    hazy = record(haze=0.6, blur=0.5)
    assert retry_plan(step, hazy, [a]).kinds == ["haze"]
    # and the deconvolution stays out of a bolder retry of the split plan
    b = scored(1, "uncertain", 0.5, 1.4, strengths={"haze": 0.79, "noise": 1.0})
    step = decide(record(haze=0.6, blur=0.5, noise=0.4), [a, b], S)
    assert step.rule == "bolder" and retry_plan(step, record(haze=0.6, blur=0.5, noise=0.4), [a, b]).kinds == [
        "noise", "haze"]  # fmt: skip
    # a worse or drifting mixed plan is not split (gentler, as before: own cases, seed 2, a dim camera crop whose
    # split plan was refused again and the attempt lost); nor a better one, nor a plan of low-pass kinds alone
    assert decide(INPUT, [scored(0, "worse", -2.0, 0.5, strengths={"blur": 1.0, "haze": 1.0})], S).rule == "gentler"
    assert getattr(decide(INPUT, [scored(0, "better", 3.0, 0.5, strengths={"blur": 1.0, "haze": 1.0})], S), "rule",
                   None) != "split"  # fmt: skip
    assert mixed_lowpass(a.plan) == {"blur"} and mixed_lowpass(Plan(operations=[Operation(kind="blur", severity=0.5),
        Operation(kind="low_resolution", severity=0.5)])) == frozenset()  # fmt: skip


def test_a_better_refinement_supersedes_its_source():
    # the cameraman photo darkened under Poisson noise: denoised, +4.7 dB estimated (truly +0.4); brightened on top
    # at its dose, +1.4 estimated (truly +10.9, better by the brightening row): the refinement is returned
    first = scored(0, "better", 4.7, 3.2, after={"low_light": 0.4})
    bright = scored(1, "better", 1.4, 2.0, strengths={"low_light": 1.0}, after={"noise": 0.1})
    bright = bright.model_copy(update={"source": 0, "rule": "revealed"})
    assert conclude(INPUT, [first, bright], S).chosen == 1
    assert superseding([first, bright], [first, bright], S) == [bright]
    # a refinement judged worse leaves its source in the running
    worse = bright.model_copy(update={"verdict": "worse"})
    assert conclude(INPUT, [first, worse], S).chosen == 0
    # after a better refinement, no "stronger" retry of the input's kinds on top of it (only its own tone)
    assert isinstance(decide(INPUT, [first, bright], S), Final)


def test_an_extrapolated_dehazing_is_not_returned_once_another_dose_failed_the_haze_check():
    from reasoner.quality.artefacts import NOT_HAZE

    # a grey sky streaked with rain read as mild haze: dehazed at full strength the sky went dark while the white
    # streaks stayed (contrast up, estimated +15.6 dB +-9.0 with the members extrapolating, truly -15.4); at half
    # strength it failed the check
    rec = record(rain=0.5, haze=0.3)
    strong = scored(0, "better", 15.6, 6.3, strengths={"rain": 1.0, "haze": 1.0}, spread_log=None)
    half = scored(1, "worse", 8.7, 4.2, strengths={"rain": 1.0, "haze": 0.5})
    half = half.model_copy(update={"reason": f"{NOT_HAZE}; estimated +8.7 dB (spread 4.2)", "rule": "gentler"})
    rain = scored(2, "uncertain", 0.2, 0.3, strengths={"rain": 1.0}).model_copy(update={"rule": "gentler"})
    final = conclude(rec, [strong, half, rain], S)
    assert final == Final("unchanged", None, final.reason) and "attempt 0 set aside" in final.reason
    # the rain removal alone, when better, is returned
    better = rain.quality.model_copy(update={"gain_db": 3.0})
    derained = rain.model_copy(update={"verdict": "better", "quality": better})
    assert conclude(rec, [strong, half, derained], S).chosen == 2
    # without the failed check the strong dehazing is returned, as before
    other = half.model_copy(update={"reason": "estimated -3.0 dB (spread 1.0)"})
    assert conclude(rec, [strong, other, rain], S).chosen == 0
    # nor is a dehazing the members agree on set aside: a true depth-varying haze can fail the check at half dose
    agreed = strong.model_copy(update={"quality": strong.quality.model_copy(update={"spread_log": 0.6})})
    assert conclude(rec, [agreed, half, rain], S).chosen == 0


def test_a_dehazing_at_the_dose_that_failed_the_haze_check_is_not_returned_from_another_source():
    from agent.policy import reread_step, set_aside
    from reasoner.quality.artefacts import NOT_HAZE

    # a noisy, blurred camera crop read as hazy (MiO's motion blur + defocus + noise): denoised and dehazed at the
    # haze's dose in the first plan (+3.9 dB +-1.8 estimated, truly -1.0), split, and dehazed at the same dose on top
    # of the denoising, which failed the haze check. The first plan is set aside with it, and the denoising alone
    # (truly +5.7), a step otherwise never returned, is what holds of it
    hazy = record(noise=0.9, haze=0.35)
    first = scored(0, "better", 3.9, 1.8, strengths={"noise": 1.0, "haze": 1.0})
    step = scored(1, "better", 8.7, 3.3, strengths={"noise": 1.0}).model_copy(update={"rule": "split"})
    on_top = scored(2, "worse", 5.6, 1.7, strengths={"haze": 1.0}).model_copy(
        update={"rule": "revealed", "source": 1, "reason": f"{NOT_HAZE}; estimated +5.6 dB (spread 1.7)"}
    )
    attempts = [first, step, on_top]
    assert reread_step(step, attempts, S) == {"haze"}  # the re-read split, as the agent makes it
    assert set_aside(attempts) == {0}
    final = conclude(hazy, attempts, S)
    assert final.chosen == 1 and "attempt 0 set aside" in final.reason
    # at another dose the check says nothing of the first plan (a depth-varying haze can fail it at half dose): the
    # first plan is returned and the step stays a step, as before
    half = on_top.model_copy(update={"plan": Plan(operations=[Operation(kind="haze", severity=0.35, strength=0.5)])})
    assert set_aside([first, step, half]) == frozenset()
    assert conclude(hazy, [first, step, half], S).chosen == 0


def test_an_artefact_of_a_better_attempt_never_asks_for_a_weaker_brightening():
    # A brightening lifts every level above black: shadows at black after one were there before or come from another
    # operator of the plan (crushed_shadows no longer names low light). And whatever a better attempt showed, a weaker
    # brightening retried for it was worse than its source 54 times in 60 (restorer.plan.SELF_DOSED): only the other
    # kinds the artefact names are weakened. A dehazing that crushes shadows is still retried weaker.
    from agent.policy import artefact_kinds, decide

    dark = record(low_light=0.5, jpeg=0.3)
    crushed = scored(0, "better", 2.7, 0.5, {"crushed_shadows": 0.02}, {"low_light": 1.0, "jpeg": 1.0})
    assert artefact_kinds(crushed.quality) == {"haze", "motion_blur"}
    banded = crushed.model_copy(update={"quality": crushed.quality.model_copy(update={"artefacts": {"banding": 0.3}})})
    assert "low_light" in artefact_kinds(banded.quality)
    for better_one in (crushed, banded):
        step = decide(dark, [better_one], S)
        assert not (isinstance(step, Retry) and step.rule == "gentler" and step.factors["low_light"] < 1.0)
    step = decide(dark, [banded], S)
    assert step.rule == "gentler" and step.factors["jpeg"] == 0.5 and step.factors["low_light"] == 1.0
    hazy = scored(0, "better", 2.7, 0.5, {"crushed_shadows": 0.02}, {"haze": 1.0})
    step = decide(record(haze=0.5), [hazy], S)
    assert step.rule == "gentler" and step.factors["haze"] == 0.5
    # a bolder brightening (above its dose) that shows an artefact is still retried weaker
    bolder = scored(1, "better", 2.7, 0.5, {"banding": 0.3}, {"low_light": 1.5, "jpeg": 1.0})
    step = decide(dark, [crushed.model_copy(update={"verdict": "uncertain"}), bolder], S)
    assert step.rule == "gentler" and step.factors["low_light"] == 0.5
