"""``rnr ui``: a local web page that runs one image through the graph and lets a person review the diagnosis.

Open or drop an image, press Diagnose: each node's result appears as it completes (reasoning steps, the record with
severity bars, references with scores). The graph then stops at its ``review`` node (a LangGraph interrupt on a
SQLite checkpointer); the person edits the diagnosis table and presses Restore, which resumes the same thread with
``Command(resume=record)``: plan, attempts, before/after and severities stream in, with the trace JSON and the
restored image to download. Nothing here restores on its own: it drives :func:`agent.run.stream_run`.

What the port serves is only what a run made for the page that started it. The work folder is split in two: a
``private`` part (the checkpoint database, each thread's work arrays), never served and listed in Gradio's
``blocked_paths``, and a ``served`` part with one folder per run under an unguessable name (restored image, trace,
before-preview). Gradio copies those into its upload cache under keyed hashes before the page sees a link; the
file route refuses folders, so neither part can be listed. Requests a page on another site sends (an ``Origin`` or
``Referer`` that is not this server, or, on loopback, a ``Host`` that is not a loopback name) get 403 from
:class:`SameOriginOnly`. Uploads are refused on their header alone when they declare more pixels than the limit.

Gradio is imported here, so import this module only when the UI is wanted (the CLI does it inside the command).
The page works offline: system fonts only, analytics off, no share link.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import ipaddress
import os
import secrets
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import gradio as gr  # noqa: E402

from agent import ui_render as R  # noqa: E402
from agent.backends import Backends  # noqa: E402
from agent.checkpoint import sqlite_checkpointer  # noqa: E402
from agent.graph import final_pixels, finish_trace  # noqa: E402
from agent.run import INTERRUPT, stream_run, thread_state  # noqa: E402
from agent.state import Context, Settings  # noqa: E402
from reasoner.imageio import ImageLoadError, PixelLimit, load_image, resolve_max_pixels, save_image  # noqa: E402

#: Backends without a default model: the page asks for a model id or folder before loading them.
NEEDS_MODEL = frozenset({"vllm", "diffusion"})


def backend_status(registry: dict[str, str]) -> dict[str, list[str]]:
    """For each registry name, the third-party modules its backend imports that are not installed ([] = usable).

    Reads the backend module's source instead of importing it: importing transformers or diffusers to fill a
    dropdown would cost seconds at every start, and a missing extra is all the page needs to know.
    """
    out = {}
    for name, target in registry.items():
        spec = _find(target.partition(":")[0])
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            out[name] = [target]
            continue
        tops = set()
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            if isinstance(node, ast.Import):
                tops |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
        tops -= set(sys.stdlib_module_names) | {"__future__"}
        out[name] = sorted(t for t in tops if _find(t) is None)
    return out


def _find(module: str):
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a missing parent package
        return None


def image_error(path: str | None, max_pixels: int | None = None) -> str | None:
    """A one-line message when ``path`` is not an image rnr can use (None when it is), naming the file.

    An image whose header declares more than ``max_pixels`` is refused before anything is decoded, and the
    message names the limit and where it came from; FIFOs and devices are refused on ``stat`` alone.
    """
    if not path:
        return "No image yet: open or drop an image file first."
    try:
        load_image(path, max_pixels=max_pixels)
    except ImageLoadError as e:
        return f"{Path(path).name} cannot be used: {e.reason}"
    except OSError as e:
        return f"{Path(path).name} cannot be read: {e.strerror or e}"
    return None


class UIRuns:
    """The server side of the page: one checkpoint database, loaded backends, and two folders per run.

    ``private/`` holds the checkpoint database and each thread's work arrays and is never served; ``served/<token>/``
    holds what one run hands its page (restored image, trace, before-preview), under a name nobody can guess.
    """

    def __init__(self, work_root: str | Path, index: str | None = None, max_pixels: int | None = None) -> None:
        self.work_root = Path(work_root).resolve()  # Gradio wants absolute allowed/blocked paths
        self.private = self.work_root / "private"
        self.served = self.work_root / "served"
        for d in (self.private, self.served):  # other local accounts have no business here either
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.index = index
        self.max_pixels = (
            max_pixels if isinstance(max_pixels, PixelLimit) else resolve_max_pixels(max_pixels, "restore")
        )  # a PixelLimit from the command line keeps where it came from, for the refusal to say
        self.saver = sqlite_checkpointer(self.private / "checkpoints.sqlite")
        self._contexts: dict[tuple, Context] = {}
        self._lock = threading.Lock()

    def context(self, reasoner, reasoner_model, scorer, scorer_model, restorer, restorer_model, index, attempts):
        """Backends for these choices, loaded once and kept (a model takes long to load), with review switched on.

        Returns the cache key too: a page session keeps the key, not the backends, in its state.
        """
        backends = Backends.of(reasoner, scorer, restorer, index or None, reasoner_model=reasoner_model,
                               scorer_model=scorer_model, restorer_model=restorer_model)  # fmt: skip
        settings = Settings(max_attempts=int(attempts))
        key = (backends.key(), settings.model_dump_json())
        with self._lock:
            if key not in self._contexts:
                ctx = backends.load(settings, max_pixels=self.max_pixels)
                self._contexts[key] = dataclasses.replace(ctx, review=True)
            return key, self._contexts[key]

    def new_session(self, path: str, ctx_key: tuple) -> dict:
        """A run's page state: a fresh thread working in ``private/`` and a fresh unguessable ``served/`` folder.

        The served folder's name is a random 128-bit token, unrelated to the thread id (which the checkpoint
        database and the work folder hold): knowing one's own links says nothing about another run's.
        """
        thread = uuid.uuid4().hex
        return {"thread": thread, "input": path, "name": Path(path).name, "work": str(self.private / thread),
                "out": str(self.served / secrets.token_hex(16)), "ctx": ctx_key}  # fmt: skip

    def export(self, session: dict) -> tuple[Path, Path, Path, object]:
        """Write the restored image, its trace (atomically) and the before-preview into the run's served folder."""
        state = thread_state(self.saver, session["thread"])
        out = Path(session["out"])
        out.mkdir(mode=0o700, exist_ok=True)
        stem = Path(session["name"]).stem or "image"
        t0 = time.perf_counter()
        image = save_image(out / f"{stem}_restored.png", final_pixels(state))
        trace = finish_trace(state.trace, str(image), time.perf_counter() - t0)
        trace_path = out / f"{stem}.trace.json"
        tmp = trace_path.with_name(f".{trace_path.name}.tmp")
        tmp.write_text(trace.model_dump_json(indent=2))
        tmp.replace(trace_path)
        before = out / "input_preview.png"
        if not before.exists():
            import numpy as np

            save_image(before, np.load(state.input_npy))
        return image, trace_path, before, trace


