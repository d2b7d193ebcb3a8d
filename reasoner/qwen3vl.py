"""The ``qwen3vl`` reasoner: a Qwen3-VL checkpoint under transformers, its JSON reply constrained by a grammar.

The model sees the versioned ``diagnose`` prompt and the image through the checkpoint's own chat template. Its reply
is decoded under an xgrammar grammar compiled from :func:`reasoner.vlm_output.completion_schema`, so every finished
reply parses and assembles into a valid :class:`~reasoner.schema.DiagnosisRecord`; every string and array in that
schema is bounded, so replies end. Thinking variants (Qwen3-VL-*-Thinking, whose template opens ``<think>``) first
think freely, up to ``max_thinking_tokens``; the reasoner then closes ``</think>`` and decodes the JSON under the
grammar, and the thinking is kept in ``record.thinking``.

Images are resized by the checkpoint's image processor, with the ``smart_resize`` rule Qwen's ``qwen-vl-utils``
applies (sides multiples of patch x merge, pixel count within ``[min_pixels, max_pixels]``); ``qwen-vl-utils`` itself
is not used because version 0.0.14 imports torchvision at module top, which is not installable beside CPU torch.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

try:
    import torch
    import transformers
    import xgrammar as xgr
except ImportError as e:  # pragma: no cover - exercised only on installs without the extra
    raise ImportError(
        f"the qwen3vl reasoner needs {e.name}; install with: pip install 'reason-restore[vlm]'", name=e.name
    ) from e

from prompts import load_prompt
from reasoner.common import dtype_name, one_line, torch_dtype
from reasoner.imageio import LoadedImage, from_array, load_image, to_uint8
from reasoner.schema import DiagnosisRecord, Provenance
from reasoner.version import rnr_version
from reasoner.vlm_output import CompletionError, completion_schema, parse_completion, to_record

DEFAULT_MODEL = "Qwen/Qwen3-VL-2B-Instruct"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


class Qwen3VLReasoner:
    """Diagnose images with a Qwen3-VL model (hub id or local folder) and grammar-guided JSON decoding.

    Args:
        model: Hub id (``Qwen/Qwen3-VL-2B-Instruct``, ``Qwen/Qwen3-VL-4B-Thinking``, ...) or checkpoint folder.
        revision: Hub revision (branch, tag or commit) to load.
        dtype: ``"auto"`` (the checkpoint's), ``"float32"``, ``"bfloat16"`` or ``"float16"`` (or fp32, bf16, fp16).
        device: Torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``); CPU when None.
        attn_implementation: Passed to ``from_pretrained`` (``"sdpa"``, ``"eager"``, ``"flash_attention_2"``).
        min_pixels: Smallest image area fed to the vision encoder (default: the checkpoint's processor's).
        max_pixels: Largest image area fed to the vision encoder (default: the checkpoint's processor's); larger
            images are downscaled, which bounds the number of visual tokens (one per 32x32 pixels).
        max_new_tokens: Token budget of the JSON reply; a reply cut off by it is an error.
        thinking: ``"auto"`` (thinking iff the chat template opens ``<think>``), True (open it if the template
            does not) or False (close it at once on thinking variants).
        trust_remote_code: Allow code shipped with the checkpoint (off by default).
        prompt_version: Version of the ``diagnose`` prompt (default: the newest).
        batch_size: Images per ``generate`` call in :meth:`diagnose_many`.
        max_image_pixels: Refuse image files with more pixels than this (decompression-bomb guard).
        max_thinking_tokens: Token budget of the free-form thinking of thinking variants (0: no thinking).
        temperature: 0 decodes greedily; above 0 samples.
        top_p: Nucleus sampling mass when sampling.
        seed: Seed of the sampling (each batch reseeded from it), for reproducible sampled diagnoses.

    """

    name = "qwen3vl"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        attn_implementation: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int = 1024,
        thinking: bool | str = "auto",
        trust_remote_code: bool = False,
        prompt_version: str | None = None,
        batch_size: int = 4,
        max_image_pixels: int | None = None,
        max_thinking_tokens: int = 2048,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ):
        if thinking not in ("auto", True, False):
            raise ValueError(f"thinking must be 'auto', True or False, not {thinking!r}")
        if dtype != "auto":  # "auto" is the checkpoint's own dtype here, left to from_pretrained
            dtype = dtype_name(dtype)
        if max_new_tokens < 1 or max_thinking_tokens < 0 or batch_size < 1 or temperature < 0:
            raise ValueError(
                "max_new_tokens and batch_size must be positive; max_thinking_tokens and temperature non-negative"
            )
        self.model_id = str(model)
        self.revision = revision
        self.max_new_tokens = max_new_tokens
        self.max_thinking_tokens = max_thinking_tokens
        self.batch_size = batch_size
        self.max_image_pixels = max_image_pixels
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.seed = seed
        self.prompt = load_prompt("diagnose", prompt_version)
        self.device = torch.device(device or "cpu")

        self.processor, self.model = _load(
            self.model_id, revision, dtype, self.device, attn_implementation, trust_remote_code
        )
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"  # generation appends on the right, so batches pad on the left
        size = self.processor.image_processor.size
        self.min_pixels = int(min_pixels or size.shortest_edge)
        self.max_pixels = int(max_pixels or size.longest_edge)
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} exceeds max_pixels {self.max_pixels}")

        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos)
        self.pad_id = gen.pad_token_id if gen.pad_token_id is not None else self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.eos_ids[0]
        self._grammar = _compile_grammar(self.tokenizer, self.model, self.eos_ids)
        self._think_close_ids = self.tokenizer.encode(THINK_CLOSE, add_special_tokens=False)
        # The grammar admits any printable text in strings, tags included, but a tag in the reply would be read as
        # the end of a thought when it is parsed; where the tags are single tokens (Qwen3 vocabularies) they are
        # suppressed in the JSON.
        tags = [self.tokenizer.encode(t, add_special_tokens=False) for t in (THINK_OPEN, THINK_CLOSE)]
        self._tag_ids = [ids[0] for ids in tags if len(ids) == 1]
        self._calls = 0  # generate calls so far; sampling seeds advance with it

        template_opens_think = self._render(64, 64).rstrip().endswith(THINK_OPEN)
        self.thinking = (template_opens_think if thinking == "auto" else bool(thinking)) and max_thinking_tokens > 0
        # What the prompt must be followed by so the model starts thinking, or starts the JSON at once.
        if self.thinking:
            self._prompt_suffix = "" if template_opens_think else THINK_OPEN + "\n"
        else:
            self._prompt_suffix = "\n" + THINK_CLOSE + "\n\n" if template_opens_think else ""

    def diagnose(self, image: LoadedImage | np.ndarray | str | Path) -> DiagnosisRecord:
        """Diagnose one image: a loaded image, a path, or a ``float32 HxWx3 RGB in [0, 1]`` / uint8 array."""
        return self.diagnose_many([image])[0]

    def diagnose_many(self, images) -> list[DiagnosisRecord]:
        """Diagnose several images in order, ``batch_size`` per ``generate`` call (left-padded batches).

        ``elapsed_s`` in each record is the batch's wall time divided by the images in it.
        """
        records: list[DiagnosisRecord] = []
        batch: list[LoadedImage] = []
        for item in images:
            batch.append(self._load(item))
            if len(batch) == self.batch_size:
                records.extend(self._diagnose_batch(batch))
                batch = []
        if batch:
            records.extend(self._diagnose_batch(batch))
        return records

    def settings(self) -> dict[str, str | int | float | bool]:
        """Decoding settings recorded in every record's provenance (per-image counts are added to them)."""
        s: dict[str, str | int | float | bool] = {
            "prompt": self.prompt.id,
            "decoding": "xgrammar json_schema (completion schema)",
            "thinking": self.thinking,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "device": str(self.device),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "batch_size": self.batch_size,
        }
        if self.thinking:
            s["max_thinking_tokens"] = self.max_thinking_tokens
        if self.temperature > 0:
            s["top_p"] = self.top_p
            if self.seed is not None:
                s["seed"] = self.seed
        return s

    def _load(self, image) -> LoadedImage:
        if isinstance(image, LoadedImage):
            return image
        if isinstance(image, (str, Path)):
            return load_image(image, max_pixels=self.max_image_pixels)
        return from_array(np.asarray(image))

    def _render(self, width: int, height: int) -> str:
        messages = diagnose_messages(width, height, self.prompt.version)
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _inputs(self, batch: list[LoadedImage]):
        texts = [self._render(im.width, im.height) + self._prompt_suffix for im in batch]
        pictures = [Image.fromarray(to_uint8(im.pixels)) for im in batch]
        size = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        return self.processor(text=texts, images=pictures, size=size, padding=True, return_tensors="pt")

    def _generate(self, inputs, max_new_tokens: int, *, eos_ids=None, suppress=None, **kwargs) -> torch.Tensor:
        """New tokens of each row (``pad_id`` after a row's stop); ``kwargs`` go to ``generate`` as they are."""
        config = copy.deepcopy(self.model.generation_config)
        sampling = self.temperature > 0
        config.update(
            do_sample=sampling,
            temperature=self.temperature if sampling else None,
            top_p=self.top_p if sampling else None,
            top_k=None,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_ids or self.eos_ids,
            pad_token_id=self.pad_id,
            suppress_tokens=suppress or None,
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            if sampling and self.seed is not None:
                torch.manual_seed(self.seed + self._calls)
            with torch.inference_mode():
                out = self.model.generate(**inputs, generation_config=config, **kwargs)
        return out[:, inputs["input_ids"].shape[1] :].cpu()

    def _diagnose_batch(self, batch: list[LoadedImage]) -> list[DiagnosisRecord]:
        t0 = time.perf_counter()
        self._calls += 1
        inputs = self._inputs(batch)
        thoughts: list[str | None] = [None] * len(batch)
        thinking_tokens = [0] * len(batch)
        if self.thinking:
            inputs, thoughts, thinking_tokens = self._think(inputs)
        processor = xgr.contrib.hf.LogitsProcessor(self._grammar)  # one per generate call: it holds matcher state
        out = self._generate(inputs, self.max_new_tokens, suppress=self._tag_ids, logits_processor=[processor])
        elapsed = (time.perf_counter() - t0) / len(batch)
        visual = inputs["image_grid_thw"].prod(-1) // self.processor.image_processor.merge_size**2
        records = []
        for i, image in enumerate(batch):
            ids, finished = self._until_eos(out[i])
            reply = self.tokenizer.decode(ids, skip_special_tokens=True)
            try:
                _, completion = parse_completion(reply)
            except CompletionError as e:
                if finished:
                    raise CompletionError(f"{_shown(image)}: {e}") from None
                raise CompletionError(
                    f"{_shown(image)}: the reply was cut off at max_new_tokens={self.max_new_tokens} before its JSON "
                    f"was complete; raise max_new_tokens (e.g. to {2 * self.max_new_tokens})"
                ) from None
            settings = {**self.settings(), "generated_tokens": len(ids), "visual_tokens": int(visual[i])}
            if self.thinking:
                settings["thinking_tokens"] = thinking_tokens[i]
            provenance = Provenance(
                backend=self.name,
                model_id=self.model_id,
                model_version=self.revision or getattr(self.model.config, "_commit_hash", None),
                rnr_version=rnr_version(),
                elapsed_s=elapsed,
                created_at=datetime.now(timezone.utc),
                settings=settings,
            )
            records.append(to_record(completion, image.info(), provenance, thoughts[i]))
        return records

    def _until_eos(self, row: torch.Tensor) -> tuple[list[int], bool]:
        """Generated ids up to the first stop or pad token (excluded), and whether one ended them."""
        ids = row.tolist()
        stops = {*self.eos_ids, self.pad_id}
        for n, t in enumerate(ids):
            if t in stops:
                return ids[:n], True
        return ids, False

    def _think(self, inputs):
        """Free-form thinking up to ``</think>``; returns the inputs extended by it and its closing, and the texts."""
        close = self._think_close_ids
        single = len(close) == 1  # Qwen3 vocabularies have it as one token; otherwise stop on the string
        if single:
            out = self._generate(inputs, self.max_thinking_tokens, eos_ids=self.eos_ids + close)
        else:
            out = self._generate(
                inputs, self.max_thinking_tokens, stop_strings=[THINK_CLOSE], tokenizer=self.tokenizer
            )
        rows, thoughts, counts = [], [], []
        for row in out:
            ids, _ = self._until_eos(row)  # a closing </think> is kept: it is not a stop token here
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            closed = THINK_CLOSE in text
            # Qwen's format is "<think>\n...\n</think>\n\n{answer}"; a thought cut by the budget is closed alike.
            suffix = "\n\n" if closed else "\n" + THINK_CLOSE + "\n\n"
            thoughts.append(text.split(THINK_CLOSE)[0].strip() or None)
            counts.append(len(ids))
            rows.append(ids + self.tokenizer.encode(suffix, add_special_tokens=False))
        return _extend(inputs, rows, self.pad_id), thoughts, counts


def diagnose_messages(width: int, height: int, prompt_version: str | None = None) -> list[dict]:
    """The chat messages of a diagnosis (system prompt; user turn with the image first, then the question).

    Shared with SFT and GRPO data so a fine-tuned model is trained on exactly the prompt it is served with; the
    image is a ``{"type": "image"}`` placeholder filled by the processor.
    """
    system, user = load_prompt("diagnose", prompt_version).render(width=width, height=height)
    return [
        {"role": "system", "content": [{"type": "text", "text": system}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user}]},
    ]


