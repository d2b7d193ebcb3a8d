"""The vllm-server reasoner (OpenAI-compatible client) against real servers on loopback.

The main server is ``transformers serve`` with the tiny random Qwen3-VL checkpoint: it decodes the image data URLs
with the checkpoint's processor but ignores ``response_format``, so its replies are gibberish, which is what the
"validate every reply, ask again, then fail clearly" path needs. A few lines of ``http.server`` stand in only where
a real server cannot be made to answer as needed on demand: a valid reply, and transient HTTP 503 / 429 answers.
"""

import base64
import contextlib
import inspect
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("openai")

from prompts import load_prompt  # noqa: E402
from reasoner.imageio import from_array, save_image  # noqa: E402
from reasoner.openai_client import (  # noqa: E402
    DEFAULT_BASE_URL,
    MAX_DELAY_S,
    OpenAIReasoner,
    ServerError,
    backoff_delay,
    resolve_api_key,
    resolve_base_url,
)
from reasoner.registry import load_reasoner  # noqa: E402
from reasoner.vlm_output import Completion, CompletionError, completion_json, completion_schema  # noqa: E402
from reasoner.vlm_request import (  # noqa: E402
    chat_messages,
    fit_side,
    image_data_url,
    public_url,
    structured_output_request,
)

ENV_KEYS = ("RNR_OPENAI_BASE_URL", "OPENAI_BASE_URL", "RNR_OPENAI_API_KEY", "OPENAI_API_KEY")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


# --- transformers serve ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_dir(tiny_vlm_dir, tmp_path_factory) -> Path:
    """A copy of the tiny checkpoint whose processor ``transformers serve`` can load without torchvision.

    The server resolves processors with ``AutoProcessor``, which for ``Qwen3VLProcessor`` insists on a video
    processor (torchvision). The standard way to hand a server another processor class is remote code:
    the image-only subclass written beside the weights and named in ``auto_map``.
    """
    from reasoner.hf_processor import Qwen3VLImageOnlyProcessor

    out = tmp_path_factory.mktemp("served") / "tiny-vlm"
    shutil.copytree(tiny_vlm_dir, out)
    source = "from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor\n\n\n"
    (out / "processing_image_only.py").write_text(source + inspect.getsource(Qwen3VLImageOnlyProcessor))
    config = json.loads((out / "processor_config.json").read_text())
    config["auto_map"] = {"AutoProcessor": "processing_image_only.Qwen3VLImageOnlyProcessor"}
    (out / "processor_config.json").write_text(json.dumps(config))
    return out


class Served:
    """A running ``transformers serve``: its URL, the model name it is pinned to, and its log."""

    def __init__(self, url: str, model: str, log: Path):
        self.url, self.model, self.log = url, model, log

    def requests(self) -> int:
        """Chat requests the server has received so far (it logs one line per request)."""
        return self.log.read_text(errors="replace").count("[Request received]")