def build_app(runs: UIRuns) -> gr.Blocks:
    """The page. Components carry ``elem_id``s (``rnr-*``) so browser tests and custom CSS can find them."""
    from reasoner.registry import REASONERS
    from restorer.base import RESTORERS

    rs_status, rt_status = backend_status(REASONERS), backend_status(RESTORERS)
    reasoners = [n for n, miss in rs_status.items() if not miss]
    restorers = [n for n, miss in rt_status.items() if not miss]
    missing = [f"{n} (needs {', '.join(m)})" for n, m in {**rs_status, **rt_status}.items() if m]

    with gr.Blocks(title="reason-restore", analytics_enabled=False) as app:
        session = gr.State(None)
        gr.HTML(f"<style>{R.STYLE}</style><h2>reason-restore</h2><p class='rnr-note'>Diagnose an image, review the "
                "diagnosis, then restore it. Runs locally; nothing leaves this machine.</p>")  # fmt: skip
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Image (open or drop)", file_count="single", type="filepath",
                                 elem_id="rnr-upload")  # fmt: skip
                preview = gr.Image(label="Input", interactive=False, elem_id="rnr-preview", height=260)
                with gr.Accordion("Backends", open=False):
                    reasoner = gr.Dropdown(reasoners, value="measure", label="Reasoner", elem_id="rnr-reasoner")
                    reasoner_model = gr.Textbox(label="Reasoner model (id or folder; model backends only)")
                    scorer = gr.Dropdown(reasoners, value="measure", label="Scorer", elem_id="rnr-scorer")
                    scorer_model = gr.Textbox(label="Scorer model (id or folder; model backends only)")
                    restorer = gr.Dropdown(restorers, value="classical", label="Restorer", elem_id="rnr-restorer")
                    restorer_model = gr.Textbox(label="Restorer model (pipeline id or folder; model backends only)")
                    index = gr.Textbox(runs.index or "", label="Reference library folder (empty: none)")
                    attempts = gr.Slider(1, 10, value=3, step=1, label="Max attempts")
                    if missing:
                        gr.HTML(f"<p class='rnr-note'>Not installed here: {R.esc('; '.join(missing))}</p>")
                review_on = gr.Checkbox(True, label="Let me review the diagnosis before restoring")
                run_btn = gr.Button("Diagnose", variant="primary", elem_id="rnr-run")
                status = gr.HTML("", elem_id="rnr-status")
            with gr.Column(scale=2):
                with gr.Accordion("Reasoning steps", open=True):
                    steps = gr.HTML("", elem_id="rnr-steps")
                record = gr.HTML("", elem_id="rnr-record")
                with gr.Accordion("References", open=True):
                    refs = gr.HTML("", elem_id="rnr-refs")
                with gr.Group(visible=False, elem_id="rnr-review") as review_box:
                    gr.HTML("<h4>Review the diagnosis</h4><p class='rnr-note'>Untick a kind to drop it, change a "
                            "severity (gates the operator), confidence (its strength) or factors (its parameters), "
                            "then restore.</p>")  # fmt: skip
                    table = gr.Dataframe(headers=R.EDIT_HEADERS, datatype=["str", "bool", "number", "number", "str"],
                                         type="array", interactive=True, elem_id="rnr-edit")  # fmt: skip
                    review_msg = gr.HTML("", elem_id="rnr-review-msg")
                    resume_btn = gr.Button("Restore with this diagnosis", variant="primary", elem_id="rnr-resume")
                attempts_box = gr.HTML("", elem_id="rnr-attempts")
                slider = gr.ImageSlider(label="Before / after", type="filepath", elem_id="rnr-slider")
                severity = gr.HTML("", elem_id="rnr-severity")
                with gr.Row():
                    trace_file = gr.File(label="Trace (JSON)", interactive=False, elem_id="rnr-trace-file")
                    image_file = gr.File(label="Restored image", interactive=False, elem_id="rnr-image-file")

        views = [session, status, steps, record, refs, review_box, table, review_msg, attempts_box, slider, severity,
                 trace_file, image_file]  # fmt: skip

        def on_upload(path):
            err = image_error(path, runs.max_pixels)
            if err:
                return None, _error(err)
            return path, ""

        upload.change(on_upload, upload, [preview, status])

        def stream(sess, ctx, resume):
            """Run (or resume) the thread, turning each node's update into page updates."""
            plan, tries = None, []
            kw = {} if resume is _START else {"resume": resume}
            try:
                for node, update in stream_run(sess["input"], ctx, sess["work"], checkpointer=runs.saver,
                                               thread=sess["thread"], **kw):  # fmt: skip
                    out = {status: _note(f"{node} done")}
                    if node == INTERRUPT:
                        sess = {**sess, "record": update["record"]}
                        wait = _note("Waiting for your review: edit the table, then press Restore.")
                        out |= {session: sess, review_box: gr.update(visible=True), status: wait}
                        if update.get("error"):  # the schema refused the edit: keep the table for fixing
                            out |= {review_msg: _error(f"Not accepted: {update['error']}")}
                        else:
                            out |= {table: R.edit_rows(sess["record"]), review_msg: ""}
                    elif node == "diagnose":
                        rec = update["record"]
                        out |= {steps: R.steps_html(rec), record: R.record_html(rec)}
                    elif node == "retrieve":
                        out |= {refs: R.references_html(update["references"])}
                    elif node == "review":
                        rv = update["review"]
                        if rv.edited:
                            out |= {record: R.record_html(update["record"], "Diagnosis (edited by you)")}
                        out |= {review_box: gr.update(visible=False), review_msg: ""}
                    elif node in ("plan", "rescore"):
                        plan = update.get("plan", plan)
                        tries = update.get("attempts", tries)
                        out |= {attempts_box: R.attempts_html(plan, tries)}
                    elif node == "export":
                        image, trace_path, before, trace = runs.export(sess)
                        out |= {slider: (str(before), str(image)), severity: R.severity_compare_html(trace),
                                trace_file: str(trace_path), image_file: str(image),
                                status: _note(f"Done: {trace.decision}.")}  # fmt: skip
                    yield out
            except Exception as e:  # a failing backend ends this run with one line on the page, not the server
                yield {status: _error(f"{type(e).__name__}: {_line(e)}")}

        def on_run(path, rsn, rsn_m, scr, scr_m, rst, rst_m, idx, n, want_review):
            cleared = {v: "" for v in (steps, record, refs, attempts_box, severity, review_msg)}
            cleared |= {slider: None, trace_file: None, image_file: None, review_box: gr.update(visible=False)}
            err = image_error(path, runs.max_pixels)
            if err:
                yield {**cleared, session: None, status: _error(err)}
                return
            need = [f"{name} needs a model id or folder in '{field}'" for name, model, field in (
                (rsn, rsn_m, "Reasoner model"), (scr, scr_m, "Scorer model"), (rst, rst_m, "Restorer model"))
                if name in NEEDS_MODEL and not (model or "").strip()]  # fmt: skip
            if need:
                yield {**cleared, session: None, status: _error("; ".join(need))}
                return
            try:
                key, ctx = runs.context(rsn, rsn_m, scr, scr_m, rst, rst_m, idx, n)
            except Exception as e:  # any loading failure (missing weights, bad folder) is one line on the page
                yield {**cleared, session: None, status: _error(f"backends: {type(e).__name__}: {_line(e)}")}
                return
            sess = runs.new_session(path, key)
            yield {**cleared, session: sess, status: _note("Diagnosing...")}
            pending = None
            for out in stream(sess, ctx, _START):
                if not want_review and session in out and out[session].get("record") is not None:
                    pending = out[session]  # answered once this stream has ended and checkpointed the interrupt
                    continue
                yield out
            if pending is not None:  # no review wanted: accept the diagnosis as proposed
                yield from stream(pending, ctx, None)

        def on_resume(sess, rows):
            if not sess or "record" not in sess:
                yield {status: _error("Nothing to restore yet: diagnose an image first.")}
                return
            try:
                edited = R.apply_edits(sess["record"], rows)
            except ValueError as e:
                yield {review_msg: _error(str(e))}
                return
            answer = None if edited == sess["record"] else edited
            yield {status: _note("Restoring...")}
            yield from stream(sess, runs._contexts[sess["ctx"]], answer)

        # One queue for both: a resume never races the run whose interrupt it answers.
        run_btn.click(on_run, [upload, reasoner, reasoner_model, scorer, scorer_model, restorer, restorer_model, index,
                               attempts, review_on], views, concurrency_id="rnr-graph")  # fmt: skip
        resume_btn.click(on_resume, [session, table], views, concurrency_id="rnr-graph")
    return app