def _extend(inputs, rows: list[list[int]], pad_id: int):
    """``inputs`` with ``rows[i]`` appended to each prompt, re-padded on the left; images are unchanged."""
    mask = inputs["attention_mask"].bool()
    prompts = [inputs["input_ids"][i][mask[i]].tolist() for i in range(len(rows))]
    # mm_token_type_ids marks image positions for M-RoPE; appended text is type 0
    mm_types = inputs.get("mm_token_type_ids", torch.zeros_like(inputs["input_ids"]))
    types = [mm_types[i][mask[i]].tolist() for i in range(len(rows))]
    width = max(len(p) + len(r) for p, r in zip(prompts, rows, strict=True))
    ids, att, mm = [], [], []
    for prompt, kinds, row in zip(prompts, types, rows, strict=True):
        pad = width - len(prompt) - len(row)
        ids.append([pad_id] * pad + prompt + row)
        att.append([0] * pad + [1] * (len(prompt) + len(row)))
        mm.append([0] * pad + kinds + [0] * len(row))
    out = dict(inputs)
    out["input_ids"] = torch.tensor(ids, dtype=inputs["input_ids"].dtype)
    out["attention_mask"] = torch.tensor(att, dtype=inputs["attention_mask"].dtype)
    if "mm_token_type_ids" in inputs:
        out["mm_token_type_ids"] = torch.tensor(mm, dtype=inputs["mm_token_type_ids"].dtype)
    return out


