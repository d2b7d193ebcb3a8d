"""The transformers Qwen3-VL reasoner on a tiny random-weight checkpoint: the real loading, chat-template, vision
and grammar-guided generation path, end to end, with no weights downloaded."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("xgrammar")

from reasoner import load_reasoner  # noqa: E402
from reasoner.imageio import from_array, save_image  # noqa: E402
from reasoner.schema import DiagnosisRecord  # noqa: E402
from reasoner.vlm_output import CompletionError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # varied sizes and aspect ratios so batches mix visual-token counts (left padding must cope)
    return [rng.random((48 + 16 * (i % 3), 64 + 8 * (i % 4), 3)).astype(np.float32) for i in range(n)]


def _one_line(err: BaseException) -> str:
    msg = str(err)
    assert msg and "\n" not in msg
    return msg


@pytest.fixture(scope="module")
def reasoner(tiny_vlm_dir):
    from reasoner.qwen3vl import Qwen3VLReasoner

    return Qwen3VLReasoner(str(tiny_vlm_dir), batch_size=3)


def test_tiny_checkpoint_is_a_qwen3vl_checkpoint(tiny_vlm_dir):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_vlm_dir)
    tok = AutoTokenizer.from_pretrained(tiny_vlm_dir)
    assert config.model_type == "qwen3_vl"
    # the model's special-token ids are the tokenizer's
    for attr, token in [
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ]:
        assert getattr(config, attr) == tok.convert_tokens_to_ids(token)
    assert config.text_config.vocab_size == len(tok)
    # like real checkpoints, the processor config names upstream's class, not ours
    assert json.loads((tiny_vlm_dir / "processor_config.json").read_text())["processor_class"] == "Qwen3VLProcessor"
    # the prompt stays short enough for quick tests: the BPE was learnt on it
    from prompts import load_prompt

    system, user = load_prompt("diagnose").render(width=64, height=64)
    assert len(tok(system + user).input_ids) < 1000


def test_tiny_checkpoint_is_seeded(tmp_path):
    from safetensors.numpy import load_file

    from reasoner.tiny_vlm import build_tiny_reasoner

    a, b, c = (build_tiny_reasoner(tmp_path / name, seed=s) for name, s in [("a", 0), ("b", 0), ("c", 1)])
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    key = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert np.array_equal(wa[key], wb[key]) and not np.array_equal(wa[key], wc[key])


def test_a_checkpoint_without_a_video_processor_loads_image_only_where_torchvision_is(tiny_vlm_dir, monkeypatch):
    # A GPU machine has torchvision: upstream's AutoProcessor then asks for the video processor config the locally
    # built checkpoint does not have ("Can't load video processor"); images and text must still load.
    import reasoner.hf_processor as hp

    monkeypatch.setattr(hp, "is_torchvision_available", lambda: True)
    assert isinstance(hp.load_processor(str(tiny_vlm_dir)), hp.Qwen3VLImageOnlyProcessor)
    with pytest.raises(OSError):  # any other failure to load still says so
        hp.load_processor(str(tiny_vlm_dir / "missing"))


def test_image_only_processor_loads_a_checkpoint_naming_qwen3vlprocessor(tiny_vlm_dir):
    from PIL import Image
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    from reasoner.hf_processor import Qwen3VLImageOnlyProcessor, load_processor

    if not is_torchvision_available():
        # why the image-only class exists: upstream's processor wants a video processor, which needs torchvision
        with pytest.raises(OSError, match="video processor"):
            AutoProcessor.from_pretrained(tiny_vlm_dir)
        proc = load_processor(str(tiny_vlm_dir))
        assert isinstance(proc, Qwen3VLImageOnlyProcessor)
    else:
        proc = load_processor(str(tiny_vlm_dir))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Diagnose."}]}]
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and "<|vision_start|><|image_pad|><|vision_end|>" in text
    batch = proc(text=[text], images=[Image.new("RGB", (96, 64))], return_tensors="pt")
    # 96x64 -> 3x2 merged tokens of 32x32 pixels, each an <|image_pad|> in the prompt
    assert batch["image_grid_thw"].tolist() == [[1, 4, 6]]
    assert int((batch["input_ids"] == proc.image_token_id).sum()) == 6
    # a checkpoint saved with the image-only class loads back through AutoProcessor once it is registered
    assert "Qwen3VLImageOnlyProcessor" in {c.__name__ for c in _registered_processors()}


def _registered_processors():
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

    return list(PROCESSOR_MAPPING._extra_content.values())


def test_diagnose_returns_a_valid_record(reasoner, tiny_vlm_dir):
    rec = reasoner.diagnose(_images(1)[0])
    assert isinstance(rec, DiagnosisRecord)
    assert DiagnosisRecord.model_validate_json(rec.model_dump_json()) == rec
    assert (rec.image.width, rec.image.height) == (64, 48)
    assert rec.reasoning and rec.thinking is None and rec.semantics.coarse is False
    prov = rec.provenance
    assert (prov.backend, prov.model_id) == ("qwen3vl", str(tiny_vlm_dir))
    assert prov.elapsed_s > 0
    s = prov.settings
    assert s["prompt"] == "diagnose/v1" and s["thinking"] is False and s["max_new_tokens"] == 1024
    assert s["device"] == "cpu" and s["dtype"] == "float32" and s["temperature"] == 0.0
    assert 0 < s["generated_tokens"] < 1024 and s["visual_tokens"] == 4  # 64x48 rounds to 64x64: 2x2 tokens
    assert "seed" not in s  # greedy decoding: nothing to seed


def test_sampled_replies_are_always_valid(tiny_vlm_dir):
    from reasoner.qwen3vl import Qwen3VLReasoner

    # 20 sampled replies (temperature 1 over a random model: the grammar alone keeps them valid)
    r = Qwen3VLReasoner(str(tiny_vlm_dir), temperature=1.0, seed=7, batch_size=5)
    records = r.diagnose_many(_images(20, seed=1))
    assert len(records) == 20 and all(isinstance(x, DiagnosisRecord) for x in records)
    assert all(x.provenance.settings["generated_tokens"] < r.max_new_tokens for x in records)
    # sampling explores the schema: several kinds, several step counts, objects, numbers off the bounds
    assert len({d.kind for x in records for d in x.degradations}) >= 6
    assert len({len(x.reasoning) for x in records}) >= 2
    assert any(0 < d.severity < 1 for x in records for d in x.degradations)
    # the seed makes sampled diagnoses reproducible
    again = Qwen3VLReasoner(str(tiny_vlm_dir), temperature=1.0, seed=7, batch_size=5).diagnose_many(_images(5, seed=1))
    assert [x.model_dump(exclude={"provenance"}) for x in again] == [
        x.model_dump(exclude={"provenance"}) for x in records[:5]
    ]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_weight_seeds_always_yield_valid_records(tmp_path, seed):
    from reasoner.qwen3vl import Qwen3VLReasoner
    from reasoner.tiny_vlm import build_tiny_reasoner

    path = build_tiny_reasoner(tmp_path / "m", seed=seed)
    records = Qwen3VLReasoner(str(path), batch_size=2).diagnose_many(_images(2, seed=seed))
    assert all(isinstance(x, DiagnosisRecord) for x in records)


def test_batched_equals_unbatched(reasoner):
    images = _images(3)
    batched = reasoner.diagnose_many(images)  # one generate call, left-padded prompts of different lengths
    single = [reasoner.diagnose(im) for im in images]
    assert len(batched) == 3
    for b, s in zip(batched, single, strict=True):
        assert b.image == s.image
        assert b.model_dump(exclude={"provenance"}) == s.model_dump(exclude={"provenance"})
        assert b.provenance.settings["generated_tokens"] == s.provenance.settings["generated_tokens"]


def test_accepts_paths_arrays_and_loaded_images(reasoner, tmp_path):
    img = _images(1)[0]
    path = save_image(tmp_path / "in.png", img)
    by_path, by_loaded = reasoner.diagnose_many([path, from_array(img, name="mem")])
    assert by_path.image.path == str(path) and by_loaded.image.path == "mem"
    assert by_path.image.width == by_loaded.image.width == 64


def test_pixel_bounds_set_the_visual_tokens(tiny_vlm_dir):
    from reasoner.qwen3vl import Qwen3VLReasoner

    big = np.zeros((256, 256, 3), np.float32)
    small = Qwen3VLReasoner(str(tiny_vlm_dir), max_pixels=64 * 64).diagnose(big)
    default = Qwen3VLReasoner(str(tiny_vlm_dir)).diagnose(big)
    # 64x64 -> 2x2 merged tokens; the checkpoint's own cap (128x128) -> 4x4
    assert small.provenance.settings["visual_tokens"] == 4
    assert default.provenance.settings["visual_tokens"] == 16


def test_thinking_variant_keeps_its_thinking(tiny_thinking_vlm_dir):
    from reasoner.qwen3vl import Qwen3VLReasoner

    # detected from the chat template, which opens <think> after the assistant header
    r = Qwen3VLReasoner(str(tiny_thinking_vlm_dir), max_thinking_tokens=12)
    assert r.thinking is True
    rec = r.diagnose(_images(1)[0])
    # greedy thinking on the tiny model runs to its budget; the reasoner closes </think> and decodes the JSON
    assert rec.thinking and "</think>" not in rec.thinking
    assert rec.provenance.settings["thinking_tokens"] == 12
    assert rec.provenance.settings["max_thinking_tokens"] == 12

    # sampled thinking mostly ends with </think> by itself, at different lengths in one batch
    r = Qwen3VLReasoner(str(tiny_thinking_vlm_dir), max_thinking_tokens=200, temperature=1.0, seed=0, batch_size=4)
    records = r.diagnose_many(_images(8, seed=2))
    used = [x.provenance.settings["thinking_tokens"] for x in records]
    assert any(n < 200 for n in used) and len(set(used)) > 1
    assert all(isinstance(x, DiagnosisRecord) for x in records)


def test_thinking_can_be_forced_on_or_off(tiny_vlm_dir, tiny_thinking_vlm_dir):
    from reasoner.qwen3vl import Qwen3VLReasoner

    on = Qwen3VLReasoner(str(tiny_vlm_dir), thinking=True, max_thinking_tokens=8).diagnose(_images(1)[0])
    assert on.thinking and on.provenance.settings["thinking"] is True
    off = Qwen3VLReasoner(str(tiny_thinking_vlm_dir), thinking=False).diagnose(_images(1)[0])
    assert off.thinking is None and "thinking_tokens" not in off.provenance.settings
    with pytest.raises(ValueError, match="thinking must be"):
        Qwen3VLReasoner(str(tiny_vlm_dir), thinking="yes")


def test_reply_cut_off_by_the_budget_is_a_one_line_error(tiny_vlm_dir, tmp_path):
    from reasoner.qwen3vl import Qwen3VLReasoner

    path = save_image(tmp_path / "cut.png", _images(1)[0])
    r = Qwen3VLReasoner(str(tiny_vlm_dir), max_new_tokens=10)
    with pytest.raises(CompletionError) as e:
        r.diagnose(path)
    msg = _one_line(e.value)
    assert str(path) in msg and "max_new_tokens=10" in msg and "raise max_new_tokens" in msg


def test_load_errors_are_one_line(tmp_path):
    from reasoner.qwen3vl import Qwen3VLReasoner

    # a folder that does not exist
    with pytest.raises(FileNotFoundError) as e:
        Qwen3VLReasoner(str(tmp_path / "missing"))
    assert "does not exist" in _one_line(e.value)
    # a folder that is not a checkpoint
    (tmp_path / "junk").mkdir()
    with pytest.raises(ValueError) as e:
        Qwen3VLReasoner(str(tmp_path / "junk"))
    assert "no config.json" in _one_line(e.value)
    # a folder whose config is not a model transformers knows
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"model_type": "no-such-model"}')
    with pytest.raises(ValueError) as e:
        Qwen3VLReasoner(str(tmp_path / "bad"))
    assert _one_line(e.value).startswith("cannot load Qwen3-VL model")


def test_missing_extra_names_the_install_command(monkeypatch):
    # xgrammar absent: importing the backend fails with the extra to install, through the registry too
    monkeypatch.setitem(sys.modules, "xgrammar", None)
    monkeypatch.delitem(sys.modules, "reasoner.qwen3vl", raising=False)
    with pytest.raises(ImportError) as e:
        load_reasoner("qwen3vl")
    msg = _one_line(e.value)
    assert "xgrammar" in msg and "pip install 'reason-restore[vlm]'" in msg


def test_load_reasoner_by_name(tiny_vlm_dir):
    from reasoner.qwen3vl import Qwen3VLReasoner

    r = load_reasoner("qwen3vl", model=str(tiny_vlm_dir))
    assert isinstance(r, Qwen3VLReasoner) and r.name == "qwen3vl"
    assert isinstance(r.diagnose(_images(1)[0]), DiagnosisRecord)


def test_dev_cli_builds_a_tiny_reasoner(tmp_path):
    from typer.testing import CliRunner

    from agent.cli.dev import dev_app

    res = CliRunner().invoke(dev_app, ["tiny-reasoner", str(tmp_path / "tiny"), "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(tmp_path / "tiny")
    assert (tmp_path / "tiny" / "model.safetensors").is_file()


@pytest.mark.slow
def test_bench_diagnose_runs_on_the_tiny_model(tiny_vlm_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_diagnose", ROOT / "bench" / "diagnose.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "diagnose.json"
    args = ["--reasoner", "qwen3vl", "--model", str(tiny_vlm_dir), "--per-kind", "1", "--mixed", "1", "--clean", "1"]
    assert bench.main([*args, "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["reasoner"] == "qwen3vl" and res["n_cases"] == {"clean": 1, "single": 8, "mixed": 1}