@pytest.fixture(scope="module")
def served(served_dir, tmp_path_factory):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    cli = Path(sys.executable).with_name("transformers")
    if not cli.exists():
        pytest.skip("the transformers CLI is not installed in this environment")
    home = tmp_path_factory.mktemp("hf-home")
    (home / "hub").mkdir()  # /v1/models scans the hub cache and fails when the folder is missing
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    port = _free_port()
    log = home / "serve.log"
    cmd = [str(cli), "serve", str(served_dir), "--trust-remote-code", "--host", "127.0.0.1", "--port", str(port),
           "--device", "cpu", "--log-level", "info"]  # fmt: skip
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=home)
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not ready after 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield Served(f"http://127.0.0.1:{port}/v1", str(served_dir), log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.mark.slow
def test_invalid_replies_are_retried_then_fail_in_one_line(served, tmp_path):
    path = save_image(tmp_path / "street.png", _rgb(64, 48))
    before = served.requests()
    reasoner = OpenAIReasoner(served.model, base_url=served.url, max_tokens=24, invalid_retries=2, backoff=0.01)
    with pytest.raises(CompletionError) as err:
        reasoner.diagnose(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: 3 replies from")
    assert "does not honour structured output" in message
    # Every reply was read and judged; the server saw exactly the initial request and two retries.
    assert reasoner.stats == {"requests": 3, "retries": 0, "invalid_replies": 3}
    assert served.requests() - before == 3
    # The schema went out as response_format, and the server said it ignores it.
    assert "Ignoring unsupported fields in the request: {'response_format'}" in served.log.read_text()


@pytest.mark.slow
def test_server_decodes_the_data_url_images(served):
    # 32x32 pixels are one merged vision token for the tiny processor, 128x128 sixteen: with the same text, the
    # prompt grows by 15 tokens.
    import openai

    client = openai.OpenAI(base_url=served.url, api_key="EMPTY", max_retries=0)
    prompt, image = load_prompt("diagnose"), from_array(_rgb(32, 32))
    tokens = []
    for side in (32, 128):
        messages = chat_messages(prompt, image, image_data_url(_rgb(side, side)))
        reply = client.chat.completions.create(model=served.model, messages=messages, max_tokens=1)
        tokens.append(reply.usage.prompt_tokens)
    client.close()
    assert tokens[1] - tokens[0] == 15


@pytest.mark.slow
def test_diagnose_many_fails_naming_the_first_image(served, tmp_path):
    paths = [save_image(tmp_path / f"{i}.png", _rgb(40, 40, i)) for i in range(3)]
    reasoner = OpenAIReasoner(served.model, base_url=served.url, max_tokens=8, invalid_retries=0, concurrency=2)
    first = re.escape(str(paths[0]))
    with pytest.raises(CompletionError, match=f"^{first}: 1 reply from .* was not a valid completion"):
        reasoner.diagnose_many(paths)


@pytest.mark.slow
def test_empty_model_list_asks_for_a_model_name():
    # A server whose /v1/models lists nothing (built here: what a real server lists varies between releases).
    with scripted(models=[]) as srv, pytest.raises(ServerError, match=r"lists no models at /v1/models; pass model="):
        OpenAIReasoner(base_url=srv.url).diagnose(_rgb(32, 32))


@pytest.mark.slow
def test_refused_requests_are_not_retried(served):
    # Another model than the one the server is pinned to: HTTP 400, a client error, so no retry.
    reasoner = OpenAIReasoner("someone/else", base_url=served.url, backoff=0.01)
    with pytest.raises(ServerError, match=r"^<array>: .* refused the request \(HTTP 400: .*pinned"):
        reasoner.diagnose(_rgb(32, 32))
    assert reasoner.stats["requests"] == 1


@pytest.mark.slow
def test_structured_outputs_field_is_refused_with_a_hint(served):
    # vLLM's own field is unknown to transformers serve, which rejects unknown fields with HTTP 422.
    reasoner = OpenAIReasoner(served.model, base_url=served.url, structured="structured_outputs")
    with pytest.raises(ServerError, match=r"HTTP 422.*try structured='json_schema'"):
        reasoner.diagnose(_rgb(32, 32))


# --- a scripted server for what transformers serve cannot be made to do ------------------------------------------

VALID = Completion.model_validate(
    {
        "reasoning": [{"observation": "Grain in flat areas.", "inference": "Sensor noise.", "kinds": ["noise"]}],
        "degradations": {
            "haze": None,
            "rain": None,
            "motion_blur": None,
            "blur": None,
            "low_resolution": None,
            "low_light": None,
            "jpeg": None,
            "noise": {"severity": 0.4, "confidence": 0.9, "factors": {"sigma": 12.0, "model": "gaussian"}},
        },  # fmt: skip
        "semantics": {
            "description": "A test card.",
            "objects": ["card"],
            "faces": False,
            "text": False,
            "sky": False,
            "fine_texture": False,
        },  # fmt: skip
    }
)


class Scripted(ThreadingHTTPServer):
    """Answers ``/v1/models`` (listing ``models``) and ``/v1/chat/completions`` with a valid completion, after
    ``failures`` (HTTP statuses answered first, one per request), ``delay`` seconds per chat request; records bodies
    and concurrency."""

    daemon_threads = True

    def __init__(self, failures=(), delay=0.0, models=("tiny-happy",)):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.failures, self.delay, self.models = list(failures), delay, list(models)
        self.bodies, self.headers = [], []
        self.active = self.peak = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, payload: dict, headers=()):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "rnr"} for m in self.server.models]
        self._send(200, {"object": "list", "data": data})

    def do_POST(self):
        srv: Scripted = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.bodies.append(body)
            srv.headers.append({k.lower(): v for k, v in self.headers.items()})
            failure = srv.failures.pop(0) if srv.failures else None
            srv.active += 1
            srv.peak = max(srv.peak, srv.active)
        try:
            if failure is not None:
                self._send(failure, {"error": {"message": "busy"}}, [("Retry-After", "0")] if failure == 429 else [])
                return
            time.sleep(srv.delay)
            message = {"role": "assistant", "content": completion_json(VALID), "reasoning_content": "Looks grainy."}
            usage = {"prompt_tokens": 321, "completion_tokens": 123, "total_tokens": 444}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [choice], "usage": usage})  # fmt: skip
        finally:
            with srv.lock:
                srv.active -= 1


