"""The ``vllm-server`` reasoner: a client for a vision-language model served behind an OpenAI-compatible API.

Made for ``vllm serve MODEL`` (vLLM >= 0.12) and usable with any server that speaks ``/v1/chat/completions`` and
accepts image data URLs. Each image goes out as one chat request (system prompt, image, user prompt) that asks for
output following :func:`reasoner.vlm_output.completion_schema`; every reply is validated all the same, because
servers differ in whether they honour that request (``transformers serve`` ignores it). Invalid replies are asked
again a bounded number of times, then fail with one line naming the image.

Configuration, arguments first, then the environment:

- base URL: ``base_url``, ``RNR_OPENAI_BASE_URL``, ``OPENAI_BASE_URL``, else ``http://localhost:8000/v1`` (vLLM's
  default); a URL without a path gets ``/v1``.
- API key: ``api_key``, ``RNR_OPENAI_API_KEY``, ``OPENAI_API_KEY``, else ``EMPTY`` (vLLM's convention for a
  server started without ``--api-key``). The key is never recorded.
- model: ``model`` (the served model name: the ``vllm serve`` argument, or ``--served-model-name``), else the
  first entry of the server's ``/v1/models``.

The ``openai`` client does the HTTP with its own retries switched off: this module retries connection errors,
timeouts, HTTP 429 and 5xx itself, with exponential back-off (honouring ``Retry-After``), so that retries of
transport failures and of invalid replies share one bounded, counted policy.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from prompts import load_prompt
from reasoner.common import one_line
from reasoner.imageio import LoadedImage
from reasoner.schema import DiagnosisRecord
from reasoner.vlm_output import CompletionError, completion_schema, split_thinking
from reasoner.vlm_request import (
    IMAGE_FORMATS,
    STRUCTURED_MODES,
    as_loaded,
    chat_messages,
    image_data_url,
    image_name,
    make_provenance,
    public_url,
    record_from_reply,
    structured_output_request,
)

try:
    import openai
except ImportError:  # the constructor says how to install it
    openai = None

DEFAULT_BASE_URL = "http://localhost:8000/v1"
BASE_URL_ENV = ("RNR_OPENAI_BASE_URL", "OPENAI_BASE_URL")
API_KEY_ENV = ("RNR_OPENAI_API_KEY", "OPENAI_API_KEY")
#: HTTP statuses worth asking again: rate limiting, and server-side failures that are often transient.
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
#: Longest single back-off wait, seconds (also caps a server's Retry-After).
MAX_DELAY_S = 30.0


class ServerError(RuntimeError):
    """The model server could not be reached or refused a request; the message is one line naming the fix."""


def resolve_base_url(base_url: str | None = None) -> str:
    """The server's API base URL from the argument, ``RNR_OPENAI_BASE_URL``, ``OPENAI_BASE_URL`` or the default."""
    url = base_url or next((os.environ[k] for k in BASE_URL_ENV if os.environ.get(k, "").strip()), DEFAULT_BASE_URL)
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"model server URL {url!r} is not an http(s) URL; pass e.g. base_url='{DEFAULT_BASE_URL}'")
    if not parts.path:
        url = urlunsplit((parts.scheme, parts.netloc, "/v1", parts.query, ""))
    return url


def resolve_api_key(api_key: str | None = None) -> str:
    """The API key from the argument, ``RNR_OPENAI_API_KEY``, ``OPENAI_API_KEY``, else ``"EMPTY"``."""
    return api_key or next((os.environ[k] for k in API_KEY_ENV if os.environ.get(k, "").strip()), "EMPTY")


