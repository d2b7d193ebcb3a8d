"""The ``qwen-image-edit`` restorer: Qwen-Image-Edit(-Plus) through diffusers, prompted by the diagnosis.

``QwenImageEditPlusPipeline`` (Qwen-Image-Edit-2509 and later) takes several pictures: the degraded image first,
then up to ``max_references`` retrieved references; ``QwenImageEditPipeline`` (Qwen-Image-Edit) takes the degraded
image alone. The instruction is rendered from the record and plan by :mod:`restorer.instructions`. Inputs of any size
are resized to the model's working area on its resolution grid (multiples of twice the VAE factor) with their
aspect kept, and the output is resized back to the input's exact size; a colour fix (:mod:`restorer.color_fix`)
then pulls the low frequencies back to the input. Every run's settings come back as the output's ``run``.
"""

from __future__ import annotations

import inspect
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

try:
    import diffusers
    import torch
    from diffusers import DiffusionPipeline, QwenImageEditPipeline, QwenImageEditPlusPipeline
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus
    from transformers import Qwen2VLProcessor
    from transformers.utils import is_torchvision_available
except ImportError as e:  # pragma: no cover - exercised only on installs without the extra
    raise ImportError(
        f"the qwen-image-edit restorer needs {e.name}; install with: pip install 'reason-restore[diffusion]'",
        name=e.name,
    ) from e

from reasoner.common import as_rgb_float, one_line, torch_dtype, working_size
from reasoner.schema import DiagnosisRecord
from restorer.base import ReferenceImage, RestoreOutput
from restorer.color_fix import METHODS, color_fix, fix_applies
from restorer.instructions import NEGATIVE_PROMPT, render_instruction
from restorer.plan import Plan

DEFAULT_MODEL = "Qwen/Qwen-Image-Edit-2509"
#: The pipelines' own working area (pixels) and the Plus pipeline's area for the pictures the text encoder sees.
NATIVE_AREA = 1024 * 1024
NATIVE_CONDITION_AREA = pipeline_qwenimage_edit_plus.CONDITION_IMAGE_SIZE
#: Least side of a condition picture: below two merged vision patches the text encoder has nothing to look at.
MIN_CONDITION_SIDE = 32


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without the video processor (images and text only; no torchvision needed)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


def pipeline_class(plus: bool):
    """``QwenImageEditPlusPipeline`` when ``plus`` (several pictures), else ``QwenImageEditPipeline``."""
    return QwenImageEditPlusPipeline if plus else QwenImageEditPipeline


def fit_template_start(pipe) -> int:
    r"""Point the pipeline's prompt-embedding cut after its system prompt, for the tokenizer it actually has.

    The pipelines drop the first ``prompt_template_encode_start_idx`` (64) hidden states: the length of their
    system prompt plus ``<|im_start|>user\n`` under Qwen's own tokenizer. Any other tokenizer (the tiny test
    pipelines') splits that text differently, so the cut is recounted; Qwen's vocabulary keeps upstream's number.
    """
    tok = pipe.tokenizer
    if len(tok) < 150_000:
        template = pipe.prompt_template_encode
        head = template[: template.index("<|im_start|>user\n") + len("<|im_start|>user\n")]
        pipe.prompt_template_encode_start_idx = len(tok(head, add_special_tokens=False)["input_ids"])
    return pipe.prompt_template_encode_start_idx


def sized_call(pipe, plus: bool, area: int) -> Callable:
    """``pipe``'s ``__call__`` resizing its input pictures to about ``area`` pixels rather than ~1 MP.

    The pipelines read their working area from module constants (Plus: ``VAE_IMAGE_SIZE``, ``CONDITION_IMAGE_SIZE``)
    or compute it inside ``__call__`` (Edit: ``calculate_dimensions(1024 * 1024, ...)``); neither is an argument.
    The callable returned runs upstream's ``__call__`` code with globals of its own, a copy of the module's with
    those names bound for ``area``, so the module is never changed and calls at different areas can run at once
    (threads, several restorers). Upstream's ``calculate_dimensions`` also rounds a side of a very elongated picture
    to 0, so every side is kept at least 32 px. Call it under ``torch.inference_mode()`` (upstream's ``no_grad``
    decorator is not part of the code it reuses).

    Raises:
        RuntimeError: When this diffusers' ``__call__`` no longer reads those names (the area would be ignored).

    """
    fn = inspect.unwrap(type(pipe).__call__)
    needed = ("calculate_dimensions", *(("VAE_IMAGE_SIZE", "CONDITION_IMAGE_SIZE") if plus else ()))
    missing = [n for n in needed if n not in fn.__code__.co_names or n not in fn.__globals__]
    if missing:
        raise RuntimeError(
            f"{type(pipe).__name__}.__call__ of diffusers {diffusers.__version__} no longer reads {missing}, so the "
            "qwen-image-edit restorer cannot set its working area; install the diffusers of requirements/test.txt"
        )

    upstream = fn.__globals__["calculate_dimensions"]

    def dims(target, ratio):
        w, h, *rest = upstream(target if plus else area, ratio)
        return (max(w, 32), max(h, 32), *rest)

    names = {"calculate_dimensions": dims}
    if plus:
        condition = max(int(NATIVE_CONDITION_AREA * area / NATIVE_AREA), MIN_CONDITION_SIDE**2)
        names |= {"VAE_IMAGE_SIZE": area, "CONDITION_IMAGE_SIZE": condition}
    call = types.FunctionType(fn.__code__, {**fn.__globals__, **names}, fn.__name__, fn.__defaults__, fn.__closure__)
    call.__kwdefaults__ = fn.__kwdefaults__
    return types.MethodType(call, pipe)