def _shown(image: LoadedImage) -> str:
    return image.path or f"<array {image.width}x{image.height}>"


def _load(model_id: str, revision, dtype: str, device, attn_implementation, trust_remote_code: bool):
    """(processor, model) for a hub id or folder, with one-line errors for a missing folder or an unloadable model."""
    from reasoner.hf_processor import load_processor

    path = Path(model_id).expanduser()
    looks_local = path.exists() or model_id.startswith((".", "/", "~")) or model_id.count("/") > 1
    if looks_local and not path.is_dir():
        raise FileNotFoundError(
            f"model folder {model_id} does not exist; pass a Qwen3-VL checkpoint folder or a hub id such as "
            f"{DEFAULT_MODEL}"
        )
    if looks_local and not (path / "config.json").is_file():
        raise ValueError(f"model folder {model_id} has no config.json; pass a Qwen3-VL checkpoint folder")
    source = str(path) if looks_local else model_id
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    model_kwargs = {"dtype": dtype if dtype == "auto" else torch_dtype(dtype)}
    if attn_implementation:
        model_kwargs["attn_implementation"] = attn_implementation
    try:
        # The config first: it is small, and a folder or hub id without one fails here with the plainest message.
        transformers.AutoConfig.from_pretrained(source, **kwargs)
        processor = load_processor(source, **kwargs)
        model = transformers.AutoModelForImageTextToText.from_pretrained(source, **kwargs, **model_kwargs)
    except ImportError:
        raise
    except Exception as e:  # hub, file and config errors alike become one line naming the model
        raise ValueError(f"cannot load Qwen3-VL model {model_id!r}: {one_line(e, 300)}") from e
    if not hasattr(processor, "image_processor"):
        raise ValueError(f"cannot load Qwen3-VL model {model_id!r}: its processor has no image processor")
    return processor, model.to(device).eval()


def _compile_grammar(tokenizer, model, eos_ids: list[int]):
    """The completion schema as an xgrammar grammar for this tokenizer: compact JSON, as SFT targets are written."""
    vocab_size = model.get_output_embeddings().weight.shape[0]  # may exceed len(tokenizer) (padded lm_head)
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=eos_ids)
    # cache_enabled=False: a schema with several regex patterns crashed xgrammar 0.2.8's grammar cache.
    compiler = xgr.GrammarCompiler(info, cache_enabled=False)
    return compiler.compile_json_schema(
        json.dumps(completion_schema()), any_whitespace=False, strict_mode=True, separators=(",", ":")
    )
