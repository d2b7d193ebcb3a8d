"""SFT data (rl/synth.py) and training (rl/sft.py, `rnr synth`, `rnr train sft`) on a tiny local Qwen3-VL."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from prompts import load_prompt
from reasoner.schema import KINDS, DiagnosisRecord
from reasoner.vlm_output import parse_completion
from rl.synth import COLUMNS, load_dataset, make_sample, write_dataset

pytest.importorskip("datasets")

SMALL = dict(seed=3, size=(96, 128), clean_fraction=0.34)
RECIPE = Path(__file__).parents[1] / "rl" / "recipes" / "sft.yaml"


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("sft") / "data", 6, **SMALL)


def _stable(record_json: str) -> dict:
    d = json.loads(record_json)
    del d["provenance"]["created_at"]  # wall-clock time of writing
    return d


def test_synth_rows_parse_validate_and_agree(synth_dir):
    ds = load_dataset(synth_dir)
    assert ds.column_names == list(COLUMNS) and len(ds) == 6
    assert any(not k for k in ds["kinds"]) and any(len(k) > 1 for k in ds["kinds"])  # clean and multi-kind rows
    for row in ds:
        record = DiagnosisRecord.model_validate_json(row["record"])
        thinking, completion = parse_completion(row["target"])
        assert thinking is None and row["prompt_id"] == load_prompt("diagnose").id
        # The image is what the record describes, byte for byte (lossless PNG of the 8-bit pixels).
        pixels = np.asarray(row["image"].convert("RGB"))
        assert pixels.shape == (row["height"], row["width"], 3) == (record.image.height, record.image.width, 3)
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == record.image.sha256
        # Degradations in the target are the ground truth (floats rounded to 4 significant digits).
        truth = {d.kind: d for d in record.degradations}
        said = {k: getattr(completion.degradations, k) for k in KINDS if getattr(completion.degradations, k)}
        assert set(said) == set(truth) == set(row["kinds"])
        for kind, est in said.items():
            assert est.severity == pytest.approx(truth[kind].severity, rel=1e-3, abs=1e-4)
            assert est.confidence == 1.0
        assert record.provenance.settings["seed"] == row["seed"]
        # The chain of thought: measured statistics per true kind with the true verdict, then a conclusion.
        steps = completion.reasoning
        for step, kind in zip(steps, record.degradations, strict=False):
            assert step.kinds == [kind.kind] and f"severity {kind.severity:.2f}" in step.inference
            assert any(c.isdigit() for c in step.observation)
        assert steps[-1].observation.startswith("Detected:")
        assert completion.semantics.description and not completion.semantics.description.startswith("Synthetic")


def test_synth_is_deterministic_per_seed_and_index(synth_dir, tmp_path):
    ds = load_dataset(synth_dir)
    again = make_sample(4, **SMALL)
    assert again["target"] == ds[4]["target"] and again["seed"] == ds[4]["seed"]
    assert _stable(again["record"]) == _stable(ds[4]["record"])
    # A shorter set drawn by two workers is a prefix of the longer one.
    short = load_dataset(write_dataset(tmp_path / "short", 3, workers=2, **SMALL))
    assert short["target"] == ds["target"][:3] and short["seed"] == ds["seed"][:3]
    assert make_sample(4, **{**SMALL, "seed": 4})["target"] != ds[4]["target"]


def test_synth_refuses_to_overwrite(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        write_dataset(out, 1, **SMALL)
    assert (out / "keep.txt").read_text() == "mine"
    write_dataset(out, 1, overwrite=True, **SMALL)
    assert not (out / "keep.txt").exists() and len(load_dataset(out)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary folders left behind


def test_synth_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown bundled photo"):
        write_dataset(tmp_path / "a", 1, photos=("nope",))
    with pytest.raises(ValueError, match="n must be"):
        write_dataset(tmp_path / "b", 0)
    with pytest.raises(ValueError, match="unknown kinds"):
        write_dataset(tmp_path / "c", 1, kinds=["fog"])
    with pytest.raises(FileNotFoundError, match="rnr synth"):
        load_dataset(tmp_path)


def test_recipe_loading_and_overrides(tmp_path):
    from rl.recipe import RecipeError, SFTRecipe

    base = {"model": "m", "dataset": "d", "output_dir": "o"}
    cfg = SFTRecipe.load(base, ["max_steps=5", "lora.r=4", "learning_rate=2e-4", "trainer.save_steps=10"])
    assert cfg.max_steps == 5 and cfg.learning_rate == 2e-4 and cfg.trainer == {"save_steps": 10}
    assert cfg.lora.r == 4 and cfg.lora.alpha == 32  # unspecified LoRA fields take their defaults
    assert SFTRecipe.load(base).seed == SFTRecipe.defaults()["seed"]
    assert SFTRecipe.load(base, ["dtype=bf16"]).dtype == "bfloat16"  # reasoner.common's dtype names
    # The committed recipe documents and sets only known fields.
    assert SFTRecipe.load(RECIPE).lora.r == 16
    cases = [
        ({**base, "max_step": 3}, None, "unknown recipe field"),  # typo
        ({"model": "m"}, None, "needs"),  # dataset and output_dir missing
        (base, ["max_steps"], "KEY=VALUE"),  # override without a value
        ({**base, "lora": {"rank": 4}}, None, "unknown lora field"),
        ({**base, "device": "tpu"}, None, "device"),
        ({**base, "dtype": "int8"}, None, "unknown dtype"),
        ({**base, "per_device_train_batch_size": 0}, None, "per_device_train_batch_size"),
    ]
    for config, overrides, message in cases:
        with pytest.raises(RecipeError, match=message) as caught:
            SFTRecipe.load(config, overrides)
        assert "\n" not in str(caught.value)  # one line
    with pytest.raises(RecipeError, match="does not exist"):
        SFTRecipe.load(tmp_path / "missing.yaml")


def test_cli_prints_the_effective_recipe():
    import yaml

    from rl.recipe import SFTRecipe

    sets = ["--set", "model=m", "--set", "lora.r=8"]
    res = CliRunner().invoke(_cli(), ["train", "sft", "--config", str(RECIPE), "--print-recipe", *sets])
    assert res.exit_code == 0, res.output
    printed = yaml.safe_load(res.stdout)
    assert printed["model"] == "m" and printed["lora"]["r"] == 8 and printed == SFTRecipe.load(printed).model_dump()
    res = CliRunner().invoke(_cli(), ["train", "sft", "--config", str(RECIPE), "--print-recipe", "--json", *sets])
    assert json.loads(res.stdout)["lora"]["r"] == 8
    args = ["train", "sft", "--config", str(RECIPE), "--print-recipe", "--set", "max_step=1"]
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code == 2 and "unknown recipe field" in res.output


def _cli():
    from agent.cli.train import synth, train_app

    app = typer.Typer()
    app.command("synth")(synth)
    app.add_typer(train_app)
    return app


def test_cli_synth_json(tmp_path):
    out = tmp_path / "data"
    res = CliRunner().invoke(_cli(), ["synth", "--n", "2", "--out", str(out), "--size", "64x96", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["samples"] == 2 and summary["dataset"] == str(out) and set(summary["kinds"]) == set(KINDS)
    res = CliRunner().invoke(_cli(), ["synth", "--n", "2", "--out", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = CliRunner().invoke(_cli(), ["synth", "--n", "2", "--out", str(tmp_path / "x"), "--kind", "fog"])
    assert res.exit_code == 2 and "unknown kind" in res.output


def test_sft_round_trip_on_tiny_model(tiny_vlm_dir, synth_dir, tmp_path):
    """Two CPU steps through `rnr train sft --json`; the output loads as a reasoner and diagnoses an image."""
    pytest.importorskip("trl")
    import torch
    from safetensors.torch import load_file

    from reasoner.qwen3vl import Qwen3VLReasoner
    from rl.sft import train_sft
    from rl.training import read_manifest

    torch.set_num_threads(1)
    out = tmp_path / "full"
    tiny = Path(tiny_vlm_dir)
    args = ["train", "sft", "--config", str(RECIPE), "--json"]
    for item in (f"model={tiny}", f"dataset={synth_dir}", f"output_dir={out}", "lora=null", "max_steps=2",
                 "gradient_accumulation_steps=1", "per_device_train_batch_size=2", "logging_steps=1"):  # fmt: skip
        args += ["--set", item]
    res = CliRunner().invoke(_cli(), args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["global_step"] == 2 and summary["output_dir"] == str(out)
    manifest = read_manifest(out)
    losses = [h["loss"] for h in manifest["log_history"] if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
    assert manifest["step_time_s"] > 0 and manifest["recipe"]["lora"] is None

    reasoner = Qwen3VLReasoner(model=str(out), max_new_tokens=600)
    row = load_dataset(synth_dir)[0]
    record = reasoner.diagnose(np.asarray(row["image"].convert("RGB")))
    assert DiagnosisRecord.model_validate(record.model_dump()) == record
    assert record.provenance.model_id == str(out) and record.image.width == row["width"]

    # LoRA: the adapter is merged, so the output has exactly the base checkpoint's tensors, some of them changed.
    recipe = {"model": str(tiny), "dataset": str(synth_dir), "output_dir": str(tmp_path / "lora")}
    lora_out = train_sft(
        {**recipe, "max_steps": 2, "warmup_steps": 0, "learning_rate": 1e-2, "gradient_accumulation_steps": 1},
        ["lora={r: 2, alpha: 4}"],
    )
    assert lora_out == tmp_path / "lora"
    base, tuned = load_file(tiny / "model.safetensors"), load_file(lora_out / "model.safetensors")
    assert base.keys() == tuned.keys()
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all("language_model" in k and "proj" in k for k in changed)
    with pytest.raises(FileExistsError, match="not empty"):
        train_sft(recipe)
