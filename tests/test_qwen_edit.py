"""The qwen-image-edit restorer on tiny random-weight pipelines: the real diffusers call path, offline, on CPU."""

import importlib
import os
import sys
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

pytest.importorskip("diffusers")

from reasoner.common import working_size  # noqa: E402
from reasoner.measure import MeasureReasoner  # noqa: E402
from reasoner.schema import DiagnosisRecord  # noqa: E402
from restorer.base import ReferenceImage  # noqa: E402
from restorer.instructions import NEGATIVE_PROMPT, remove_line, render_instruction  # noqa: E402
from restorer.plan import Operation, Plan, plan_from_record  # noqa: E402
from restorer.qwen_edit import QwenEditRestorer, load_pipeline  # noqa: E402
from rl import degradations as D  # noqa: E402
from rl.photos import load_photo  # noqa: E402

SNAPSHOTS = Path(__file__).parent / "snapshots"
NOISE = Plan(operations=[Operation(kind="noise", severity=0.5, params={"sigma": 20.0, "model": "gaussian"})])


@pytest.fixture(scope="module")
def tiny_edit_dir(tmp_path_factory) -> Path:
    """A tiny Plus pipeline folder written by the `rnr dev tiny-restorer` command (the path users smoke-test)."""
    from typer.testing import CliRunner

    from agent.cli import app

    out = tmp_path_factory.mktemp("tiny-edit") / "plus"
    result = CliRunner().invoke(app, ["dev", "tiny-restorer", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(str(out))
    return out


@pytest.fixture(scope="module")
def restorer(tiny_edit_dir) -> QwenEditRestorer:
    return QwenEditRestorer(str(tiny_edit_dir), steps=2, resolution=64, color_fix=None, progress=False)


@pytest.fixture(scope="module")
def image_and_record() -> tuple[np.ndarray, DiagnosisRecord]:
    img = D.apply(load_photo("astronaut")[100:137, 200:253], [D.NoiseParams(sigma=20, seed=1)])  # 37x53
    return img, MeasureReasoner().diagnose(img)


def test_tiny_restorer_command_saves_a_loadable_pipeline(tiny_edit_dir, tmp_path):
    import json

    index = json.loads((tiny_edit_dir / "model_index.json").read_text())
    # upstream's processor class, as in real checkpoints: a custom class here could not be resolved on load
    assert index["_class_name"] == "QwenImageEditPlusPipeline" and index["processor"][1] == "Qwen2VLProcessor"
    pipe = load_pipeline(str(tiny_edit_dir))
    assert type(pipe).__name__ == "QwenImageEditPlusPipeline"
    from restorer.tiny_edit import build_tiny_restorer

    single = load_pipeline(str(build_tiny_restorer(tmp_path / "single", plus=False)))
    assert type(single).__name__ == "QwenImageEditPipeline"


def test_restore_runs_the_pipeline_and_keeps_odd_sizes(restorer, image_and_record):
    img, rec = image_and_record
    before = img.copy()
    result = restorer.restore(img, rec, [], NOISE)
    out, run = result.pixels, result.run
    assert out.shape == img.shape == (37, 53, 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0
    assert np.array_equal(img, before)  # the input is not modified
    assert run["input_size"] == [53, 37] and run["working_size"] == [80, 56]  # aspect kept on the 8-px grid
    assert run["pipeline"] == "QwenImageEditPlusPipeline" and run["template"] == "edit/v2"
    assert run["seed"] == 0 and run["steps"] == 2 and run["guidance"] == 4.0
    assert run["negative_prompt"] == NEGATIVE_PROMPT and "noise (std about 20 of 255)" in run["prompt"]
    assert run["reference_ids"] == []


@pytest.mark.parametrize(
    ("shape", "area", "grid", "expected"),
    [
        ((37, 53), 64 * 64, 8, (56, 80)),  # landscape odd size: aspect kept, both sides on the grid
        ((53, 37), 64 * 64, 8, (80, 56)),  # the same, portrait
        ((64, 64), 64 * 64, 8, (64, 64)),  # already on the grid: unchanged
        ((10, 400), 64 * 64, 8, (8, 408)),  # extreme aspect: the short side never rounds to 0
        ((768, 1024), 1024 * 1024, 16, (880, 1184)),  # the real model's ~1 MP on its 16-px grid
    ],
)
def test_working_size(shape, area, grid, expected):
    # The restorer sizes its calls with reasoner.common.working_size: (h, w) in, (h, w) out.
    assert working_size(*shape, area, grid) == expected


def _vae_size(area: int, height: int, width: int) -> tuple[int, int]:
    """(h, w) the Plus pipeline's VAE sees a ``height x width`` picture at for ``area`` (upstream's rule, >= 32 px)."""
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import calculate_dimensions

    w, h = calculate_dimensions(area, width / height)
    return max(h, 32), max(w, 32)


def test_concurrent_restores_at_different_working_sizes_each_get_their_own(tiny_edit_dir, image_and_record):
    # Two restorers with different working areas run in two threads, both inside their pipeline call at once (a
    # barrier in check_inputs, before the pictures are resized): each must resize for its own area, so the sizing
    # cannot live in anything the two calls share (diffusers' module constants).
    from concurrent.futures import ThreadPoolExecutor

    img, rec = image_and_record
    restorers = {
        res: QwenEditRestorer(str(tiny_edit_dir), steps=1, resolution=res, progress=False) for res in (64, 48)
    }
    barrier, seen = threading.Barrier(len(restorers), timeout=120), {res: [] for res in restorers}
    for res, r in restorers.items():

        def checked(*args, _check=r.pipe.check_inputs, **kwargs):
            barrier.wait()
            return _check(*args, **kwargs)

        def recorded(image, height, width, *args, _pre=r.pipe.image_processor.preprocess, _seen=seen[res], **kwargs):
            _seen.append((height, width))
            return _pre(image, height, width, *args, **kwargs)

        r.pipe.check_inputs, r.pipe.image_processor.preprocess = checked, recorded
    with ThreadPoolExecutor(len(restorers)) as pool:
        outs = list(pool.map(lambda r: r.restore(img, rec, [], NOISE), restorers.values()))
    assert seen == {res: [_vae_size(res * res, *img.shape[:2])] for res in restorers}
    assert _vae_size(64 * 64, *img.shape[:2]) != _vae_size(48 * 48, *img.shape[:2])  # the case tells them apart
    for res, out in zip(restorers, outs, strict=True):
        assert out.pixels.shape == img.shape and out.run["working_size"][::-1] == list(working_size(37, 53, res**2, 8))


@pytest.mark.parametrize("shape", [(37, 53), (61, 29), (40, 40), (6, 300)])  # (6, 300): a strip
def test_output_has_the_input_size(restorer, image_and_record, shape):
    _, rec = image_and_record
    img = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    assert restorer.restore(img, rec, [], NOISE).pixels.shape == (*shape, 3)


def test_references_condition_the_output(restorer, image_and_record):
    img, rec = image_and_record
    rng = np.random.default_rng(1)
    refs = [
        ReferenceImage(rng.random((48, 48, 3), dtype=np.float32), s, f"ref{i}") for i, s in enumerate((0.3, 0.9, 0.6))
    ]
    plain = restorer.restore(img, rec, [], NOISE).pixels
    again = restorer.restore(img, rec, [], NOISE).pixels
    result = restorer.restore(img, rec, refs, NOISE)
    with_refs = result.pixels
    assert np.array_equal(plain, again)  # same seed, same inputs: same output
    assert np.abs(with_refs - plain).max() > 1e-3  # the references reach the model
    assert result.run["reference_ids"] == ["ref1", "ref2"]  # top max_references=2 by score
    assert "Picture 2 and Picture 3 are clean reference photos" in result.run["prompt"]


def test_single_pipeline_ignores_references(tmp_path, image_and_record):
    from restorer.tiny_edit import build_tiny_restorer

    img, rec = image_and_record
    folder = build_tiny_restorer(tmp_path / "single", plus=False)
    r = QwenEditRestorer(str(folder), steps=1, guidance=1.0, resolution=48, progress=False)
    ref = ReferenceImage(np.full((32, 32, 3), 0.5, np.float32), 0.9, "r")
    out = r.restore(img, rec, [ref], NOISE)
    assert out.pixels.shape == img.shape
    assert out.run["pipeline"] == "QwenImageEditPipeline" and out.run["reference_ids"] == []
    assert out.run["negative_prompt"] == ""  # guidance 1: no classifier-free guidance, no negative prompt


def test_empty_plan_returns_a_copy_without_the_model(restorer, image_and_record):
    img, rec = image_and_record
    out = restorer.restore(img, rec, [], Plan())
    assert np.array_equal(out.pixels, img) and out.pixels is not img and out.run is None


def test_colour_fix_pulls_the_output_towards_the_input(tiny_edit_dir, image_and_record):
    img, rec = image_and_record
    fixed = QwenEditRestorer(str(tiny_edit_dir), steps=2, resolution=64, color_fix="wavelet", progress=False)
    out = fixed.restore(img, rec, [], NOISE)
    assert out.run["color_fix"] == "wavelet"
    assert abs(out.pixels.mean() - img.mean()) < 0.02
    dark = Plan(operations=[Operation(kind="low_light", severity=0.6, params={"exposure": 0.3, "gamma": 1.2})])
    # brightening is the task: no fix back to the dark input
    assert fixed.restore(img, rec, [], dark).run["color_fix"] is None


# --- instruction rendering ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        # level word from severity, factors from the record, no strength adverb at strength 1
        (Operation(kind="noise", severity=0.5, params={"sigma": 18.0, "model": "gaussian"}),
         "- Remove the moderate Gaussian noise (std about 18 of 255)."),
        # signal-dependent noise is named as such; a weak retry says "gently"
        (Operation(kind="noise", severity=0.1, strength=0.5, params={"sigma": 4.0, "model": "poisson_gaussian"}),
         "- Remove the slight sensor (signal-dependent) noise (std about 4 of 255), gently."),
        # a stronger retry says "thoroughly"
        (Operation(kind="jpeg", severity=0.8, strength=1.5, params={"quality": 12}),
         "- Remove the heavy JPEG blocking and ringing (quality about 12), thoroughly."),
        (Operation(kind="blur", severity=0.5, params={"sigma": 2.5, "kernel": "defocus"}),
         "- Sharpen the moderate defocus blur (about 2.5 px)."),
        (Operation(kind="motion_blur", severity=0.5, params={"length": 14.0, "angle": 30.0}),
         "- Remove the moderate motion blur (streaks of about 14 px at 30 degrees)."),
        (Operation(kind="haze", severity=0.5, params={"transmission": 0.6, "airlight": [0.9] * 3, "beta": 1.0}),
         "- Remove the moderate haze (transmission about 0.60) and restore distant contrast."),
        (Operation(kind="low_light", severity=0.8, params={"exposure": 0.25, "gamma": 1.4}),
         "- Brighten the heavy underexposure (exposure about 0.25) without clipping highlights."),
        (Operation(kind="rain", severity=0.5, params={"density": 0.2, "angle": 95.0}),
         "- Remove the moderate rain streaks (running at about 95 degrees)."),
        (Operation(kind="low_resolution", severity=0.5, params={"scale": 3.0}),
         "- Recover the fine detail lost to moderate downsampling (about 3.0x) without inventing any."),
    ],
)  # fmt: skip
def test_remove_lines(op, expected):
    assert remove_line(op) == expected


def _record(**semantics) -> DiagnosisRecord:
    img = D.apply(load_photo("astronaut")[:64, :64], [D.NoiseParams(sigma=25, seed=2)])
    rec = MeasureReasoner().diagnose(img)
    flags = {"faces": False, "text": False, "sky": False, "fine_texture": False, "objects": []} | semantics
    return rec.model_copy(update={"semantics": rec.semantics.model_copy(update=flags)})


@pytest.mark.parametrize(
    ("flags", "present", "absent"),
    [
        ({}, ["colours, white balance and framing"], ["face", "text", "sky"]),  # always: keep colour and framing
        ({"faces": True}, ["every face and its identity"], ["letters"]),
        ({"text": True}, ["do not invent or alter letters"], ["face"]),
        ({"sky": True, "fine_texture": True}, ["without banding", "(foliage, fabric, hair)"], ["face"]),
        ({"objects": ["person", "flag"]}, ["where and as they are: person, flag."], []),
    ],
)
def test_preserve_lines_follow_the_semantics(flags, present, absent):
    text = render_instruction(_record(**flags), NOISE).user
    assert all(p in text for p in present) and not any(a in text for a in absent)


def test_rendered_instruction_snapshot():
    # Pins the whole prompt a model sees; to accept an intended change rerun with RNR_UPDATE_SNAPSHOTS=1.
    rec = _record(faces=True, text=True, objects=["person", "flag"], description="An astronaut in front of a flag.")
    plan = Plan(
        operations=[
            Operation(kind="jpeg", severity=0.45, params={"quality": 30}),
            Operation(kind="noise", severity=0.62, strength=0.6, params={"sigma": 22.0, "model": "poisson_gaussian"}),
        ]
    )
    p = render_instruction(rec, plan, [0.83, 0.61])
    text = f"# {p.template}\n## prompt\n{p.text}\n## negative\n{p.negative}\n"
    snap = SNAPSHOTS / "edit_instruction_v2.txt"
    if os.environ.get("RNR_UPDATE_SNAPSHOTS"):
        snap.write_text(text)
    assert snap.read_text() == text


def test_plan_from_record_renders():
    rec = _record()
    p = render_instruction(rec, plan_from_record(rec))
    assert p.template == "edit/v2" and "noise" in p.user and p.text.startswith(p.system)
    assert "Nothing needs removing" in render_instruction(rec, Plan()).user


# --- through the agent graph -------------------------------------------------------------------------------------


class TinyQwenEdit(QwenEditRestorer):
    """The restorer on the tiny folder, constructible without arguments as `make_context` does."""

    folder: ClassVar[str] = ""

    def __init__(self):
        super().__init__(self.folder, steps=2, resolution=64, progress=False)


def test_agent_graph_end_to_end_rolls_back_garbage(tiny_edit_dir):
    from agent.run import make_context, restore_image

    TinyQwenEdit.folder = str(tiny_edit_dir)
    ctx = make_context(restorer=f"{__name__}:TinyQwenEdit")
    img = D.apply(load_photo("astronaut")[96:160, 128:192], [D.NoiseParams(sigma=25, seed=1)])
    out, trace = restore_image(img, context=ctx)
    assert trace.attempts and all(a.verdict != "better" for a in trace.attempts)
    # random weights produce garbage: never returned, the input comes back
    assert trace.decision == "unchanged" and trace.chosen_attempt is None
    assert np.abs(out - img).max() < 1 / 255 + 1e-6  # the input (through an 8-bit PNG round trip)
    runs = [a.restorer_run for a in trace.attempts]
    assert all(r and r["pipeline"] == "QwenImageEditPlusPipeline" and r["seed"] == 0 for r in runs)
    type(trace).model_validate_json(trace.model_dump_json())  # the trace validates against its schema


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    monkeypatch.delitem(sys.modules, "restorer.qwen_edit")
    with pytest.raises(ImportError, match=r"pip install 'reason-restore\[diffusion\]'"):
        importlib.import_module("restorer.qwen_edit")
