"""The ``diffusion`` restorer: a diffusers img2img pipeline, strength from the diagnosis, optional reference attention.

The record's ``overall_severity`` sets how much of the image the model may repaint (img2img ``strength``): below
:data:`SEVERITY_FLOOR` the least, ``min_strength``; rising linearly to ``max_strength`` at severity 1. The plan's
largest operation strength scales it (the agent lowers it after a worse attempt, raises it after no change), capped
at 1. The text prompt is the plan's instruction and the scene description, through ``prompt_template``.

Inputs of any size are resized (area-preserving, aspect kept) to about ``resolution``² pixels on the pipeline's
grid, and the result is resized back to the input's exact size. With ``reference_attention`` the top retrieved
reference is injected into the UNet decoder's self-attention (:mod:`restorer.ref_attention`) for that call only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

try:
    import diffusers
    import torch
    import torch.nn.functional as F

    from restorer.ref_attention import ReferenceAttention, encode_reference
except ImportError as e:  # pragma: no cover - exercised only on installs without the extra
    raise ImportError(
        f"the diffusion restorer needs {e.name}; install with: pip install 'reason-restore[diffusion]'", name=e.name
    ) from e

from reasoner.common import as_rgb_float, torch_dtype, working_size
from reasoner.schema import DiagnosisRecord
from restorer.base import ReferenceImage, RestoreOutput
from restorer.plan import Plan

#: Overall severity at (and below) which img2img runs at ``min_strength``.
SEVERITY_FLOOR = 0.1
DEFAULT_PROMPT = "{description} {instruction} A sharp, clean, detailed, high-quality photo."
DEFAULT_NEGATIVE = "blurry, noisy, grainy, jpeg artifacts, hazy, low quality, distorted, oversaturated"


def strength_for(overall_severity: float, min_strength: float = 0.1, max_strength: float = 0.6) -> float:
    """img2img strength for an overall severity: ``min_strength`` up to severity 0.1, linear to ``max_strength`` at 1.

    >>> strength_for(0.05), strength_for(0.55), strength_for(1.0)
    (0.1, 0.35, 0.6)
    """
    frac = min(max((overall_severity - SEVERITY_FLOOR) / (1.0 - SEVERITY_FLOOR), 0.0), 1.0)
    return round(min_strength + (max_strength - min_strength) * frac, 6)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0.0, 1.0)


def _pipeline_class(spec: str | type) -> type:
    if not isinstance(spec, str):
        return spec
    if spec == "auto":
        return diffusers.AutoPipelineForImage2Image
    if ":" in spec:
        import importlib

        module, _, name = spec.partition(":")
        return getattr(importlib.import_module(module), name)
    cls = getattr(diffusers, spec, None)
    if cls is None:
        raise ValueError(f"unknown pipeline_class {spec!r}: give 'auto', a diffusers class name or 'pkg.module:Class'")
    return cls


class DiffusionRestorer:
    """A diffusers img2img pipeline driven by the diagnosis; see the module docstring for the strength map.

    Args:
        model: hub id or local folder of an img2img-capable pipeline (Stable Diffusion 1.x/2.x/XL, ...).
        pipeline_class: ``"auto"`` (``AutoPipelineForImage2Image``), a diffusers class name, ``"pkg.module:Class"``
            or a class.
        steps: scheduler steps for strength 1; a call runs about ``steps * strength`` of them (at least one).
        seed: seed of the initial noise (and the reference's noise); every call with the same inputs is identical.
        guidance: classifier-free guidance scale.
        prompt_template: ``str.format`` template over ``{instruction}``, ``{description}``, ``{kinds}``, ``{objects}``.
        negative_prompt: what to steer away from (ignored by pipelines without one).
        min_strength: img2img strength at overall severity <= 0.1.
        max_strength: img2img strength at overall severity 1.
        reference_attention: inject the top reference into the decoder's self-attention (UNet pipelines only).
        reference_weight: share of reference-augmented attention, in [0, 1].
        dtype: ``"auto"`` (bfloat16 on CUDA, float32 on CPU), ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        device: torch device; default CUDA when available, else CPU.
        cpu_offload: keep sub-models on the CPU and move each to the GPU only while it runs (needs accelerate).
        resolution: side of the square whose area the working image has; default the model's native size.
        progress: show the pipeline's progress bar over steps.
        color_fix: correction of colour/low frequencies back towards the input: a method of
            :func:`restorer.color_fix.color_fix` (``"wavelet"``, ``"adain"``; skipped when the plan restores tone,
            see ``fix_applies``), or any ``(output, input) -> output`` callable on ``float32 HxWx3`` in [0, 1]
            (always applied), or None.

    """

    name = "diffusion"

    def __init__(
        self,
        model: str | Path,
        *,
        pipeline_class: str | type = "auto",
        steps: int = 20,
        seed: int = 0,
        guidance: float = 5.0,
        prompt_template: str | None = None,
        negative_prompt: str | None = DEFAULT_NEGATIVE,
        min_strength: float = 0.1,
        max_strength: float = 0.6,
        reference_attention: bool = False,
        reference_weight: float = 0.5,
        dtype: str = "auto",
        device: str | None = None,
        cpu_offload: bool = False,
        resolution: int | None = None,
        progress: bool = True,
        color_fix: str | Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps!r}")
        if not 0.0 <= min_strength <= max_strength <= 1.0:
            raise ValueError(f"need 0 <= min_strength <= max_strength <= 1, got {min_strength!r}, {max_strength!r}")
        if not 0.0 <= reference_weight <= 1.0:
            raise ValueError(f"reference_weight must be in [0, 1], got {reference_weight!r}")
        if resolution is not None and resolution < 8:
            raise ValueError(f"resolution must be at least 8 pixels, got {resolution!r}")
        self.prompt_template = prompt_template or DEFAULT_PROMPT
        try:
            self.prompt_template.format(instruction="", description="", kinds="", objects="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"prompt_template {self.prompt_template!r} is not a format string over "
                "{instruction}, {description}, {kinds}, {objects}"
            ) from e
        self.model_id = str(model)
        self.steps, self.seed, self.guidance = int(steps), int(seed), float(guidance)
        self.negative_prompt = negative_prompt
        self.min_strength, self.max_strength = float(min_strength), float(max_strength)
        self.reference_attention, self.reference_weight = bool(reference_attention), float(reference_weight)
        if isinstance(color_fix, str):
            from restorer.color_fix import METHODS

            if color_fix not in METHODS:
                raise ValueError(f"unknown color_fix {color_fix!r}; choose one of {list(METHODS)}, a callable or None")
        self.color_fix = color_fix
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = torch_dtype(dtype, str(self.device))
        self.pipe = _pipeline_class(pipeline_class).from_pretrained(self.model_id, dtype=self.dtype)
        if cpu_offload:
            self.pipe.enable_model_cpu_offload(device=self.device)
        else:
            self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=not progress)
        if self.reference_attention and getattr(self.pipe, "unet", None) is None:
            raise ValueError(
                f"reference_attention needs a UNet pipeline; {type(self.pipe).__name__} has none: "
                "set reference_attention=False"
            )
        self.grid, native = self._grid_and_native()
        self.resolution = int(resolution or native)

    def _grid_and_native(self) -> tuple[int, int]:
        vae_factor = int(getattr(self.pipe, "vae_scale_factor", 8))
        net = getattr(self.pipe, "unet", None) or getattr(self.pipe, "transformer", None)
        cfg = getattr(net, "config", None)
        if getattr(self.pipe, "unet", None) is not None:
            # Each UNet down block but the last halves the latent; uneven sizes there break the skip connections.
            grid = vae_factor * 2 ** (len(cfg.block_out_channels) - 1)
        else:
            grid = vae_factor * int(getattr(cfg, "patch_size", None) or 2)
        sample = getattr(cfg, "sample_size", None)
        native = int(sample) * vae_factor if isinstance(sample, int) else 1024
        return grid, native

    def prompt(self, record: DiagnosisRecord, plan: Plan) -> str:
        """The text prompt for ``record`` and ``plan`` through ``prompt_template`` (whitespace collapsed)."""
        description = record.semantics.description.strip()
        if description and description[-1] not in ".!?":
            description += "."
        text = self.prompt_template.format(
            instruction=plan.instruction.strip(),
            description=description,
            kinds=", ".join(k.replace("_", " ") for k in plan.kinds),
            objects=", ".join(record.semantics.objects),
        )
        return " ".join(text.split())

    def strength(self, record: DiagnosisRecord, plan: Plan) -> float:
        """img2img strength: :func:`strength_for` the record's severity, times the plan's largest op strength, <= 1.

        Never below one scheduler step's worth (``1 / steps``): a shorter schedule has no step to run.
        """
        scale = max((op.strength for op in plan.operations), default=0.0)
        base = strength_for(record.overall_severity, self.min_strength, self.max_strength)
        return round(min(max(base * scale, 1.0 / self.steps), 1.0), 6)

    def restore(
        self, image: np.ndarray, record: DiagnosisRecord, references: Sequence[ReferenceImage], plan: Plan
    ) -> RestoreOutput:
        """Restore ``image`` (float32 HxWx3 RGB in [0, 1], not modified) into new pixels of the same shape.

        The output's ``run`` holds the prompt, seed, strength, steps, working resolution and reference ids of the
        call, for the trace. A plan with nothing to do (no operation of positive strength) returns an exact copy.
        """
        x = as_rgb_float(image)
        h, w = x.shape[:2]
        if not any(op.strength > 0 for op in plan.operations):
            return RestoreOutput(x, {"skipped": True, "reason": "empty plan"})
        t0 = time.perf_counter()
        size = working_size(h, w, self.resolution**2, self.grid)
        prompt, strength = self.prompt(record, plan), self.strength(record, plan)
        pixels = _resize(torch.from_numpy(x).permute(2, 0, 1)[None], size)
        ref = max(references, key=lambda r: r.score) if references else None
        use_ref = self.reference_attention and plan.use_references and ref is not None
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        call = dict(
            prompt=prompt,
            image=pixels,
            strength=strength,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            generator=generator,
            output_type="pt",
        )
        if self.negative_prompt:
            call["negative_prompt"] = self.negative_prompt
        with torch.inference_mode():
            if use_ref:
                out = self._call_with_reference(call, as_rgb_float(ref.pixels, "reference"), size)
            else:
                out = self.pipe(**call).images
        out = _resize(out.float().cpu().clamp(0.0, 1.0), (h, w))[0].permute(1, 2, 0).numpy()
        out = np.ascontiguousarray(out, dtype=np.float32)
        fixed = self._color_fix(out, x, plan)
        if fixed is not None:
            out = np.clip(np.asarray(fixed, dtype=np.float32), 0.0, 1.0)
        run = {
            "model": self.model_id,
            "pipeline": type(self.pipe).__name__,
            "prompt": prompt,
            "negative_prompt": self.negative_prompt or "",
            "seed": self.seed,
            "strength": strength,
            "steps": self.steps,
            "steps_run": min(int(self.steps * strength), self.steps),
            "guidance": self.guidance,
            "resolution": f"{size[1]}x{size[0]}",
            "reference_ids": [ref.id] if use_ref else [],
            "reference_weight": self.reference_weight if use_ref else 0.0,
            "color_fix": self._color_fix_name(plan),
            "elapsed_s": round(time.perf_counter() - t0, 3),
        }
        return RestoreOutput(out, run)

    def _color_fix_name(self, plan: Plan) -> str:
        if self.color_fix is None:
            return "none"
        if not isinstance(self.color_fix, str):
            return getattr(self.color_fix, "__name__", "custom")
        from restorer.color_fix import fix_applies

        return self.color_fix if fix_applies(plan.kinds) else "none (plan restores tone)"

    def _color_fix(self, out: np.ndarray, x: np.ndarray, plan: Plan) -> np.ndarray | None:
        if self.color_fix is None:
            return None
        if not isinstance(self.color_fix, str):
            return self.color_fix(out, x)
        from restorer.color_fix import color_fix, fix_applies

        return color_fix(out, x, self.color_fix) if fix_applies(plan.kinds) else None

    def _call_with_reference(self, call: dict, ref_pixels: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        pipe = self.pipe
        ref = _resize(torch.from_numpy(ref_pixels).permute(2, 0, 1)[None], size)
        latents = encode_reference(pipe, ref).to(pipe.unet.dtype)
        noise_gen = torch.Generator(device="cpu").manual_seed(self.seed + 1)
        with ReferenceAttention(pipe.unet, pipe.scheduler, latents, self.reference_weight, noise_gen):
            return pipe(**call).images