@contextlib.contextmanager
def scripted(**kwargs):
    srv = Scripted(**kwargs)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def test_valid_reply_becomes_a_record(monkeypatch):
    monkeypatch.setenv("RNR_OPENAI_API_KEY", "sk-secret")
    with scripted() as srv:
        port = srv.server_address[1]
        reasoner = load_reasoner("vllm-server", base_url=f"http://127.0.0.1:{port}", max_image_side=32)
        record = reasoner.diagnose(_rgb(48, 64))
    assert [d.kind for d in record.degradations] == ["noise"]
    assert record.thinking == "Looks grainy."
    prov = record.provenance
    assert (prov.backend, prov.model_id) == ("vllm-server", "tiny-happy")  # the first model the server lists
    assert prov.settings["base_url"] == f"http://127.0.0.1:{port}/v1"
    assert (prov.settings["prompt_tokens"], prov.settings["completion_tokens"]) == (321, 123)
    assert prov.settings["attempts"] == 1 and prov.elapsed_s > 0
    assert "sk-secret" not in record.model_dump_json()
    assert srv.headers[0]["authorization"] == "Bearer sk-secret"
    body = srv.bodies[0]
    assert body["response_format"]["json_schema"]["schema"] == completion_schema()
    assert (body["max_tokens"], body["temperature"]) == (1024, 0.0)
    url = body["messages"][1]["content"][0]["image_url"]["url"]
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (32, 24)  # max_image_side
    assert "64x48 pixels" in body["messages"][1]["content"][1]["text"]  # the prompt names the loaded size


def test_concurrency_is_bounded_and_order_kept():
    images = [_rgb(32, 16 + 8 * i, i) for i in range(6)]
    with scripted(delay=0.2) as srv:
        reasoner = OpenAIReasoner("tiny-happy", base_url=srv.url, concurrency=2)
        t0 = time.perf_counter()
        records = reasoner.diagnose_many(images)
        elapsed = time.perf_counter() - t0
    assert srv.peak == 2
    assert elapsed >= 3 * 0.2  # six requests two at a time
    assert [r.image.width for r in records] == [16 + 8 * i for i in range(6)]


def test_transient_http_errors_are_retried_with_back_off():
    with scripted(failures=[503, 429]) as srv:
        reasoner = OpenAIReasoner("tiny-happy", base_url=srv.url, backoff=0.01)
        record = reasoner.diagnose(_rgb(32, 32))
    assert record.degradations[0].kind == "noise"
    assert reasoner.stats == {"requests": 3, "retries": 2, "invalid_replies": 0}


def test_persistent_http_errors_give_up_after_max_retries():
    with scripted(failures=[503] * 10) as srv:
        reasoner = OpenAIReasoner("tiny-happy", base_url=srv.url, backoff=0.01, max_retries=2)
        with pytest.raises(ServerError, match=r"failed 3 attempts \(last: HTTP 503: .*busy"):
            reasoner.diagnose(_rgb(32, 32))
    assert len(srv.bodies) == 3


# --- no server, or one that never answers ------------------------------------------------------------------------


def test_server_down_is_retried_with_back_off_then_one_line():
    port = _free_port()  # nothing listens there: connection refused
    reasoner = OpenAIReasoner("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=3, backoff=0.05)
    t0 = time.perf_counter()
    with pytest.raises(ServerError) as err:
        reasoner.diagnose(_rgb(32, 32))
    elapsed = time.perf_counter() - t0
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"<array>: the model server at http://127.0.0.1:{port}/v1 failed 4 attempts")
    assert "RNR_OPENAI_BASE_URL" in message
    assert reasoner.stats == {"requests": 4, "retries": 3, "invalid_replies": 0}
    assert elapsed >= 0.05 * (1 + 2 + 4)  # exponential back-off between the four attempts


