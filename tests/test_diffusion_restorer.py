"""The generic ``diffusion`` restorer on a tiny img2img pipeline: strength map, sizes, reference attention, agent."""

import importlib
import sys

import numpy as np
import pytest

pytest.importorskip("diffusers")

from agent.run import make_context, restore_image  # noqa: E402
from agent.trace import Trace  # noqa: E402
from reasoner.common import working_size  # noqa: E402
from reasoner.imageio import from_array  # noqa: E402
from reasoner.measure import MeasureReasoner  # noqa: E402
from restorer.base import ReferenceImage  # noqa: E402
from restorer.diffusion import DiffusionRestorer, strength_for  # noqa: E402
from restorer.plan import Plan, plan_from_record  # noqa: E402
from restorer.ref_attention import ReferenceAttention, encode_reference  # noqa: E402
from restorer.tiny_img2img import build_tiny_img2img  # noqa: E402
from rl import degradations as D  # noqa: E402
from rl.photos import load_photo  # noqa: E402


class TinyDiffusionRestorer(DiffusionRestorer):
    """The diffusion restorer on the tiny pipeline, constructible without arguments (as ``make_context`` does)."""

    model_dir = None  # set by the ``tiny_dir`` fixture

    def __init__(self, **kwargs):
        super().__init__(self.model_dir, **({"steps": 4, "progress": False} | kwargs))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-img2img") / "sd"
    build_tiny_img2img(path, seed=0)
    TinyDiffusionRestorer.model_dir = path
    return path


@pytest.fixture(scope="module")
def rst(tiny_dir):
    return TinyDiffusionRestorer()


@pytest.fixture(scope="module")
def noisy():
    return D.apply(load_photo("astronaut")[96:160, 128:176], [D.NoiseParams(sigma=25, seed=1)])


@pytest.fixture(scope="module")
def diagnosed(noisy):
    record = MeasureReasoner().diagnose(from_array(noisy))
    return record, plan_from_record(record)


@pytest.fixture(scope="module")
def reference():
    return ReferenceImage(load_photo("coffee")[:80, :80], 0.9, "coffee-0")


def test_real_call_path_and_output_contract(rst, noisy, diagnosed):
    record, plan = diagnosed
    before = noisy.copy()
    result = rst.restore(noisy, record, [], plan)
    out, run = result.pixels, result.run
    assert out.shape == noisy.shape and out.dtype == np.float32 and 0.0 <= out.min() <= out.max() <= 1.0
    assert np.array_equal(noisy, before)  # input untouched
    assert run["pipeline"] == "StableDiffusionImg2ImgPipeline" and run["seed"] == 0 and run["steps"] == 4
    assert plan.instruction in run["prompt"] and record.semantics.description.rstrip(".") in run["prompt"]
    assert run["reference_ids"] == [] and run["resolution"] == "56x72"  # 48x64 input at ~64^2 px on the 4 px grid
    # Same seed, same inputs: the same image.
    assert np.array_equal(out, rst.restore(noisy, record, [], plan).pixels)


# (overall severity, plan strength multiplier, expected img2img strength): min 0.1 at <= 0.1, linear to 0.6 at 1.
STRENGTHS = [
    (0.0, 1.0, 0.1),  # clean: the floor
    (0.1, 1.0, 0.1),  # at the floor
    (0.55, 1.0, 0.35),  # half way
    (1.0, 1.0, 0.6),  # most severe: the ceiling
    (1.0, 0.5, 0.3),  # the agent halved the plan after a worse attempt
    (1.0, 3.0, 1.0),  # a raised plan is capped at full strength
    (0.0, 0.25, 0.05),  # never below one step of 20 (1 / steps)
]


@pytest.fixture(scope="module")
def rst20(tiny_dir):
    return TinyDiffusionRestorer(steps=20)


@pytest.mark.parametrize(("overall", "scale", "expected"), STRENGTHS)
def test_strength_follows_severity(rst20, noisy, diagnosed, overall, scale, expected):
    record, plan = diagnosed
    record = record.model_copy(update={"overall_severity": overall})
    plan = plan.model_copy(deep=True)
    for op in plan.operations:
        op.strength = scale
    run = rst20.restore(noisy, record, [], plan).run
    assert run["strength"] == pytest.approx(expected)
    assert run["steps_run"] == max(1, round(20 * expected))


def test_strength_map_is_monotonic():
    values = [strength_for(s / 20) for s in range(21)]
    assert values == sorted(values) and values[0] == 0.1 and values[-1] == 0.6


