"""Requests to a vision-language reasoner behind an OpenAI-style chat API, and records from its replies.

Pure functions shared by the served-model client (``reasoner.openai_client``) and the offline vLLM engine
(``reasoner.vllm_backend``): both send the same chat messages (system prompt, then the image as a data URL and the
user prompt) and ask for the same JSON Schema, so a model answers alike whichever way it is run. Imports only
numpy, OpenCV and PIL (base dependencies), never a model library.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np
from PIL import Image

from prompts import Prompt
from reasoner.imageio import LoadedImage, from_array, load_image, to_uint8
from reasoner.schema import DiagnosisRecord, Provenance
from reasoner.version import rnr_version
from reasoner.vlm_output import completion_schema, parse_completion, to_record

#: How to ask a server for schema-following output:
#: ``json_schema`` is OpenAI's ``response_format`` (vLLM >= 0.12, SGLang, llama.cpp, OpenAI itself);
#: ``structured_outputs`` is vLLM's own request field (vLLM >= 0.12; other servers may reject the unknown field);
#: ``none`` sends no constraint and relies on validation alone.
STRUCTURED_MODES = ("json_schema", "structured_outputs", "none")
IMAGE_FORMATS = ("png", "jpeg")
SCHEMA_NAME = "rnr_diagnosis_completion"


def as_loaded(image: LoadedImage | np.ndarray | str | Path, max_pixels: int | None = None) -> LoadedImage:
    """A ``LoadedImage`` from a loaded image, a path, or an RGB array (``float32 HxWx3 in [0, 1]`` or uint8)."""
    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, (str, Path)):
        return load_image(image, max_pixels=max_pixels)
    return from_array(np.asarray(image))


def image_name(image: LoadedImage) -> str:
    """How errors name an image: its path, or ``<array>`` for one built in memory."""
    return image.path or "<array>"


def fit_side(pixels: np.ndarray, max_side: int | None) -> np.ndarray:
    """``uint8 HxWx3`` pixels, shrunk (area interpolation) so the longer side is at most ``max_side`` if given."""
    a = to_uint8(pixels)
    h, w = a.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return a
    if max_side < 1:
        raise ValueError(f"max_image_side={max_side} must be a positive number of pixels")
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(a, size, interpolation=cv2.INTER_AREA)


def image_data_url(pixels: np.ndarray, *, fmt: str = "png", max_side: int | None = None) -> str:
    """Encode ``float32 HxWx3 RGB in [0, 1]`` (or uint8) pixels as a ``data:image/...;base64,`` URL.

    PNG is the default because it is lossless: re-encoding as JPEG would add the very block artefacts and
    smoothing the model is asked to detect. JPEG (quality 95) is for servers or links where size matters.
    """
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"image format {fmt!r} is not supported; choose one of {list(IMAGE_FORMATS)}")
    buf = io.BytesIO()
    im = Image.fromarray(fit_side(pixels, max_side), "RGB")
    if fmt == "png":
        im.save(buf, "PNG", compress_level=1)  # speed over size: the bytes only cross a socket
    else:
        im.save(buf, "JPEG", quality=95, subsampling=0)
    return f"data:image/{fmt};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def chat_messages(prompt: Prompt, image: LoadedImage, data_url: str) -> list[dict]:
    """OpenAI-format chat messages: the system prompt, then the image and the user prompt.

    The image comes before the text, as Qwen-VL models are trained. The prompt states the size of the image as
    loaded, whatever size was sent.
    """
    system, user = prompt.render(width=image.width, height=image.height)
    return [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": data_url}}, {"type": "text", "text": user}],
        },
    ]


def structured_output_request(mode: str, schema: dict | None = None) -> dict:
    """Keyword arguments for ``client.chat.completions.create`` that ask for output following ``schema``.

    Args:
        mode: One of :data:`STRUCTURED_MODES`.
        schema: A JSON Schema (default: :func:`reasoner.vlm_output.completion_schema`).

    Returns:
        ``{"response_format": ...}``, ``{"extra_body": {"structured_outputs": ...}}`` or ``{}``.

    """
    if mode not in STRUCTURED_MODES:
        raise ValueError(f"structured={mode!r} is not supported; choose one of {list(STRUCTURED_MODES)}")
    schema = completion_schema() if schema is None else schema
    if mode == "json_schema":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": SCHEMA_NAME, "schema": schema, "strict": True},
            }
        }
    if mode == "structured_outputs":
        return {"extra_body": {"structured_outputs": structured_outputs_fields(schema)}}
    return {}


def structured_outputs_fields(schema: dict | None = None) -> dict:
    """The structured-output fields vLLM (>= 0.12; ``guided_json`` is gone) takes for ``schema``.

    Online they form the request's ``structured_outputs`` object, offline the arguments of
    ``vllm.sampling_params.StructuredOutputsParams``.
    """
    # Without disable_any_whitespace the grammar admits whitespace between tokens, and a weak model can emit it
    # until max_tokens runs out.
    return {"json": completion_schema() if schema is None else schema, "disable_any_whitespace": True}


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment, safe to record (keys sometimes travel in URLs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def make_provenance(
    backend: str,
    model_id: str | None,
    elapsed_s: float,
    settings: dict[str, str | int | float | bool | None],
    model_version: str | None = None,
) -> Provenance:
    """Provenance for a model-backed record; ``None`` settings are left out, strings clipped to 512 characters."""
    clean = {k: (v[:512] if isinstance(v, str) else v) for k, v in settings.items() if v is not None}
    return Provenance(
        backend=backend,
        model_id=model_id[-512:] if model_id else None,
        model_version=model_version[:128] if model_version else None,
        rnr_version=rnr_version(),
        elapsed_s=max(0.0, elapsed_s),
        created_at=datetime.now(timezone.utc),
        settings=clean,
    )


def record_from_reply(
    text: str, image: LoadedImage, provenance: Provenance, thinking: str | None = None
) -> DiagnosisRecord:
    """Validate a reply and build the record; ``CompletionError`` (one line) for an invalid reply.

    ``thinking`` (a server's separate reasoning field) is used when the reply carries none itself.
    """
    own, completion = parse_completion(text or "")
    return to_record(completion, image.info(), provenance, own or (thinking.strip() if thinking else None))