_START = object()


def _line(e: Exception) -> str:
    return " ".join(str(e).split())[:500]


def _note(text: str) -> str:
    return f"<p class='rnr-note'>{R.esc(text)}</p>"


def _error(text: str) -> str:
    return f"<p class='rnr-error'>&#9888; {R.esc(text)}</p>"


THEME_FONTS = (["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"],
               ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])  # fmt: skip


#: Host names that all mean this machine's loopback interface (compared lower-case, IPv6 without brackets).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` serves this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _site(url_or_host: str, scheme: str) -> tuple[str, int] | None:
    """(host name, port) of an ``Origin``/``Referer`` URL or a ``Host`` header value; None when it names none."""
    parts = urlsplit(url_or_host if "://" in url_or_host else f"//{url_or_host}")
    try:
        port = parts.port
    except ValueError:  # a port that is not a number
        return None
    if not parts.hostname:  # "null" (sandboxed frames, file: pages) names no site
        return None
    secure = (parts.scheme or scheme) in ("https", "wss")
    return parts.hostname, port or (443 if secure else 80)


def cross_origin_reason(method: str, path: str, headers, scheme: str = "http", loopback: bool = True) -> str | None:
    """Why a request must be refused as coming from another site's page (None to let it through).

    A browser names the page that sent a request in ``Origin`` (always on POST and on cross-site fetches) or else
    in ``Referer``; the request must come from this server's own site, the one in ``Host``. Bound to loopback,
    ``Host`` must itself be a loopback name (a page whose DNS name was re-pointed at 127.0.0.1 is refused), and the
    loopback names are interchangeable at the same port. Port forwarding (``ssh -L 8000:localhost:7860``) keeps
    working: the browser's ``Host`` and ``Origin`` then agree on 8000. A request naming neither header (curl, a
    script, a same-origin GET) goes through, and so does opening the page itself from a link elsewhere.
    """
    host = _site(headers.get("host", ""), scheme)
    if host is None:
        return "request refused: no valid Host header"
    if loopback and host[0] not in LOOPBACK_NAMES:
        return f"request refused: Host {headers.get('host')} is not a loopback name of this server"
    sender, name = headers.get("origin"), "Origin"
    if sender is None:
        sender, name = headers.get("referer"), "Referer"
        if sender is None or (method in ("GET", "HEAD") and path == "/"):
            return None
    site = _site(sender, scheme)
    same = site is not None and site[1] == host[1] and (
        site[0] == host[0] or (loopback and site[0] in LOOPBACK_NAMES))  # fmt: skip
    if same:
        return None
    return f"cross-origin request refused: {name} {sender[:200]} is not this server ({headers.get('host')})"


