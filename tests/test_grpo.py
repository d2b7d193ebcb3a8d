"""GRPO training (rl/grpo.py, `rnr train grpo`) on a tiny local Qwen3-VL with the real restorer and scorer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from reasoner.schema import DiagnosisRecord
from reasoner.vlm_output import completion_json, from_record
from rl import rewards as rewards_mod
from rl.recipe import GRPORecipe, RecipeError
from rl.synth import clean_crop, load_dataset, prompt_dataset, write_dataset

pytest.importorskip("trl")
pytest.importorskip("datasets")

from rl.grpo import dry_run  # noqa: E402

RECIPE = Path(__file__).parents[1] / "rl" / "recipes" / "grpo.yaml"
BASE = {"model": "m", "dataset": "d", "output_dir": "o"}


@pytest.fixture(scope="module")
def grpo_data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("grpo") / "data", 4, seed=5, size=(64, 96), clean_fraction=0.25)


def load_config(config, overrides=None) -> GRPORecipe:
    return GRPORecipe.load(config, overrides)


def test_recipe_parsing_and_overrides():
    cfg = load_config(RECIPE, ["model=x", "rewards.fidelity=1.0", "vllm.mode=server", "num_generations=2"])
    assert cfg.model == "x" and cfg.rewards["fidelity"] == 1.0 and cfg.rewards["format"] == 0.2
    assert cfg.vllm == {"mode": "server"} and cfg.lora.r == 16 and cfg.scorer == "measure"
    assert load_config(BASE).model_dump(exclude=set(BASE)) == {
        k: v for k, v in GRPORecipe.defaults().items() if k not in BASE
    }
    # The committed recipe sets only known fields, and the printed effective recipe loads back as it is.
    import yaml

    assert GRPORecipe.load(yaml.safe_load(cfg.to_yaml())) == cfg
    cases = [
        ({**BASE, "num_generation": 4}, None, "unknown recipe field"),
        ({"model": "m"}, None, "needs"),
        (BASE, ["rewards.speed=1"], "unknown reward"),
        (BASE, ["per_device_train_batch_size=3", "num_generations=2"], "divisible"),
        (BASE, ["vllm.port=1"], "unknown vllm field"),
        (BASE, ["lora={rank: 2}"], "unknown lora field"),
        (BASE, ["max_steps"], "KEY=VALUE"),
        (BASE, ["dtype=fp8"], "unknown dtype"),  # reasoner.common's dtype names
        (BASE, ["temperature=0"], "temperature"),  # a bound, named
    ]
    for config, overrides, message in cases:
        with pytest.raises(RecipeError, match=message):
            load_config(config, overrides)


def test_settings_pass_recipe_through():
    import torch

    from rl.grpo import grpo_settings

    cfg = load_config(
        BASE, ["use_vllm=true", "vllm={mode: colocate, gpu_memory_utilization: 0.4}", "gradient_checkpointing=true"]
    )
    s = grpo_settings(cfg, Path("o"), use_cpu=True, dtype=torch.float32)
    assert s["use_vllm"] and s["vllm_mode"] == "colocate" and s["vllm_gpu_memory_utilization"] == 0.4
    assert s["reward_weights"] == [0.2, 1.0, 0.5, 0.5] and s["remove_unused_columns"] is False
    assert s["use_cpu"] and not s["bf16"] and s.get("activation_checkpointing", s.get("gradient_checkpointing"))


def test_clean_crops_are_regenerated_exactly(tmp_path):
    """On clean samples the image is the clean crop, so the regenerated crop must equal it byte for byte."""
    path = write_dataset(tmp_path / "clean", 3, seed=2, size=(48, 64), clean_fraction=1.0)
    ds = prompt_dataset(path, None)
    for i in range(3):
        row = ds[i]
        assert np.array_equal(np.asarray(row["clean"]), np.asarray(row["image"].convert("RGB")))
        assert row["prompt"][0]["role"] == "system" and "64x48" in row["prompt"][1]["content"]
    raw = load_dataset(path)[0]
    generator = json.loads(load_dataset(path).info.description)
    assert clean_crop(generator, 0, raw["photo"], raw["seed"] + 1) is None  # a mismatched row is not guessed


class _Teach:
    """Replace every other completion by the ground truth, so the tiny random policy's batch carries valid plans.

    The real reward then runs on it (real restorer, scorer and TRL column passing); only the text is substituted.
    """

    def __call__(self, prompts, completions, **kwargs):
        truth = [DiagnosisRecord.model_validate_json(r) for r in kwargs["record"]]
        said = [
            [{"role": "assistant", "content": completion_json(from_record(t))}] if i % 2 == 0 else c
            for i, (c, t) in enumerate(zip(completions, truth, strict=True))
        ]
        return super().__call__(prompts, said, **kwargs)


class TeachFormat(_Teach, rewards_mod.FormatReward):
    pass


class TeachSeverity(_Teach, rewards_mod.SeverityReduction):
    pass


class TeachFidelity(_Teach, rewards_mod.Fidelity):
    pass


class TeachAccuracy(_Teach, rewards_mod.DiagnosisAccuracy):
    pass


def _cli():
    from agent.cli.train import train_app

    app = typer.Typer()
    app.add_typer(train_app)
    return app


def test_grpo_tiny_run_logs_rewards_and_reloads(tiny_vlm_dir, grpo_data, tmp_path, monkeypatch):
    """Three CPU steps through `rnr train grpo --json`, checkpoint + resume, output loads as a reasoner."""
    import torch

    from reasoner.qwen3vl import Qwen3VLReasoner
    from rl.training import read_manifest

    torch.set_num_threads(1)
    for name, cls in [("format", TeachFormat), ("severity_reduction", TeachSeverity),
                      ("fidelity", TeachFidelity), ("diagnosis_accuracy", TeachAccuracy)]:  # fmt: skip
        monkeypatch.setitem(rewards_mod.REWARDS, name, cls)
    out = tmp_path / "run"
    sets = [f"model={tiny_vlm_dir}", f"dataset={grpo_data}", f"output_dir={out}", "lora=null", "max_steps=2",
            "per_device_train_batch_size=4", "num_generations=4", "max_completion_length=24", "report_to=none",
            "save_steps=1", "learning_rate=1e-3", "reward_workers=1"]  # fmt: skip
    args = ["train", "grpo", "--config", str(RECIPE), "--json"] + [a for s in sets for a in ("--set", s)]
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["global_step"] == 2 and summary["output_dir"] == str(out)
    means = summary["final_reward_means"]
    assert set(means) == {f"rewards/{n}/mean" for n in rewards_mod.REWARDS}
    assert all(v is not None for v in means.values()), means  # every component was computed
    assert 0.5 <= means["rewards/format/mean"] <= 1.0 and summary["kl"] is not None
    manifest = read_manifest(out)
    weights = {"format": 0.2, "severity_reduction": 1.0, "fidelity": 0.5, "diagnosis_accuracy": 0.5}
    assert manifest["rewards"] == weights
    assert manifest["step_time_s"] > 0 and (out / "trainer" / "checkpoint-2").is_dir()
    assert list((out / "trainer" / "completions").glob("*.parquet"))  # completion samples per logged step

    # Resume from the last checkpoint for one more step.
    resumed = CliRunner().invoke(_cli(), args[:-2] + ["--set", "max_steps=3", "--set", "resume_from_checkpoint=true"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["global_step"] == 3

    reasoner = Qwen3VLReasoner(model=str(out), max_new_tokens=600)
    row = load_dataset(grpo_data)[0]
    record = reasoner.diagnose(np.asarray(row["image"].convert("RGB")))
    assert record.provenance.model_id == str(out) and record.image.width == row["width"]


def test_dry_run_scores_untrained_generations(tiny_vlm_dir, grpo_data):
    import torch

    torch.set_num_threads(1)
    report = dry_run(
        RECIPE,
        [
            f"model={tiny_vlm_dir}",
            f"dataset={grpo_data}",
            "output_dir=unused",
            "num_generations=2",
            "max_completion_length=12",
            "reward_workers=0",
        ],  # fmt: skip
        samples=2,
    )
    assert report["samples"] == 2 and len(report["rows"]) == 4
    table = report["rewards"]
    # A random policy writes no valid JSON: format scores 0, the other rewards refuse to make up a score.
    assert table["format"]["mean"] == 0.0 and table["format"]["none"] == 0
    assert all(table[n]["none"] == 4 and table[n]["mean"] is None for n in ("severity_reduction", "fidelity"))


# ------------------------------------------------------------------------------------------ light text policy


@pytest.fixture(scope="module")
def tiny_text_dir(tmp_path_factory):
    from rl.tiny_text import build_tiny_text_policy

    return build_tiny_text_policy(tmp_path_factory.mktemp("tiny_text") / "model")


def test_compact_completions_expand_into_valid_records():
    from rl.text_policy import compact_target, expand_compact, parse_compact, render_stats

    stats = {"lum_p995": 0.5, "noise_sigma_mid": 3.0}
    assert parse_compact("noise 0.35, jpeg 0.5") == [("noise", 0.35), ("jpeg", 0.5)]
    for bad in ("noise", "noise 0.3, noise 0.2", "fog 0.2", "noise 1.5", "", "{}"):
        assert parse_compact(bad) is None and expand_compact(bad, stats) == bad
    img = np.full((32, 32, 3), 0.5, np.float32)
    for text in ("clean", "noise 0.35, jpeg 0.50, low_light 0.4, haze 0.2, rain 0.1, blur 0.3"):
        rec = rewards_mod.parse_record(expand_compact(text, stats), img)
        assert rec is not None and compact_target(rec) == (text if text == "clean" else compact_target(rec))
        assert sorted(d.kind for d in rec.detected()) == sorted(k for k, _ in parse_compact(text))
    assert render_stats(stats).splitlines() == ["Measured statistics:", "lum_p995 0.5", "noise_sigma_mid 3"]
    with pytest.raises(ValueError, match="unknown statistic"):
        render_stats(stats, ["speed"])
    assert load_config({**BASE, "policy": "text", "completion": "compact"}).policy == "text"
    for bad in ({"policy": "audio"}, {"completion": "compact"}, {"policy": "text", "text_stats": "edge_width"}):
        with pytest.raises(RecipeError):
            load_config({**BASE, **bad})


def test_stats_prompt_with_binned_statistics(grpo_data):
    """text_prompt: stats shows only the statistics (binned when text_bins names them) and the reply format."""
    from rl.text_policy import COMPACT_HINT, STATS_SYSTEM, stat_bins, text_prompt_dataset

    names = ["noise_sigma_mid", "edge_width"]
    full = text_prompt_dataset(grpo_data, None, names, "compact")
    bins = stat_bins([json.loads(s) for s in full["stats"]], names, n=2)
    assert all(len(v) == 1 for v in bins.values())  # 2 bins: one edge, the median of the 4 rows
    short = text_prompt_dataset(grpo_data, None, names, "compact", "stats", bins)
    for i in range(len(short)):
        system, user = short[i]["prompt"][0]["content"], short[i]["prompt"][1]["content"]
        stats = json.loads(short[i]["stats"])
        assert system == STATS_SYSTEM and user.endswith(COMPACT_HINT)
        lines = user.split("\n\n")[0].splitlines()
        assert lines[0] == "Measured statistics (bins):"
        # each value is its bin: 1 above the edge, 0 at or below it
        assert lines[1:] == [f"{k} {int(stats[k] > bins[k][0])}" for k in names]
        assert short[i]["target"] == full[i]["target"] and len(user) < len(full[i]["prompt"][1]["content"])
    cases = [
        ({"text_prompt": "stats"}, "completion compact"),  # json completions need the diagnose prompt's schema
        ({"text_prompt": "short", "completion": "compact"}, "text_prompt"),
        ({"text_bins": {"edge_width": [3.0, 1.0]}}, "ascending"),  # edges out of order
        ({"text_bins": [1.0, 2.0]}, "text_bins"),  # not a mapping
    ]
    for extra, message in cases:
        with pytest.raises(RecipeError, match=message):
            load_config({**BASE, "policy": "text", **extra})
    with pytest.raises(ValueError, match="stats with compact"):
        text_prompt_dataset(grpo_data, None, names, "json", "stats")


def _tiny_text_recipe(model, data, tmp_path, **over) -> dict:
    """Two GRPO steps of the tiny text policy on the tiny set, rewards in the trainer process, no checkpoints."""
    return {"policy": "text", "completion": "compact", "model": str(model), "dataset": str(data),
            "output_dir": str(tmp_path / "run"), "lora": None, "max_steps": 2, "per_device_train_batch_size": 4,
            "num_generations": 4, "save_steps": 0, "reward_workers": 0, **over}  # fmt: skip


def test_text_policy_grpo_two_steps(tiny_text_dir, grpo_data, tmp_path):
    """The light policy: a tiny causal LM reading measured statistics, two real GRPO steps, truth-taught rewards."""
    import pickle

    import torch
    from transformers import AutoModelForCausalLM

    from rl.grpo import policy_rewards, reward_engine, train_grpo
    from rl.text_policy import TextReward, text_prompt_dataset
    from rl.training import read_manifest

    torch.set_num_threads(1)
    ds = text_prompt_dataset(grpo_data, None, ["noise_sigma_mid", "edge_width"], "compact")
    assert "image" not in ds.column_names and ds[0]["prompt"][1]["content"].count("\n") > 3
    cfg = load_config({**BASE, "policy": "text", "completion": "compact", "reward_workers": 0})
    fns, _ = policy_rewards(cfg, reward_engine(cfg))
    assert all(isinstance(f, TextReward) for f in fns)
    assert pickle.loads(pickle.dumps(fns[1])).__name__ == fns[1].__name__ == "severity_reduction"
    row = ds[0]
    cols = {k: [row[k]] * 2 for k in ("pixels", "record", "clean", "stats")}
    truth = fns[3](prompts=[None] * 2, completions=[row["target"], "nonsense"], **cols)
    assert truth[0] == pytest.approx(1.0, abs=0.01) and truth[1] is None  # severities are written to 2 decimals
    assert fns[0](prompts=[None] * 2, completions=["clean", "x"], **cols) == [1.0, 0.0]

    out = train_grpo(
        _tiny_text_recipe(
            tiny_text_dir,
            grpo_data,
            tmp_path,
            max_completion_length=12,
            report_to="none",
            learning_rate=1e-3,
            text_stats=["noise_sigma_mid", "edge_width", "jpeg_blockiness", "lum_mean"],
        )  # fmt: skip
    )
    manifest = read_manifest(out)
    assert manifest["global_step"] == 2 and manifest["recipe"]["policy"] == "text"
    means = [h for h in manifest["log_history"] if "reward" in h][-1]
    assert means["rewards/format/mean"] == 0.0  # an untrained policy writes no valid pairs, and is scored so
    assert AutoModelForCausalLM.from_pretrained(out) is not None and (out / "tokenizer.json").is_file()


def test_tensorboard_gets_completion_samples_with_images(tiny_text_dir, grpo_data, tmp_path):
    """report_to tensorboard: the run's events hold image and text samples next to the reward scalars."""
    pytest.importorskip("tensorboard")
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rl.grpo import train_grpo
    from rl.tb_samples import side_by_side

    torch.set_num_threads(1)
    out = train_grpo(
        _tiny_text_recipe(
            tiny_text_dir,
            grpo_data,
            tmp_path,
            text_stats=["noise_sigma_mid", "edge_width"],
            max_completion_length=8,
            report_to="tensorboard",
            log_samples=2,
            log_samples_every=1,
        )  # fmt: skip
    )
    events = sorted((out / "trainer").rglob("events.out.tfevents*"))
    assert events, "no TensorBoard events file written"
    acc = EventAccumulator(str(events[0].parent), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"samples/0", "samples/1"} <= set(tags["images"]) and "train/reward" in tags["scalars"]
    assert {"samples/0/text_summary", "samples/1/text_summary"} <= set(tags["tensors"])
    images = acc.Images("samples/0")
    assert [e.step for e in images] == [1, 2] and images[0].width == 2 * 96 + 4 and images[0].height == 64
    text = acc.Tensors("samples/0/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "completion" in text and "format" in text  # the completion and its per-reward values
    # An unparsed completion (the untrained policy's) is shown against a grey panel, a restored one as is.
    a, b = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 9, np.uint8)
    assert (side_by_side(a, None, gap=1)[:, 3:] == 128).all() and (side_by_side(a, b, gap=1)[:, 3:] == 9).all()