def test_empty_plan_returns_the_input(rst, noisy, diagnosed):
    out = rst.restore(noisy, diagnosed[0], [], Plan())
    assert np.array_equal(out.pixels, noisy) and out.pixels is not noisy and out.run["skipped"]


# Odd sizes and aspects come back at exactly their own size; the working size keeps the aspect on the grid.
@pytest.mark.parametrize("shape", [(33, 47), (64, 17), (9, 9), (100, 31)])
def test_any_size_comes_back_at_its_size(rst, diagnosed, shape):
    img = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    out = rst.restore(img, diagnosed[0], [], diagnosed[1])
    assert out.pixels.shape == img.shape and out.pixels.dtype == np.float32
    w, h = map(int, out.run["resolution"].split("x"))
    assert h % rst.grid == 0 and w % rst.grid == 0
    assert abs(np.log((w / h) / (shape[1] / shape[0]))) < 0.35


def test_working_size_examples():
    # The restorer sizes its calls with reasoner.common.working_size(h, w, resolution**2, grid).
    assert working_size(512, 512, 512**2, 8) == (512, 512)
    assert working_size(1000, 500, 64**2, 8) == (88, 48)
    assert working_size(3, 3000, 64**2, 8) == (8, 2024)  # a sliver keeps one grid cell


def test_reference_attention_changes_output_only_when_enabled(tiny_dir, noisy, diagnosed, reference):
    record, plan = diagnosed
    plain = TinyDiffusionRestorer().restore(noisy, record, [reference], plan).pixels
    on = TinyDiffusionRestorer(reference_attention=True)
    with_ref = on.restore(noisy, record, [reference], plan)
    assert np.abs(with_ref.pixels - plain).max() > 1e-4
    assert with_ref.run["reference_ids"] == ["coffee-0"] and with_ref.run["reference_weight"] == 0.5
    # Switched off per run (attribute, or the plan forbids references, or there are none): the plain output.
    on.reference_attention = False
    assert np.array_equal(on.restore(noisy, record, [reference], plan).pixels, plain)
    on.reference_attention = True
    no_refs = plan.model_copy(update={"use_references": False})
    assert np.array_equal(on.restore(noisy, record, [reference], no_refs).pixels, plain)
    assert np.array_equal(on.restore(noisy, record, [], plan).pixels, plain)
    # Weight 0 installs the processors but mixes nothing in: the plain output up to float rounding.
    zero = TinyDiffusionRestorer(reference_attention=True, reference_weight=0.0)
    np.testing.assert_allclose(zero.restore(noisy, record, [reference], plan).pixels, plain, atol=1e-5)


def _processors(unet):
    return {name: id(p) for name, p in unet.attn_processors.items()}


def test_processors_restored_after_call_and_on_error(rst, noisy, diagnosed, reference, monkeypatch):
    record, plan = diagnosed
    on = TinyDiffusionRestorer(reference_attention=True)
    unet = on.pipe.unet
    originals = _processors(unet)
    on.restore(noisy, record, [reference], plan)
    assert _processors(unet) == originals and not unet._forward_hooks and not unet._forward_pre_hooks

    def boom(*args, **kwargs):
        raise RuntimeError("decoder failed")

    monkeypatch.setattr(on.pipe.vae, "decode", boom)  # fails inside the reference-attention context
    with pytest.raises(RuntimeError, match="decoder failed"):
        on.restore(noisy, record, [reference], plan)
    assert _processors(unet) == originals and not unet._forward_hooks and not unet._forward_pre_hooks


def test_reference_attention_reaches_only_decoder_self_attention(rst, reference):
    import torch

    latents = encode_reference(rst.pipe, torch.from_numpy(np.array(reference.pixels[:64, :64])).permute(2, 0, 1)[None])
    assert latents.shape == (1, 4, 32, 32)
    with ReferenceAttention(rst.pipe.unet, rst.pipe.scheduler, latents, 0.5) as ctx:
        assert ctx.layers and all(n.startswith("up_blocks.") and n.endswith("attn1") for n in ctx.layers)
    with pytest.raises(ValueError, match="reference weight"):
        ReferenceAttention(rst.pipe.unet, rst.pipe.scheduler, latents, 1.5)


def test_color_fix_hook_gets_output_and_input(tiny_dir, noisy, diagnosed):
    seen = []

    def keep_input(out, inp):
        seen.append((out.shape, inp.shape))
        return inp

    rst = TinyDiffusionRestorer(color_fix=keep_input)
    out = rst.restore(noisy, *diagnosed[:1], [], diagnosed[1])
    assert seen == [(noisy.shape, noisy.shape)] and np.allclose(out.pixels, noisy)
    assert out.run["color_fix"] == "keep_input"


