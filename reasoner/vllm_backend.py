"""The ``vllm`` reasoner: a vision-language model in vLLM's offline engine, for batch jobs on GPUs.

One ``vllm.LLM`` holds the model; :meth:`VLLMReasoner.diagnose_many` sends a whole batch of images through one
``llm.chat`` call, so vLLM schedules them together. Decoding follows :func:`reasoner.vlm_output.completion_schema`
through vLLM's structured outputs (``SamplingParams(structured_outputs=StructuredOutputsParams(json=...))``,
vLLM >= 0.12), and every reply is validated anyway. Messages are the ones the served-model client sends
(:mod:`reasoner.vlm_request`), so a model behaves alike offline and behind ``vllm serve``.

vLLM is imported by the constructor, so this module imports (and its pure helpers run) without it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from prompts import Prompt, load_prompt
from reasoner.imageio import LoadedImage
from reasoner.schema import DiagnosisRecord
from reasoner.vlm_output import CompletionError, completion_schema
from reasoner.vlm_request import (
    IMAGE_FORMATS,
    as_loaded,
    chat_messages,
    image_data_url,
    image_name,
    make_provenance,
    record_from_reply,
    structured_outputs_fields,
)

#: One image per request and no video: vLLM reserves memory for the largest multimodal input a prompt may carry.
DEFAULT_LIMIT_MM = {"image": 1, "video": 0}


def engine_args(
    model: str,
    *,
    tensor_parallel_size: int = 1,
    dtype: str = "auto",
    max_model_len: int | None = None,
    gpu_memory_utilization: float = 0.9,
    limit_mm_per_prompt: dict[str, int] | None = None,
    seed: int = 0,
    **extra,
) -> dict:
    """Keyword arguments for ``vllm.LLM``; ``None`` values are left to vLLM's defaults, ``extra`` passes through."""
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization={gpu_memory_utilization} must be in (0, 1]")
    if tensor_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size={tensor_parallel_size} must be at least 1")
    args = {
        "model": str(model),
        "tensor_parallel_size": int(tensor_parallel_size),
        "dtype": dtype,
        "max_model_len": max_model_len,
        "gpu_memory_utilization": float(gpu_memory_utilization),
        "limit_mm_per_prompt": dict(DEFAULT_LIMIT_MM if limit_mm_per_prompt is None else limit_mm_per_prompt),
        "seed": seed,
        **extra,
    }
    return {k: v for k, v in args.items() if v is not None}