class SameOriginOnly:
    """ASGI middleware: 403 for requests another site's page sends (:func:`cross_origin_reason`), before Gradio.

    Gradio's own CORS middleware only decides whether a page may *read* a response; the upload, the queued call or
    the file read has happened by then. This one stops the request itself, and forbids framing the page by other
    sites (a frame would let them click for the user).
    """

    def __init__(self, app, loopback: bool = True) -> None:
        self.app = app
        self.loopback = loopback

    async def __call__(self, scope, receive, send) -> None:  # noqa: D102
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import Headers

        why = cross_origin_reason(scope.get("method", "GET"), scope["path"], Headers(scope=scope),
                                  scope.get("scheme", "http"), self.loopback)  # fmt: skip
        if why is not None:
            if scope["type"] == "websocket":  # closing before accepting answers the handshake with 403
                await send({"type": "websocket.close", "code": 1008})
                return
            from starlette.responses import PlainTextResponse

            await PlainTextResponse(why + "\n", status_code=403)(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_framed(message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-frame-options", b"SAMEORIGIN"),
                                      (b"content-security-policy", b"frame-ancestors 'self'")]  # fmt: skip
            await send(message)

        await self.app(scope, receive, send_framed)


def launch(host: str = "127.0.0.1", port: int = 7860, work_dir: str | Path | None = None, index: str | None = None,
           block: bool = True, max_pixels: int | None = None):  # fmt: skip
    """Serve the page on ``host:port`` (loopback by default); ``block=False`` returns the running app (tests).

    Runs and their checkpoints live in ``work_dir`` (a new temporary folder by default). ``max_pixels`` (else
    ``RNR_MAX_PIXELS``, else what memory allows for a restoration) bounds what an upload may declare.
    """
    from starlette.middleware import Middleware

    root = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="rnr-ui-"))
    runs = UIRuns(root, index, max_pixels)
    app = build_app(runs)
    theme = gr.themes.Default(font=THEME_FONTS[0], font_mono=THEME_FONTS[1])  # no Google Fonts: works offline
    app.queue(default_concurrency_limit=1)
    # allowed_paths: the served folder only, so that Gradio agrees to copy a run's outputs into its cache even when
    # --work-dir lies outside the temp folder and the working directory; blocked_paths wins over every other rule.
    # The middleware goes in through app_kwargs, i.e. into FastAPI's constructor: Starlette refuses middleware
    # added once the server has answered a request, and launch() has answered its own readiness probe by return.
    # No run history (it keeps inputs in the browser and can send them to a Hugging Face bucket), no MCP server,
    # no monitoring page, no server-side rendering or static workers (they would answer outside the middleware).
    app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block, theme=theme,
               allowed_paths=[str(runs.served)], blocked_paths=[str(runs.private)],
               app_kwargs={"middleware": [Middleware(SameOriginOnly, loopback=is_loopback(host))]},
               run_history=False, mcp_server=False, enable_monitoring=False, ssr_mode=False, num_workers=0,
               show_error=False, quiet=not block, inbrowser=False)  # fmt: skip
    return app