def backoff_delay(attempt: int, backoff: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    ``backoff * 2**attempt`` plus up to 25% jitter (so that concurrent clients do not retry in step), or the
    server's ``Retry-After`` when longer; at most :data:`MAX_DELAY_S`.

    >>> backoff_delay(0, 1.0) >= 1.0, backoff_delay(3, 1.0) >= 8.0, backoff_delay(20, 1.0)
    (True, True, 30.0)
    """
    delay = backoff * (2**attempt) * (1.0 + 0.25 * random.random())
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, MAX_DELAY_S)


def _status_detail(err) -> str:
    # Servers word errors as OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, a bare {"message"} or
    # {"error": "..."}; else the body text will do.
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        found = inner.get("message") if isinstance(inner, dict) else inner
        found = found or body.get("detail") or body.get("message")
        if found:
            return one_line(found if isinstance(found, str) else json.dumps(found), 200)
    response = getattr(err, "response", None)
    text = getattr(response, "text", "") if response is not None else ""
    return one_line(text or getattr(err, "message", "") or type(err).__name__, 200)


def _retry_after(err: Exception) -> float | None:
    response = getattr(err, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date; rare enough to fall back to our own back-off
        return None


class OpenAIReasoner:
    """Diagnose images with a vision-language model behind an OpenAI-compatible server (``vllm serve``).

    Args:
        model: Served model name; default: the first model the server lists at ``/v1/models``.
        base_url: API base URL (see the module docstring for the environment variables).
        api_key: API key (idem).
        timeout: Seconds to wait for one HTTP request, connection included.
        max_retries: Retries of one request after a connection error, a timeout, HTTP 429 or 5xx.
        backoff: First back-off wait in seconds; doubles with each retry.
        concurrency: Requests in flight at once in :meth:`diagnose_many`.
        max_tokens: Most tokens the model may write per reply.
        temperature: Sampling temperature (0 is greedy).
        prompt_version: Version of the ``diagnose`` prompt (default: the newest).
        max_image_side: Shrink images so the longer side is at most this many pixels before sending; default: send
            them as loaded (the model's processor resizes them anyway, at the cost of a bigger request).
        structured: How to ask for schema-following output, one of ``json_schema`` (OpenAI ``response_format``),
            ``structured_outputs`` (vLLM's own field) or ``none``.
        invalid_retries: How many times to ask again after a reply that is not a valid completion.
        image_format: ``png`` (lossless, default) or ``jpeg`` for the data URLs.
        max_pixels: Refuse image files with more pixels than this (decompression-bomb guard).

    """

    name = "vllm-server"

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 1.0,
        concurrency: int = 4,
        max_tokens: int = 1024,
        temperature: float = 0.0,
        prompt_version: str | None = None,
        max_image_side: int | None = None,
        structured: str = "json_schema",
        invalid_retries: int = 2,
        image_format: str = "png",
        max_pixels: int | None = None,
    ):
        if openai is None:
            raise ImportError(
                "the vllm-server reasoner needs the openai package; install with: pip install 'reason-restore[client]'"
            )
        if structured not in STRUCTURED_MODES:
            raise ValueError(f"structured={structured!r} is not supported; choose one of {list(STRUCTURED_MODES)}")
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format={image_format!r} is not supported; choose one of {list(IMAGE_FORMATS)}")
        bounds = {
            "timeout": (timeout, 1e-3),
            "concurrency": (concurrency, 1),
            "max_tokens": (max_tokens, 1),
            "max_retries": (max_retries, 0),
            "invalid_retries": (invalid_retries, 0),
            "backoff": (backoff, 0),
        }
        for what, (value, low) in bounds.items():
            if value < low:
                raise ValueError(f"{what}={value} must be at least {low}")
        self.base_url = resolve_base_url(base_url)
        self.model = model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.concurrency = int(concurrency)
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.prompt = load_prompt("diagnose", prompt_version)
        self.max_image_side = max_image_side
        self.structured = structured
        self.invalid_retries = int(invalid_retries)
        self.image_format = image_format
        self.max_pixels = max_pixels
        self._schema_request = structured_output_request(structured, completion_schema())
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=resolve_api_key(api_key), timeout=self.timeout, max_retries=0
        )
        self._lock = threading.Lock()
        self._stats = {"requests": 0, "retries": 0, "invalid_replies": 0}

    @property
    def stats(self) -> dict[str, int]:
        """Counters since construction: HTTP ``requests`` sent, transport ``retries``, ``invalid_replies``."""
        with self._lock:
            return dict(self._stats)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> OpenAIReasoner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def model_name(self) -> str:
        """The served model name: the one given, else the first entry of ``/v1/models`` (asked once)."""
        with self._lock:
            if self.model:
                return self.model
        listed = self._request("listing models", lambda: self._client.models.list())
        ids = [m.id for m in getattr(listed, "data", None) or []]
        if not ids:
            raise ServerError(
                f"the model server at {public_url(self.base_url)} lists no models at /v1/models; pass model= (the "
                "served model name)"
            )
        with self._lock:
            self.model = self.model or ids[0]
            return self.model

    def diagnose(self, image: LoadedImage | np.ndarray | str | Path) -> DiagnosisRecord:
        """Diagnose one image: a loaded image, a path, or a ``float32 HxWx3 RGB in [0, 1]`` / uint8 array.

        Raises:
            ServerError: The server cannot be reached, times out, or refuses the request (after retries).
            CompletionError: Every reply, retries included, was not a valid completion.

        """
        image = as_loaded(image, self.max_pixels)
        t0 = time.perf_counter()
        name = image_name(image)
        model = self.model_name()
        messages = chat_messages(
            self.prompt, image, image_data_url(image.pixels, fmt=self.image_format, max_side=self.max_image_side)
        )
        error, cut = "", False
        for attempt in range(self.invalid_retries + 1):
            reply = self._request(name, lambda: self._create(model, messages))
            choice = reply.choices[0] if reply.choices else None
            message = choice.message if choice is not None else None
            text = (message.content if message is not None else None) or ""
            thinking = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
            usage = reply.usage
            settings = {
                "base_url": public_url(self.base_url),
                "structured": self.structured,
                "prompt": self.prompt.id,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "max_image_side": self.max_image_side,
                "image_format": self.image_format,
                "attempts": attempt + 1,
                "prompt_tokens": getattr(usage, "prompt_tokens", None),
                "completion_tokens": getattr(usage, "completion_tokens", None),
                "finish_reason": getattr(choice, "finish_reason", None),
            }
            try:
                provenance = make_provenance(
                    self.name, model, time.perf_counter() - t0, settings, getattr(reply, "system_fingerprint", None)
                )
                return record_from_reply(text, image, provenance, thinking if isinstance(thinking, str) else None)
            except CompletionError as e:
                with self._lock:
                    self._stats["invalid_replies"] += 1
                # A schema-following reply cut short is still the start of a JSON object; anything else means the
                # server let the model write freely.
                cut = getattr(choice, "finish_reason", None) == "length" and split_thinking(text)[1].startswith("{")
                error = str(e)
        tries = self.invalid_retries + 1
        if cut:
            hint = f"the last reply was cut at max_tokens={self.max_tokens}; raise max_tokens"
        elif self.structured == "none":
            hint = "structured output was not requested (structured='none'); use structured='json_schema'"
        else:
            hint = (
                f"the server does not honour structured output (structured={self.structured!r}); serve the model "
                "with vLLM >= 0.12 (vllm serve) or another server that enforces JSON schemas"
            )
        replies = "1 reply" if tries == 1 else f"{tries} replies"
        were = "was not a valid completion" if tries == 1 else "were not valid completions"
        raise CompletionError(
            f"{name}: {replies} from {model!r} at {public_url(self.base_url)} {were} (last: {error}); {hint}"
        )

    def diagnose_many(self, images) -> list[DiagnosisRecord]:
        """Diagnose several images, at most ``concurrency`` requests in flight; results in input order.

        The first failure (in input order) is raised once the requests already running have finished; images not
        started yet are skipped.
        """
        images = list(images)
        if len(images) <= 1 or self.concurrency == 1:
            return [self.diagnose(im) for im in images]
        self.model_name()  # once, before the workers all ask for it
        with ThreadPoolExecutor(min(self.concurrency, len(images)), thread_name_prefix="rnr-vllm-server") as pool:
            futures = [pool.submit(self.diagnose, im) for im in images]
            try:
                return [f.result() for f in futures]
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    def _create(self, model: str, messages: list[dict]):
        return self._client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            **self._schema_request,
        )

    def _request(self, what: str, send):
        """``send()`` with bounded retries on connection errors, timeouts, HTTP 429 and 5xx; one-line errors."""
        url = public_url(self.base_url)
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self._stats["requests"] += 1
            try:
                return send()
            except openai.APIStatusError as e:
                status, detail = e.status_code, _status_detail(e)
                if status not in RETRY_STATUS:
                    raise ServerError(f"{what}: the model server at {url} refused the request (HTTP {status}: "
                                      f"{detail}){self._status_hint(status)}") from None  # fmt: skip
                last = f"HTTP {status}: {detail}"
                wait = backoff_delay(attempt, self.backoff, _retry_after(e))
            except openai.APITimeoutError:
                last = f"no answer within {self.timeout:g} s"
                wait = backoff_delay(attempt, self.backoff)
            except openai.APIConnectionError as e:
                cause = e.__cause__ or e
                last = one_line(cause, 200, with_type=True)
                wait = backoff_delay(attempt, self.backoff)
            if attempt < self.max_retries:
                with self._lock:
                    self._stats["retries"] += 1
                time.sleep(wait)
        tries = self.max_retries + 1
        if last.startswith("no answer"):
            fix = "raise timeout= or check that the server is not overloaded"
        elif last.startswith("HTTP"):
            fix = "check the server's log"
        else:
            fix = "start it (vllm serve MODEL) or set RNR_OPENAI_BASE_URL"
        raise ServerError(f"{what}: the model server at {url} failed {tries} attempts (last: {last}); {fix}")

    def _status_hint(self, status: int) -> str:
        if status in (401, 403):
            return "; set RNR_OPENAI_API_KEY to the server's key"
        if status == 404:
            return f"; check that the server serves {self.model!r} (see /v1/models) at this base URL"
        if status in (400, 422) and self.structured == "structured_outputs":
            return "; the server may not know vLLM's structured_outputs field: try structured='json_schema'"
        return ""
