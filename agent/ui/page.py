"""``rnr ui``: a local web page that runs one image through the graph and lets a person review the diagnosis.

Open or drop an image, press Diagnose: each node's result appears as it completes (reasoning steps, the record with
severity bars, references with scores). The graph then stops at its ``review`` node (a LangGraph interrupt on a
SQLite checkpointer); the person edits the diagnosis table and presses Restore, which resumes the same thread with
``Command(resume=record)``: plan, attempts, before/after and severities stream in, with the trace JSON and the
restored image to download. Nothing here restores on its own: it drives :func:`agent.run.stream_run`.

What the port serves is only what a run made for the page that started it. The work folder is split in two: a
``private`` part (the checkpoint database, each thread's work arrays), never served and listed in Gradio's
``blocked_paths``, and a ``served`` part with one folder per run under an unguessable name (restored image, trace,
before-preview; see :class:`agent.ui.runs.UIRuns`). Gradio copies those into its upload cache under keyed hashes
before the page sees a link; the file route refuses folders, so neither part can be listed. Requests a page on
another site sends get 403 from :class:`agent.ui.security.SameOriginOnly`. Uploads are refused on their header
alone when they declare more pixels than the limit.

Gradio is imported here, so import this module only when the UI is wanted (the CLI does it inside the command).
The page works offline: system fonts only, analytics off, no share link.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import gradio as gr  # noqa: E402

from agent.outcome import outcome  # noqa: E402
from agent.run import INTERRUPT, stream_run  # noqa: E402
from agent.state import Context  # noqa: E402
from agent.ui import render as R  # noqa: E402
from agent.ui.runs import NEEDS_MODEL, UIRuns, backend_status, image_error  # noqa: E402
from agent.ui.security import SameOriginOnly, is_loopback  # noqa: E402
from reasoner.common import one_line  # noqa: E402

THEME_FONTS = (["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"],
               ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])  # fmt: skip

#: ``resume`` of :func:`_stream` for a thread's first run (``None`` is an answer: accept the diagnosis).
_START = object()


@dataclass
class Page:
    """The page's components that handlers read or write (``elem_id``s ``rnr-*`` for browser tests and CSS)."""

    session: gr.State
    upload: gr.File
    preview: gr.Image
    reasoner: gr.Dropdown
    reasoner_model: gr.Textbox
    scorer: gr.Dropdown
    scorer_model: gr.Textbox
    restorer: gr.Dropdown
    restorer_model: gr.Textbox
    index: gr.Textbox
    attempts: gr.Slider
    review_on: gr.Checkbox
    run_btn: gr.Button
    status: gr.HTML
    steps: gr.HTML
    record: gr.HTML
    refs: gr.HTML
    review_box: gr.Group
    table: gr.Dataframe
    review_msg: gr.HTML
    resume_btn: gr.Button
    attempts_box: gr.HTML
    slider: gr.ImageSlider
    severity: gr.HTML
    trace_file: gr.File
    image_file: gr.File

    def views(self) -> list:
        """What a run's handlers update."""
        return [self.session, self.status, self.steps, self.record, self.refs, self.review_box, self.table,
                self.review_msg, self.attempts_box, self.slider, self.severity, self.trace_file,
                self.image_file]  # fmt: skip

    def choices(self) -> list:
        """What Diagnose reads: the image, the backends, attempts, and whether to stop for a review."""
        return [self.upload, self.reasoner, self.reasoner_model, self.scorer, self.scorer_model, self.restorer,
                self.restorer_model, self.index, self.attempts, self.review_on]  # fmt: skip


def build_app(runs: UIRuns) -> gr.Blocks:
    """The page: an input column (image, backends, Diagnose) and a result column that fills as nodes finish."""
    with gr.Blocks(title="reason-restore", analytics_enabled=False) as app:
        session = gr.State(None)
        gr.HTML(f"<style>{R.STYLE}</style><h2>reason-restore</h2><p class='rnr-note'>Diagnose an image, review the "
                "diagnosis, then restore it. Runs locally; nothing leaves this machine.</p>")  # fmt: skip
        with gr.Row():
            with gr.Column(scale=1):
                inputs = _input_column(runs)
            with gr.Column(scale=2):
                results = _result_column()
        _connect(runs, Page(session=session, **inputs, **results))
    return app