@dataclass
class EditRun:
    """What one :meth:`QwenEditRestorer.restore` call did, enough to reproduce it (for the agent's trace)."""

    model: str
    pipeline: str
    template: str
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance: float
    reference_ids: list[str] = field(default_factory=list)
    reference_scores: list[float] = field(default_factory=list)
    input_size: tuple[int, int] = (0, 0)
    working_size: tuple[int, int] = (0, 0)
    color_fix: str | None = None
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready dict (sizes as ``[width, height]``)."""
        d = asdict(self)
        d["input_size"], d["working_size"] = list(self.input_size), list(self.working_size)
        return d


def _to_pil(pixels: np.ndarray):
    from PIL import Image

    return Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")


class QwenEditRestorer:
    """Restores with Qwen-Image-Edit(-Plus), prompted by the diagnosis and conditioned on the references.

    Args:
        model: Hub id or local folder of a diffusers Qwen-Image-Edit pipeline.
        pipeline: ``"plus"`` (several pictures), ``"single"``, or ``"auto"`` (the class the folder names).
        steps: Denoising steps.
        guidance: ``true_cfg_scale`` (classifier-free guidance with the negative prompt; 1 turns it off).
        seed: Seed of the initial noise (the same seed and inputs reproduce the output).
        negative_prompt: What to steer away from when ``guidance > 1``.
        dtype: ``"auto"`` (bfloat16 on an accelerator, float32 on CPU), ``"bfloat16"``, ``"float16"``, ``"float32"``.
        device: Torch device (default: CUDA when available, else CPU).
        cpu_offload: Move each sub-model to the accelerator only while it runs (accelerate's model offload).
        vae_tiling: Decode in tiles (large images in less memory).
        vae_slicing: Decode batch items one at a time.
        max_references: Most references passed to a Plus pipeline (highest scores first).
        resolution: Side of the square-equivalent working area in pixels (None: the pipeline's ~1 MP).
        color_fix: ``"wavelet"``, ``"adain"`` or None; skipped when the plan restores tone (low light, haze).
        progress: Show the pipeline's progress bar over steps (on stderr).

    """

    name = "qwen-image-edit"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        pipeline: str = "auto",
        steps: int = 20,
        guidance: float = 4.0,
        seed: int = 0,
        negative_prompt: str = NEGATIVE_PROMPT,
        dtype: str = "auto",
        device: str | None = None,
        cpu_offload: bool = False,
        vae_tiling: bool = False,
        vae_slicing: bool = False,
        max_references: int = 2,
        resolution: int | None = None,
        color_fix: str | None = "wavelet",
        progress: bool = True,
    ) -> None:
        if pipeline not in ("auto", "plus", "single"):
            raise ValueError(f"pipeline must be 'auto', 'plus' or 'single', got {pipeline!r}")
        if color_fix is not None and color_fix not in METHODS:
            raise ValueError(f"unknown colour fix {color_fix!r}; choose one of {list(METHODS)} or None")
        if steps < 1 or max_references < 0 or (resolution is not None and resolution < 16):
            raise ValueError("steps must be >= 1, max_references >= 0 and resolution None or >= 16")
        self.model, self.steps, self.guidance, self.seed = str(model), int(steps), float(guidance), int(seed)
        self.negative_prompt, self.max_references = negative_prompt, int(max_references)
        self.resolution, self.color_fix = resolution, color_fix
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = torch_dtype(dtype, self.device)
        self.plus = pipeline == "plus" or (pipeline == "auto" and _names_plus(self.model))
        self.pipe = load_pipeline(self.model, self.plus, self.dtype)
        if cpu_offload and self.device != "cpu":
            self.pipe.enable_model_cpu_offload(device=self.device)
        else:  # offloading to the CPU from the CPU is a no-op: run in place
            self.pipe.to(self.device)
        if vae_tiling:
            self.pipe.vae.enable_tiling()
        if vae_slicing:
            self.pipe.vae.enable_slicing()
        self.pipe.set_progress_bar_config(disable=not progress)
        fit_template_start(self.pipe)
        self.grid = self.pipe.vae_scale_factor * 2
        self.area = self.resolution**2 if self.resolution else NATIVE_AREA
        self._call = sized_call(self.pipe, self.plus, self.area)

    def restore(
        self, image: np.ndarray, record: DiagnosisRecord, references: Sequence[ReferenceImage], plan: Plan
    ) -> RestoreOutput:
        """Restore ``image`` (float32 HxWx3 RGB in [0, 1], not modified) into float32 pixels of the same shape.

        The output's ``run`` is the call's :class:`EditRun` as a JSON-ready dict, which the agent records per
        attempt as ``restorer_run``. A plan with nothing to run returns an exact copy, without calling the model
        (``run`` None). Calls may run concurrently from several threads.
        """
        x = as_rgb_float(image)
        if not any(op.strength > 0 for op in plan.operations):
            return RestoreOutput(x)
        t0 = time.perf_counter()
        h0, w0 = x.shape[:2]
        refs = sorted(references, key=lambda r: -r.score)[: self.max_references] if self.plus else []
        prompt = render_instruction(record, plan, [r.score for r in refs], negative=self.negative_prompt)
        h, w = working_size(h0, w0, self.area, self.grid)
        pictures = [_to_pil(x)] + [_to_pil(r.pixels) for r in refs]
        with torch.inference_mode():
            out = self._call(
                image=pictures if self.plus else pictures[0],
                prompt=prompt.text,
                negative_prompt=self.negative_prompt if self.guidance > 1 else None,
                true_cfg_scale=self.guidance,
                num_inference_steps=self.steps,
                generator=torch.Generator("cpu").manual_seed(self.seed),
                height=h,
                width=w,
                output_type="np",
            ).images[0]
        import cv2

        out = np.asarray(out, np.float32)
        interp = cv2.INTER_AREA if out.shape[0] * out.shape[1] > h0 * w0 else cv2.INTER_CUBIC
        out = np.clip(cv2.resize(out, (w0, h0), interpolation=interp), 0.0, 1.0)
        fix = self.color_fix if fix_applies(plan.kinds) else None
        out = color_fix(out, x, fix)
        run = EditRun(
            model=self.model,
            pipeline=type(self.pipe).__name__,
            template=prompt.template,
            prompt=prompt.text,
            negative_prompt=self.negative_prompt if self.guidance > 1 else "",
            seed=self.seed,
            steps=self.steps,
            guidance=self.guidance,
            reference_ids=[r.id for r in refs],
            reference_scores=[round(float(r.score), 4) for r in refs],
            input_size=(w0, h0),
            working_size=(w, h),
            color_fix=fix,
            elapsed_s=round(time.perf_counter() - t0, 3),
        )
        return RestoreOutput(out.astype(np.float32, copy=False), run.to_dict())


def _names_plus(model: str) -> bool:
    """Whether ``model``'s ``model_index.json`` names the Plus pipeline (what ``pipeline="auto"`` follows)."""
    try:
        return DiffusionPipeline.load_config(model).get("_class_name") == QwenImageEditPlusPipeline.__name__
    except OSError as e:
        raise ValueError(
            f"cannot read the pipeline config of {model!r} ({one_line(e)}); pass a hub id or a local folder"
        ) from e


def load_pipeline(model: str, plus: bool | None = None, dtype=None, **kwargs):
    """The Qwen-Image-Edit(-Plus) pipeline at ``model`` (hub id or folder), loadable without torchvision.

    Upstream's ``Qwen2VLProcessor`` (what ``model_index.json`` names, in real checkpoints and in the tiny ones of
    :mod:`restorer.tiny_edit`) insists on a video processor, which needs torchvision; where it is missing the
    processor is loaded as :class:`ImageOnlyQwen2VLProcessor` and handed to ``from_pretrained``.

    Args:
        model: Hub id or local folder.
        plus: Load as the Plus (multi-picture) pipeline; None follows the class ``model_index.json`` names.
        dtype: Torch dtype of the weights (default float32).
        **kwargs: Passed to ``from_pretrained`` (``revision``, ``variant``, ...).

    """
    plus = _names_plus(model) if plus is None else plus
    if not is_torchvision_available() and "processor" not in kwargs:
        kwargs["processor"] = ImageOnlyQwen2VLProcessor.from_pretrained(model, subfolder="processor")
    return pipeline_class(plus).from_pretrained(model, dtype=dtype or torch.float32, **kwargs)