# ------------------------------------------------------------------------------------------------- rl's layout


def _rl_imports() -> dict[str, set[tuple[str, str]]]:
    """rl module -> {(imported rl module, imported name or "")}, function-level imports included."""
    import ast

    root = Path(__file__).parents[1]
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted((root / "rl").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        edges = found.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rl":
                edges.update((node.module, a.name) for a in node.names)
            elif isinstance(node, ast.Import):
                edges.update((a.name, "") for a in node.names if a.name.split(".")[0] == "rl")
    return found


def test_rl_has_no_import_cycles_or_private_cross_imports():
    graph = _rl_imports()
    private = sorted(
        f"{m} imports {target}.{name}"
        for m, edges in graph.items()
        for target, name in edges
        # private names only between the modules of one subpackage (rl.degradations), never between rl's modules
        if name.startswith("_") and not (target.rsplit(".", 1)[0] == m.rsplit(".", 1)[0] != "rl")
    )
    assert not private, private
    deps = {m: {t for t, _ in edges if t in graph and t != m} for m, edges in graph.items()}
    # a package's __init__ re-exports its modules, which import each other: package-internal edges are no cycle
    deps = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in deps.items()}

    def reach(start: str) -> set[str]:
        seen, todo = set(), list(deps[start])
        while todo:
            t = todo.pop()
            if t not in seen:
                seen.add(t)
                todo.extend(deps.get(t, ()))
        return seen

    cycles = sorted(m for m in deps if m in reach(m))
    assert not cycles, cycles