def _input_column(runs: UIRuns) -> dict:
    """The image, the backends (only those whose extras are installed), and the Diagnose button."""
    from reasoner.registry import REASONERS
    from restorer.base import RESTORERS

    rs_status, rt_status = backend_status(REASONERS), backend_status(RESTORERS)
    reasoners = [n for n, miss in rs_status.items() if not miss]
    restorers = [n for n, miss in rt_status.items() if not miss]
    missing = [f"{n} (needs {', '.join(m)})" for n, m in {**rs_status, **rt_status}.items() if m]
    c = {"upload": gr.File(label="Image (open or drop)", file_count="single", type="filepath", elem_id="rnr-upload"),
         "preview": gr.Image(label="Input", interactive=False, elem_id="rnr-preview", height=260)}  # fmt: skip
    with gr.Accordion("Backends", open=False):
        c["reasoner"] = gr.Dropdown(reasoners, value="measure", label="Reasoner", elem_id="rnr-reasoner")
        c["reasoner_model"] = gr.Textbox(label="Reasoner model (id or folder; model backends only)")
        c["scorer"] = gr.Dropdown(reasoners, value="measure", label="Scorer", elem_id="rnr-scorer")
        c["scorer_model"] = gr.Textbox(label="Scorer model (id or folder; model backends only)")
        c["restorer"] = gr.Dropdown(restorers, value="classical", label="Restorer", elem_id="rnr-restorer")
        c["restorer_model"] = gr.Textbox(label="Restorer model (pipeline id or folder; model backends only)")
        c["index"] = gr.Textbox(runs.index or "", label="Reference library folder (empty: none)")
        c["attempts"] = gr.Slider(1, 10, value=3, step=1, label="Max attempts")
        if missing:
            gr.HTML(f"<p class='rnr-note'>Not installed here: {R.esc('; '.join(missing))}</p>")
    c["review_on"] = gr.Checkbox(True, label="Let me review the diagnosis before restoring")
    c["run_btn"] = gr.Button("Diagnose", variant="primary", elem_id="rnr-run")
    c["status"] = gr.HTML("", elem_id="rnr-status")
    return c


def _result_column() -> dict:
    """Reasoning, diagnosis, references, the review table, attempts, before/after, severities, downloads."""
    c = {}
    with gr.Accordion("Reasoning steps", open=True):
        c["steps"] = gr.HTML("", elem_id="rnr-steps")
    c["record"] = gr.HTML("", elem_id="rnr-record")
    with gr.Accordion("References", open=True):
        c["refs"] = gr.HTML("", elem_id="rnr-refs")
    with gr.Group(visible=False, elem_id="rnr-review") as c["review_box"]:
        gr.HTML("<h4>Review the diagnosis</h4><p class='rnr-note'>Untick a kind to drop it, change a severity (gates "
                "the operator), confidence (its strength) or factors (its parameters), then restore.</p>")  # fmt: skip
        c["table"] = gr.Dataframe(headers=R.EDIT_HEADERS, datatype=["str", "bool", "number", "number", "str"],
                                  type="array", interactive=True, elem_id="rnr-edit")  # fmt: skip
        c["review_msg"] = gr.HTML("", elem_id="rnr-review-msg")
        c["resume_btn"] = gr.Button("Restore with this diagnosis", variant="primary", elem_id="rnr-resume")
    c["attempts_box"] = gr.HTML("", elem_id="rnr-attempts")
    c["slider"] = gr.ImageSlider(label="Before / after", type="filepath", elem_id="rnr-slider")
    c["severity"] = gr.HTML("", elem_id="rnr-severity")
    with gr.Row():
        c["trace_file"] = gr.File(label="Trace (JSON)", interactive=False, elem_id="rnr-trace-file")
        c["image_file"] = gr.File(label="Restored image", interactive=False, elem_id="rnr-image-file")
    return c