def test_color_fix_by_method_name(tiny_dir, noisy, diagnosed):
    pytest.importorskip("restorer.color_fix")
    record, plan = diagnosed
    plain = TinyDiffusionRestorer().restore(noisy, record, [], plan).pixels
    fixer = TinyDiffusionRestorer(color_fix="wavelet")
    result = fixer.restore(noisy, record, [], plan)
    fixed = result.pixels
    assert result.run["color_fix"] == "wavelet"
    # The low frequencies come from the input: the mean colour is the input's, not the random model's.
    assert (
        np.abs(fixed.mean((0, 1)) - noisy.mean((0, 1))).max() < np.abs(plain.mean((0, 1)) - noisy.mean((0, 1))).max()
    )
    # A plan that restores tone (low light, haze) must not be pulled back to the input's tone.
    tone = plan.model_copy(
        update={"operations": [op.model_copy(update={"kind": "low_light"}) for op in plan.operations]}
    )
    toned = fixer.restore(noisy, record, [], tone)
    assert np.array_equal(toned.pixels, TinyDiffusionRestorer().restore(noisy, record, [], tone).pixels)
    assert toned.run["color_fix"].startswith("none")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"min_strength": 0.7, "max_strength": 0.6}, "min_strength"),
        ({"reference_weight": 2.0}, "reference_weight"),
        ({"dtype": "int8"}, "dtype"),
        ({"prompt_template": "{scene}"}, "prompt_template"),
        ({"pipeline_class": "NoSuchPipeline"}, "pipeline_class"),
        ({"color_fix": "sepia"}, "color_fix"),
    ],
)
def test_bad_options_fail_clearly(tiny_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TinyDiffusionRestorer(**kwargs)


def test_missing_extra_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ImportError
    monkeypatch.delitem(sys.modules, "restorer.diffusion")
    monkeypatch.delitem(sys.modules, "restorer.ref_attention")
    with pytest.raises(ImportError, match=r"pip install 'reason-restore\[diffusion\]'"):
        importlib.import_module("restorer.diffusion")


def test_through_the_agent_graph(tiny_dir, noisy):
    ctx = make_context(restorer=f"{__name__}:TinyDiffusionRestorer")
    assert isinstance(ctx.restorer, TinyDiffusionRestorer)
    pixels, trace = restore_image(noisy, context=ctx)
    assert pixels.shape == noisy.shape and trace.attempts
    back = Trace.model_validate_json(trace.model_dump_json())
    run = back.attempts[0].restorer_run
    assert run["pipeline"] == "StableDiffusionImg2ImgPipeline" and run["seed"] == 0 and run["prompt"]
    assert back.backends["restorer"].endswith(":TinyDiffusionRestorer")


class TinyReferenceRestorer(TinyDiffusionRestorer):
    """The tiny restorer with reference attention on."""

    def __init__(self):
        super().__init__(reference_attention=True)


def test_references_reach_the_restorer_through_the_graph(tiny_dir, tmp_path):
    from reasoner.imageio import save_image
    from retrieval.library import ReferenceLibrary

    refs = tmp_path / "refs"
    refs.mkdir()
    for name in ("coffee", "astronaut", "camera"):
        save_image(refs / f"{name}.png", load_photo(name)[:128, :128])
    ReferenceLibrary.create(tmp_path / "lib", "global").add(sorted(refs.iterdir()))
    query = D.apply(load_photo("coffee")[:128, :128], [D.NoiseParams(sigma=20, seed=4)])
    ctx = make_context(restorer=f"{__name__}:TinyReferenceRestorer", index=tmp_path / "lib")
    _, trace = restore_image(query, context=ctx)
    used = {i for a in trace.attempts for i in a.restorer_run["reference_ids"]}
    assert trace.references and used and used <= {r.id for r in trace.references}


def test_reference_attention_without_guidance(tiny_dir, noisy, diagnosed, reference):
    # guidance 1 runs the UNet on one sample per step instead of the (uncond, cond) pair.
    record, plan = diagnosed
    plain = TinyDiffusionRestorer(guidance=1.0).restore(noisy, record, [reference], plan).pixels
    on = TinyDiffusionRestorer(guidance=1.0, reference_attention=True)
    with_ref = on.restore(noisy, record, [reference], plan).pixels
    assert with_ref.shape == plain.shape and np.abs(with_ref - plain).max() > 1e-4
