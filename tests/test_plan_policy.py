"""The restoration-plan policy (rl/plan_policy.py, rl/plan_rewards.py, rl/plan_grpo.py) and its hook in the agent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.state import Settings
from reasoner.measure import MeasureReasoner
from reasoner.schema import DiagnosisRecord, make_degradation
from restorer.plan import Operation, Plan, plan_from_record
from rl.ground_truth import synthesize
from rl.photos import CALIBRATION_PHOTOS, load_photo, random_crop
from rl.plan_policy import (
    META_FILE,
    PROMPT_VERSION,
    PlanPolicy,
    PlanPolicyError,
    hand_target,
    oracle_target,
    parse_completion,
    prompt_messages,
    to_plan,
)
from rl.plan_rewards import PlanEngine, PlanFormat, PsnrGain, QualityGain, build_plan_rewards

RECIPES = Path(__file__).parents[1] / "rl" / "recipes"
HAND = Plan(
    operations=[
        Operation(kind="noise", severity=0.4, strength=1.0, params={"sigma": 20.0, "model": "gaussian"}),
        Operation(
            kind="haze",
            severity=0.6,
            strength=0.5,
            params={"transmission": 0.5, "airlight": [0.9, 0.9, 0.9], "beta": 0.7},
        ),  # fmt: skip
    ]
)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("1.25 0.75", [("noise", 1.25), ("haze", 0.375)]),  # one factor per kind on the hand strength, in order
        ("0.00 2.00", [("haze", 1.0)]),  # 0 skips a kind
        ("1.00", None),  # a strength short
        ("1.00 0.50 0.50", None),  # one too many
        ("1.00 2.50", None),  # a factor above the bound
        ("noise 1.25, haze 0.75", [("noise", 1.25), ("haze", 0.75)]),  # named pairs, restoration order
        ("haze 1, noise 0.5", [("haze", 1.0), ("noise", 0.5)]),  # the order is the policy's
        ("noise 1, haze 0", [("noise", 1.0)]),  # strength 0 skips a kind
        ("haze 1.5", [("haze", 1.5)]),  # a kind left out is skipped
        ("none", []),  # restore nothing
        (" noise 1 , haze 1. ", [("noise", 1.0), ("haze", 1.0)]),  # spaces and a trailing full stop
        ('{"steps": [{"kind": "haze", "strength": 1.25}]}', [("haze", 1.25)]),  # the schema JSON
        ('```json\n{"steps": []}\n```', []),  # fenced JSON
        ([{"role": "assistant", "content": "noise 0.5"}], [("noise", 0.5)]),  # TRL's conversational completion
        ("blur 1", None),  # a kind the diagnosis does not hold: no factors to run it with
        ("noise 1, noise 0.5", None),  # a kind twice
        ("noise 2.5", None),  # above the strength bound
        ("noise strong", None),  # not a number
        ("noise 1 haze 1", None),  # pairs not separated
        ('{"steps": [{"kind": "noise", "strength": 1}', None),  # partial JSON
        ('{"steps": [{"kind": "noise", "strength": 1, "colour": 1}]}', None),  # a field the schema does not have
        ('{"steps": [{"kind": "noise", "strength": 1, "params": {"radius": 3}}]}', None),  # a factor noise lacks
        ('{"steps": [{"kind": "noise", "strength": 1, "params": {"sigma": -4}}]}', None),  # out of the factor's range
        ("", None),  # an empty reply
    ],
)
def test_completion_to_plan(reply, expected):
    parsed = parse_completion(reply, HAND)
    if expected is None:
        assert parsed is None
        assert PlanFormat()(None, [reply], hand=[HAND.model_dump_json()]) == [0.0]
        return
    plan = to_plan(parsed, HAND)
    assert [(op.kind, op.strength) for op in plan.operations] == expected
    assert PlanFormat()(None, [reply], hand=[HAND.model_dump_json()]) == [1.0]
    for op in plan.operations:  # the diagnosed severity and factors travel with each operation
        assert op.severity == next(h.severity for h in HAND.operations if h.kind == op.kind)
        assert op.params == next(h.params for h in HAND.operations if h.kind == op.kind)


def test_factor_overrides_and_instruction():
    reply = (
        '{"steps": [{"kind": "noise", "strength": 0.5, "params": {"sigma": 12}}, {"kind": "haze", "strength": 1.5}]}'
    )
    plan = to_plan(parse_completion(reply, HAND), HAND)
    assert plan.operations[0].params == {"sigma": 12, "model": "gaussian"}
    # The edit restorers' instruction says how firmly (restorer.instructions renders the plan's strengths too).
    assert "noise (moderate, gently)" in plan.instruction and "haze (moderate, thoroughly)" in plan.instruction
    from restorer.instructions import remove_lines

    lines = remove_lines(plan)
    assert lines[0].endswith(", gently.") and lines[1].endswith(", thoroughly.")


def test_prompt_and_targets():
    user = prompt_messages(HAND)[1]["content"]
    assert "noise 4 9\nhaze 6 5" in user and "`1.00 0.50`" in user
    assert '"steps"' in prompt_messages(HAND, "json")[1]["content"]
    bins = {"lum_mean": [0.2, 0.4], "noise_sigma_mid": [5.0]}
    with_stats = prompt_messages(HAND, stats={"lum_mean": 0.5}, bins=bins)[1]["content"]
    assert "Measured statistics (deciles):\nlum_mean 2\nnoise_sigma_mid ?" in with_stats
    assert hand_target(HAND) == "1.00 1.00"  # the hand plan exactly
    assert json.loads(hand_target(HAND, "json"))["steps"][1] == {"kind": "haze", "strength": 0.5, "params": {}}
    assert to_plan(parse_completion(hand_target(HAND), HAND), HAND).operations == HAND.operations
    truth = synthesize(np.full((32, 32, 3), 0.5, np.float32), 0, kinds=["noise"]).record
    assert oracle_target(HAND, truth) == "1.00 0.00"  # haze is not there: the oracle skips it
    with pytest.raises(ValueError, match="completion"):
        prompt_messages(HAND, "yaml")


@pytest.fixture(scope="module")
def noisy_case():
    clean = random_crop(load_photo(CALIBRATION_PHOTOS[0]), np.random.default_rng(0), 96)
    syn = synthesize(clean, 0, kinds=["noise"])  # Gaussian noise, sigma 22
    return clean, syn


def test_full_reference_reward_prefers_the_plan_closer_to_the_oracle(noisy_case):
    clean, syn = noisy_case
    oracle = plan_from_record(syn.record)  # the ground truth as the diagnosis: "noise 1" is the oracle plan
    replies = ["noise 1", "noise 0.5", "noise 0.25", "none", "oops"]
    cols = dict(pixels=[syn.image] * 5, hand=[oracle.model_dump_json()] * 5, record=[syn.record.model_dump_json()] * 5)
    with PlanEngine(workers=0) as engine:
        gain = PsnrGain(engine)(None, replies, clean=[clean] * 5, **cols)
        quality = QualityGain(engine)(None, replies, **cols)
        assert engine.misses == 4  # the unparsable reply restores nothing; the second reward hit the cache
    assert gain[0] > gain[1] > gain[2] > gain[3] == 0.0 and gain[4] is None
    assert quality[4] is None and quality[3] == 0.0 and quality[0] > 0
    assert PsnrGain(engine)(None, ["noise 1"], **{k: v[:1] for k, v in cols.items()})[0] is None  # no clean crop
    # With fallback, a malformed reply scores what the agent then runs: the hand plan (here the oracle's).
    assert PsnrGain(engine, fallback=True)(None, ["oops"], clean=[clean], **{k: v[:1] for k, v in cols.items()}) == [
        gain[0]
    ]


def test_the_ceiling_target_drops_a_kind_the_crop_does_not_have(noisy_case):
    # a noisy crop diagnosed noisy and (falsely) hazy: of the hand plan and its one-factor changes, restoring the
    # noise alone is closest to the clean crop, so the ceiling target skips the haze; with the true diagnosis alone
    # nothing beats the hand plan, which a tie keeps
    from restorer import load_restorer
    from rl.plan_grpo import ceiling_target, plan_dataset

    clean, syn = noisy_case
    u8, clean8 = (np.clip(np.rint(x * 255), 0, 255).astype(np.uint8) for x in (syn.image, clean))
    noise = syn.record.degradations[0]
    haze = make_degradation("haze", 0.6, 0.9, transmission=0.45, airlight=[0.9, 0.9, 0.9], beta=0.8)
    false = syn.record.model_copy(update={"degradations": [noise, haze]})
    classical = load_restorer("classical")
    assert ceiling_target(u8, clean8, false, plan_from_record(false), classical) == "1.00 0.00"
    rows = plan_dataset([(u8, clean8, syn.record, false), (u8, None, None, false)], ceiling=True)
    assert rows["target_ceiling"] == ["1.00 0.00", "1.00 1.00"]  # no clean crop: the hand target


def test_recipes_parse_and_validate():
    from rl.plan_grpo import PlanRecipe, load_recipe_yaml
    from rl.recipe import RecipeError

    cpu = load_recipe_yaml("grpo_restore.yaml")
    gpu = load_recipe_yaml("grpo_restore_qwen3vl.yaml")
    assert cpu.policy == "text" and cpu.completion == "compact" and cpu.lora is None and cpu.device == "cpu"
    assert gpu.policy == "vlm" and gpu.completion == "json" and gpu.lora.r == 16 and gpu.dtype == "bfloat16"
    assert gpu.use_vllm and gpu.vllm["mode"] == "colocate"
    assert cpu.rewards == gpu.rewards  # the same rewards on CPU and GPUs
    assert set(cpu.rewards) == {"format", "psnr_gain", "quality_gain", "fidelity"}
    fns, weights = build_plan_rewards(cpu.rewards)
    assert [f.__name__ for f in fns] == list(cpu.rewards) and weights == cpu.reward_weights
    # The files on disk are the package data the loader reads.
    assert PlanRecipe.load(RECIPES / "grpo_restore.yaml") == cpu
    base = {"model": "m", "dataset": "d", "output_dir": "o"}
    for overrides, message in [
        (["rewards.severity_reduction=1"], "unknown plan reward"),  # the diagnosis policy's reward
        (["policy=vlm", "completion=compact"], "completion"),
        (["text_stats=[noise_sigma_mid]"], "diagnosis policy"),
        (["reasoner=policy"], "independent"),
        (["warm_start={target: truth}"], "warm_start"),
        (["per_device_train_batch_size=6", "num_generations=4"], "divisible"),
    ]:
        with pytest.raises(RecipeError, match=message):
            PlanRecipe.load(base, overrides)


class FixedPolicy(PlanPolicy):
    """A plan policy that always replies ``reply`` (no model)."""

    def __init__(self, reply: str) -> None:
        self.reply, self.completion = reply, "compact"

    def replies(self, hands, stats=None, **kwargs):
        return [[self.reply] for _ in hands]


@pytest.fixture
def policy_reply(monkeypatch):
    """Make every policy folder reply with the given text."""

    def use(reply: str) -> None:
        monkeypatch.setattr("rl.plan_policy.load_plan_policy", lambda path: FixedPolicy(reply))

    return use


def test_graph_runs_the_policy_plan_and_falls_back_to_the_hand_plan(noisy_case, policy_reply):
    from agent.run import restore_image

    _, syn = noisy_case
    assert "noise" in plan_from_record(MeasureReasoner().diagnose(syn.image)).kinds
    policy_reply("noise 0.5")  # the policy skips whatever else the diagnosis found
    _, trace = restore_image(syn.image, settings=Settings(policy="some/folder", max_attempts=1))
    assert [(op.kind, op.strength) for op in trace.attempts[0].plan.operations] == [("noise", 0.5)]
    assert trace.settings["policy"] == "some/folder"
    policy_reply('{"steps": [{"kind": "noise", "strength"')  # partial JSON: the hand plan runs
    _, trace = restore_image(syn.image, settings=Settings(policy="some/folder", max_attempts=1))
    assert trace.attempts[0].plan.operations == plan_from_record(trace.record_before).operations
    policy_reply("noise 0.5")  # the person's controls still apply on top of the policy's plan
    _, trace = restore_image(syn.image, settings=Settings(policy="some/folder", max_attempts=1, strength=0.5))
    assert [(op.kind, op.strength) for op in trace.attempts[0].plan.operations] == [("noise", 0.25)]


def test_a_policy_that_plans_nothing_is_named_as_the_reason(noisy_case, policy_reply):
    from agent.run import restore_image

    _, syn = noisy_case
    policy_reply('{"steps": []}')
    pixels, trace = restore_image(syn.image, settings=Settings(policy="p"))
    assert trace.decision == "unchanged" and not trace.attempts
    assert trace.decision_reason == "the plan policy chose to restore nothing; input returned unchanged"
    _, trace = restore_image(syn.image, settings=Settings(policy="p", strength=0))  # the person's controls first
    assert trace.decision_reason.startswith("your strength/only/skip settings leave nothing to restore")


def test_a_harmful_policy_plan_is_rescored_and_rolled_back(noisy_case, policy_reply):
    from agent.run import restore_image

    _, syn = noisy_case
    # Denoising as if the noise were 10x stronger wipes out the detail: the scorer must catch it.
    policy_reply('{"steps": [{"kind": "noise", "strength": 2, "params": {"sigma": 250}}]}')
    pixels, trace = restore_image(syn.image, settings=Settings(policy="p", max_attempts=1))
    assert trace.attempts[0].plan.operations[0].params["sigma"] == 250
    assert trace.attempts[0].verdict in ("worse", "drift")
    assert trace.decision == "unchanged" and trace.chosen_attempt is None
    np.testing.assert_allclose(pixels, np.round(syn.image * 255) / 255, atol=1 / 255)  # the input, untouched
    _, trace = restore_image(syn.image, settings=Settings(policy="p", max_attempts=3))
    assert trace.attempts[0].verdict in ("worse", "drift") and trace.chosen_attempt != 0  # a retry did better


def test_a_missing_policy_folder_is_one_line(tmp_path, noisy_case):
    from rl.plan_policy import read_meta

    with pytest.raises(PlanPolicyError, match="no such folder"):
        read_meta(tmp_path / "nope")
    meta = {"format": "rnr.plan_policy", "prompt_version": PROMPT_VERSION, "policy": "vlm", "completion": "json"}
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(PlanPolicyError, match="text policy"):
        read_meta(tmp_path)
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "prompt_version": 1, "policy": "text"}))
    with pytest.raises(PlanPolicyError, match="retrain"):
        read_meta(tmp_path)


def test_tiny_grpo_run_writes_a_policy_the_graph_runs(tmp_path, noisy_case):
    pytest.importorskip("trl")
    import torch

    from agent.run import restore_image
    from rl.plan_grpo import (
        WarmStart,
        diagnose_items,
        load_recipe_yaml,
        plan_dataset,
        train_plan_grpo,
        training_bins,
        warm_start,
    )
    from rl.tiny_text import build_tiny_text_policy
    from rl.training import read_manifest

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    items = []
    for i in range(6):
        clean = random_crop(load_photo(CALIBRATION_PHOTOS[i % 3]), rng, 64)
        syn = synthesize(clean, rng, n_kinds=(1, 2))
        items.append((syn.image, clean, syn.record))
    diagnosed = diagnose_items(items)
    bins = training_bins(diagnosed)
    rows = plan_dataset(diagnosed, bins=bins)
    assert "Measured statistics (deciles):\nnoise_sigma_mid " in rows["prompt"][0][1]["content"]
    assert len(rows) >= 2 and {"prompt", "pixels", "clean", "record", "hand", "target_hand"} <= set(rows.column_names)
    base = build_tiny_text_policy(tmp_path / "base", hidden=32, layers=1)
    warm = warm_start(base, rows, tmp_path / "warm", WarmStart(steps=2, batch=2), bins=bins)
    recipe = load_recipe_yaml("grpo_restore.yaml", {
        "model": str(warm), "dataset": "(rows)", "output_dir": str(tmp_path / "grpo"), "max_steps": 2,
        "per_device_train_batch_size": 4, "num_generations": 2, "max_completion_length": 12,
    })  # fmt: skip
    out = train_plan_grpo(recipe, train=rows, bins=bins)
    manifest = read_manifest(out)
    assert manifest["global_step"] == 2 and (out / META_FILE).is_file()
    assert {f"rewards/{k}/mean" for k in ("format", "psnr_gain")} <= set(manifest["log_history"][0])
    policy = PlanPolicy(out)
    assert policy.bins == bins
    hand = Plan.model_validate_json(rows["hand"][0])
    planned, reply = policy.plan(hand, DiagnosisRecord.model_validate_json(rows["record"][0]))
    assert isinstance(reply, str) and (planned is None or set(planned.kinds) <= set(hand.kinds))
    _, syn = noisy_case
    _, trace = restore_image(syn.image, settings=Settings(policy=str(out), max_attempts=1))
    assert trace.settings["policy"] == str(out) and len(trace.attempts) == 1
    # The same folder through the CLI: rnr restore --policy runs it inside the graph.
    import subprocess
    import sys

    from reasoner.imageio import save_image

    (tmp_path / "in").mkdir()
    save_image(tmp_path / "in" / "a.png", syn.image)
    rnr = Path(sys.executable).with_name("rnr")
    res = subprocess.run([rnr, "restore", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--policy", str(out),
                          "--max-attempts", "1"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "out" / "a.json").read_text())["settings"]["policy"] == str(out.resolve())


def test_rnr_restore_refuses_a_folder_that_is_not_a_policy_in_one_line(tmp_path):
    import subprocess
    import sys

    rnr = Path(sys.executable).with_name("rnr")
    (tmp_path / "in").mkdir()
    res = subprocess.run([rnr, "restore", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--policy",
                          str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no such folder" in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()


def test_the_same_recipe_trains_a_tiny_qwen3vl_plan_policy(tmp_path, tiny_vlm_dir, noisy_case):
    """The GPU recipe's policy (vlm, JSON replies, LoRA) on the tiny Qwen3-VL, 1 step on CPU in float32."""
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    from rl.plan_grpo import diagnose_items, load_recipe_yaml, plan_dataset, train_plan_grpo, training_bins
    from rl.training import read_manifest

    clean, syn = noisy_case
    diagnosed = diagnose_items([(syn.image, clean, syn.record)] * 2)
    bins = training_bins(diagnosed)
    rows = plan_dataset(diagnosed, "json", bins, vlm=True)
    assert "image" in rows.column_names and '"steps"' in rows["prompt"][0][1]["content"]
    overrides = {
        "model": str(tiny_vlm_dir), "dataset": "(rows)", "output_dir": str(tmp_path / "vlm"), "max_steps": 1,
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "num_generations": 2,
        "max_completion_length": 8, "device": "cpu", "dtype": "float32", "use_vllm": False, "vllm": {},
        "gradient_checkpointing": False, "report_to": "none", "save_steps": 0, "reward_workers": 0,
        "lora.r": 4, "lora.alpha": 8,
    }  # fmt: skip
    out = train_plan_grpo(load_recipe_yaml("grpo_restore_qwen3vl.yaml", overrides), train=rows, bins=bins)
    manifest = read_manifest(out)
    assert manifest["global_step"] == 1 and manifest["recipe"]["policy"] == "vlm"
    assert json.loads((out / META_FILE).read_text())["completion"] == "json"