def _connect(runs: UIRuns, p: Page) -> None:
    """The handlers: checking an upload, Diagnose (a new thread) and Restore (answering its review)."""

    def on_upload(path):
        err = image_error(path, runs.max_pixels)
        if err:
            return None, _error(err)
        return path, ""

    def on_run(path, rsn, rsn_m, scr, scr_m, rst, rst_m, idx, n, want_review):
        cleared = {v: "" for v in (p.steps, p.record, p.refs, p.attempts_box, p.severity, p.review_msg)}
        cleared |= {p.slider: None, p.trace_file: None, p.image_file: None, p.review_box: gr.update(visible=False)}
        err = image_error(path, runs.max_pixels)
        if err:
            yield {**cleared, p.session: None, p.status: _error(err)}
            return
        need = [f"{name} needs a model id or folder in '{field}'" for name, model, field in (
            (rsn, rsn_m, "Reasoner model"), (scr, scr_m, "Scorer model"), (rst, rst_m, "Restorer model"))
            if name in NEEDS_MODEL and not (model or "").strip()]  # fmt: skip
        if need:
            yield {**cleared, p.session: None, p.status: _error("; ".join(need))}
            return
        try:
            key, ctx = runs.context(rsn, rsn_m, scr, scr_m, rst, rst_m, idx, n)
        except Exception as e:  # any loading failure (missing weights, bad folder) is one line on the page
            yield {**cleared, p.session: None, p.status: _error(f"backends: {one_line(e, with_type=True)[:500]}")}
            return
        sess = runs.new_session(path, key)
        yield {**cleared, p.session: sess, p.status: _note("Diagnosing...")}
        pending = None
        for out in _stream(runs, p, sess, ctx, _START):
            if not want_review and p.session in out and out[p.session].get("record") is not None:
                pending = out[p.session]  # answered once this stream has ended and checkpointed the interrupt
                continue
            yield out
        if pending is not None:  # no review wanted: accept the diagnosis as proposed
            yield from _stream(runs, p, pending, ctx, None)

    def on_resume(sess, rows):
        if not sess or "record" not in sess:
            yield {p.status: _error("Nothing to restore yet: diagnose an image first.")}
            return
        try:
            edited = R.apply_edits(sess["record"], rows)
        except ValueError as e:
            yield {p.review_msg: _error(str(e))}
            return
        answer = None if edited == sess["record"] else edited
        yield {p.status: _note("Restoring...")}
        yield from _stream(runs, p, sess, runs.loaded(sess["ctx"]), answer)

    p.upload.change(on_upload, p.upload, [p.preview, p.status])
    # One queue for both: a resume never races the run whose interrupt it answers.
    p.run_btn.click(on_run, p.choices(), p.views(), concurrency_id="rnr-graph")
    p.resume_btn.click(on_resume, [p.session, p.table], p.views(), concurrency_id="rnr-graph")


def _stream(runs: UIRuns, p: Page, sess: dict, ctx: Context, resume) -> Iterator[dict]:
    """Run (or resume) the session's thread, turning each node's update into page updates."""
    plan, tries = None, []
    kw = {} if resume is _START else {"resume": resume}
    try:
        for node, update in stream_run(sess["input"], ctx, sess["work"], checkpointer=runs.saver,
                                       thread=sess["thread"], **kw):  # fmt: skip
            out = {p.status: _note(f"{node} done")}
            if node == INTERRUPT:
                sess = {**sess, "record": update["record"]}
                wait = _note("Waiting for your review: edit the table, then press Restore.")
                out |= {p.session: sess, p.review_box: gr.update(visible=True), p.status: wait}
                if update.get("error"):  # the schema refused the edit: keep the table for fixing
                    out |= {p.review_msg: _error(f"Not accepted: {update['error']}")}
                else:
                    out |= {p.table: R.edit_rows(sess["record"]), p.review_msg: ""}
            elif node in ("plan", "rescore"):
                plan = update.get("plan", plan)
                tries = update.get("attempts", tries)
                out |= {p.attempts_box: R.attempts_html(plan, tries)}
            else:
                out |= _node_view(runs, p, sess, node, update)
            yield out
    except Exception as e:  # a failing backend ends this run with one line on the page, not the server
        yield {p.status: _error(one_line(e, with_type=True)[:500])}


def _node_view(runs: UIRuns, p: Page, sess: dict, node: str, update: dict) -> dict:
    """Page updates for a finished diagnose, retrieve, review or export node."""
    if node == "diagnose":
        rec = update["record"]
        return {p.steps: R.steps_html(rec), p.record: R.record_html(rec)}
    if node == "retrieve":
        return {p.refs: R.references_html(update["references"])}
    if node == "review":
        out = {p.review_box: gr.update(visible=False), p.review_msg: ""}
        if update["review"].edited:
            out[p.record] = R.record_html(update["record"], "Diagnosis (edited by you)")
        return out
    if node == "export":
        image, trace_path, before, trace = runs.export(sess)
        return {p.slider: (str(before), str(image)), p.severity: R.severity_compare_html(trace),
                p.trace_file: str(trace_path), p.image_file: str(image),
                p.status: _note(outcome(trace).line)}  # fmt: skip
    return {}


def _note(text: str) -> str:
    return f"<p class='rnr-note'>{R.esc(text)}</p>"


def _error(text: str) -> str:
    return f"<p class='rnr-error'>&#9888; {R.esc(text)}</p>"


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