def test_timeout_is_retried_then_one_line():
    # A socket that listens but never accepts: the connection opens (kernel backlog), no answer ever comes.
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}/v1"
        reasoner = OpenAIReasoner("m", base_url=url, timeout=0.3, max_retries=1, backoff=0.01)
        t0 = time.perf_counter()
        with pytest.raises(ServerError, match=r"failed 2 attempts \(last: no answer within 0.3 s\); raise timeout="):
            reasoner.diagnose(_rgb(32, 32))
        assert 0.6 <= time.perf_counter() - t0 < 10


# --- pure parts ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "env", "expected"),
    [
        (None, {}, DEFAULT_BASE_URL),  # vLLM's default address
        (None, {"OPENAI_BASE_URL": "http://a:1/v1"}, "http://a:1/v1"),
        (None, {"OPENAI_BASE_URL": "http://a:1/v1", "RNR_OPENAI_BASE_URL": "http://b:2/v1/"}, "http://b:2/v1"),
        ("http://c:3", {"RNR_OPENAI_BASE_URL": "http://b:2/v1"}, "http://c:3/v1"),  # argument wins; /v1 added
        ("https://gpu.example.org/serve/v1", {}, "https://gpu.example.org/serve/v1"),  # a path is kept as given
    ],
)
def test_base_url_resolution(monkeypatch, arg, env, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert resolve_base_url(arg) == expected


def test_bad_base_url_is_one_line():
    with pytest.raises(ValueError, match="is not an http"):
        resolve_base_url("localhost:8000")


def test_api_key_resolution(monkeypatch):
    assert resolve_api_key() == "EMPTY"  # vLLM's convention for a server without --api-key
    monkeypatch.setenv("OPENAI_API_KEY", "o")
    assert resolve_api_key() == "o"
    monkeypatch.setenv("RNR_OPENAI_API_KEY", "r")
    assert resolve_api_key() == "r"
    assert resolve_api_key("a") == "a"


def test_public_url_drops_credentials():
    assert public_url("http://user:pw@host:8000/v1/?key=1#x") == "http://host:8000/v1"


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_data_url_round_trip(fmt):
    pixels = _rgb(20, 30)
    url = image_data_url(pixels, fmt=fmt)
    head, data = url.split(",", 1)
    assert head == f"data:image/{fmt};base64"
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    assert decoded.shape == (20, 30, 3)
    if fmt == "png":  # lossless: the pixels the model sees are the pixels loaded
        assert np.array_equal(decoded, fit_side(pixels, None))


def test_fit_side_keeps_aspect_and_small_images():
    assert fit_side(_rgb(100, 50), 40).shape == (40, 20, 3)
    assert fit_side(_rgb(10, 20), 40).shape == (10, 20, 3)
    with pytest.raises(ValueError, match="format 'gif'"):
        image_data_url(_rgb(4, 4), fmt="gif")


def test_chat_messages_layout():
    image = from_array(_rgb(48, 64))
    system, user = load_prompt("diagnose").render(width=64, height=48)
    messages = chat_messages(load_prompt("diagnose"), image, "data:image/png;base64,AAAA")
    assert messages == [
        {"role": "system", "content": system},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": user},
            ],
        },  # fmt: skip
    ]


def test_structured_output_modes():
    schema = completion_schema()
    assert structured_output_request("json_schema")["response_format"]["json_schema"]["schema"] == schema
    vllm_field = structured_output_request("structured_outputs")["extra_body"]["structured_outputs"]
    assert vllm_field == {"json": schema, "disable_any_whitespace": True}
    assert structured_output_request("none") == {}
    with pytest.raises(ValueError, match="structured='guided_json' is not supported"):
        structured_output_request("guided_json")
    with pytest.raises(ValueError, match="structured='guided_json' is not supported"):
        OpenAIReasoner("m", structured="guided_json")


def test_backoff_delay_doubles_and_is_capped():
    assert 0.1 <= backoff_delay(0, 0.1) <= 0.125
    assert 0.4 <= backoff_delay(2, 0.1) <= 0.5
    assert backoff_delay(30, 1.0) == MAX_DELAY_S
    assert backoff_delay(0, 0.1, retry_after=2.0) == 2.0  # a server's Retry-After wins when longer