def sampling_args(max_tokens: int = 1024, temperature: float = 0.0, seed: int | None = 0) -> dict:
    """Keyword arguments for ``vllm.SamplingParams`` other than ``structured_outputs``."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens} must be at least 1")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be at least 0")
    return {"max_tokens": int(max_tokens), "temperature": float(temperature), "seed": seed}


def conversations(
    images: list[LoadedImage], prompt: Prompt, *, image_format: str = "png", max_image_side: int | None = None
) -> list[list[dict]]:
    """One chat (OpenAI-format messages, the image as a data URL) per image, the batch ``llm.chat`` takes."""
    return [
        chat_messages(prompt, im, image_data_url(im.pixels, fmt=image_format, max_side=max_image_side))
        for im in images
    ]


def invalid_reply_error(name: str, model: str, error: CompletionError, finish_reason: str | None, max_tokens: int):
    """The one-line ``CompletionError`` for a reply that does not validate, with the likely fix."""
    if finish_reason == "length":
        hint = f"the reply was cut at max_tokens={max_tokens}; raise max_tokens"
    else:
        hint = "vLLM did not enforce the schema; check that this vLLM (>= 0.12) supports structured outputs"
    return CompletionError(f"{name}: the reply of {model!r} is not a valid completion ({error}); {hint}")


class VLLMReasoner:
    """Diagnose images in batches with vLLM's offline engine and schema-constrained decoding.

    Args:
        model: Model folder or hub id, as ``vllm.LLM`` takes it.
        tensor_parallel_size: GPUs to shard the model over.
        dtype: Weights and activations dtype (``auto``, ``bfloat16``, ``float16``).
        max_model_len: Context length; default: the model's.
        gpu_memory_utilization: Share of GPU memory vLLM may take (weights, activations, KV cache).
        max_tokens: Most tokens the model may write per reply.
        temperature: Sampling temperature (0 is greedy).
        limit_mm_per_prompt: Multimodal items per prompt vLLM reserves memory for; default one image, no video.
        prompt_version: Version of the ``diagnose`` prompt (default: the newest).
        max_image_side: Shrink images so the longer side is at most this many pixels; default: as loaded.
        image_format: ``png`` (lossless, default) or ``jpeg`` for the data URLs handed to the engine.
        batch_size: Images per ``llm.chat`` call in :meth:`diagnose_many` (bounds the decoded pixels held at once).
        seed: Engine and sampling seed.
        max_pixels: Refuse image files with more pixels than this (decompression-bomb guard).
        **engine_kwargs: More ``vllm.LLM`` / ``EngineArgs`` arguments (``enforce_eager``, ``max_num_seqs``, ...).

    """

    name = "vllm"

    def __init__(
        self,
        model: str | Path,
        *,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        limit_mm_per_prompt: dict[str, int] | None = None,
        prompt_version: str | None = None,
        max_image_side: int | None = None,
        image_format: str = "png",
        batch_size: int = 64,
        seed: int = 0,
        max_pixels: int | None = None,
        **engine_kwargs,
    ):
        try:
            import vllm
            from vllm.sampling_params import StructuredOutputsParams
        except ImportError as e:
            raise ImportError(
                f"the vllm reasoner needs vLLM >= 0.12 on a GPU machine ({e}); install with: "
                "pip install 'reason-restore[vllm]' (or serve the model and use the vllm-server reasoner)"
            ) from e
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format={image_format!r} is not supported; choose one of {list(IMAGE_FORMATS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.model = str(model)
        self.prompt = load_prompt("diagnose", prompt_version)
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.max_image_side = max_image_side
        self.image_format = image_format
        self.batch_size = int(batch_size)
        self.max_pixels = max_pixels
        self.engine_args = engine_args(
            self.model,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            limit_mm_per_prompt=limit_mm_per_prompt,
            seed=seed,
            **engine_kwargs,
        )
        self.sampling_params = vllm.SamplingParams(
            **sampling_args(self.max_tokens, self.temperature, seed),
            structured_outputs=StructuredOutputsParams(**structured_outputs_fields(completion_schema())),
        )
        self.llm = vllm.LLM(**self.engine_args)
        self.vllm_version = str(getattr(vllm, "__version__", "unknown"))

    def diagnose(self, image: LoadedImage | np.ndarray | str | Path) -> DiagnosisRecord:
        """Diagnose one image: a loaded image, a path, or a ``float32 HxWx3 RGB in [0, 1]`` / uint8 array."""
        return self.diagnose_many([image])[0]

    def diagnose_many(self, images) -> list[DiagnosisRecord]:
        """Diagnose images in batches of ``batch_size`` through ``llm.chat``; results in input order.

        ``elapsed_s`` in each record is its batch's wall time divided by the batch size.

        Raises:
            CompletionError: A reply does not validate (the first one, in input order, is named).

        """
        images = list(images)
        records: list[DiagnosisRecord] = []
        for start in range(0, len(images), self.batch_size):
            records += self._batch([as_loaded(im, self.max_pixels) for im in images[start : start + self.batch_size]])
        return records

    def _batch(self, batch: list[LoadedImage]) -> list[DiagnosisRecord]:
        t0 = time.perf_counter()
        chats = conversations(batch, self.prompt, image_format=self.image_format, max_image_side=self.max_image_side)
        outputs = self.llm.chat(chats, self.sampling_params, use_tqdm=False)
        share = (time.perf_counter() - t0) / max(len(batch), 1)
        records = []
        for image, out in zip(batch, outputs, strict=True):
            best = out.outputs[0]
            settings = {
                "prompt": self.prompt.id,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "max_image_side": self.max_image_side,
                "image_format": self.image_format,
                "batch_size": len(batch),
                "prompt_tokens": len(out.prompt_token_ids or []),
                "completion_tokens": len(best.token_ids or []),
                "finish_reason": best.finish_reason,
                "tensor_parallel_size": self.engine_args["tensor_parallel_size"],
                "vllm": self.vllm_version,
            }
            provenance = make_provenance(self.name, self.model, share, settings)
            try:
                records.append(record_from_reply(best.text, image, provenance))
            except CompletionError as e:
                raise invalid_reply_error(
                    image_name(image), self.model, e, best.finish_reason, self.max_tokens
                ) from None
        return records