def test_the_gpu_benchmark_runs_its_whole_path_on_cpu(tmp_path):
    """bench/grpo_gpu.py (the GPU recipe's check, run on a lent GPU): warm start, GRPO steps, table, JSON, curves."""
    import subprocess
    import sys

    pytest.importorskip("trl")
    pytest.importorskip("peft")
    script = Path(__file__).resolve().parents[1] / "bench" / "grpo_gpu.py"
    res = subprocess.run([sys.executable, str(script), "--device", "cpu", "--dtype", "float32", "--steps", "1",
                          "--warm-steps", "3", "--crops", "8", "--size", "96", "--workers", "0", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads((tmp_path / "grpo_gpu.json").read_text())
    assert out["summary"]["steps"] == 1 and out["warm_start"]["steps"] == 3
    assert (tmp_path / "grpo_gpu.png").stat().st_size > 0 and "steps/s" in (tmp_path / "grpo_gpu.txt").read_text()


def test_the_plan_bound_benchmark_fits_and_reports_each_split(tmp_path):
    """bench/plan_bound.py (how much a policy reading the diagnosis could learn): tables, fit, the last line."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "bench" / "plan_bound.py"
    args = ["--train", "40", "--eval-mixed", "6", "--eval-single", "4", "--size", "96", "--out", str(tmp_path)]
    res = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads((tmp_path / "plan_bound.json").read_text())
    assert set(report["splits"]) == {"tuning mixed", "held-out mixed", "held-out single"}
    held = report["splits"]["held-out mixed"]
    assert held["crops"] == 6 and held["ceiling_db"] >= 0 and held["changed"] <= 6 and report["changes"] > 0
    assert res.stdout.strip().splitlines()[-1].startswith("held-out mixed: policy ")
