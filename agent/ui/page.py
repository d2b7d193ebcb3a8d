"""``rnr ui``: a local web page that restores one photo, explains what it did, and lets a person steer it.

The first screen is the photo and its result side by side: drop a photo (or pick an example), press Restore, and
the before/after slider fills with one plain sentence under it ("Found moderate noise; restored noise (attempt 1
of 1), estimated +4.2 dB"). Diagnose only diagnoses: the run stops at the graph's ``review`` node (a LangGraph
interrupt on a SQLite checkpointer) and the page says what it found. Below, folded: per-kind strength sliders with a
live 100% crop preview, the diagnosis as an editable table (plain words; a changed severity moves its settings and
changed settings move the severity, :mod:`reasoner.edit`; an edit that cannot take effect is refused with a reason),
and the technical details (reasoning with its evidence, references, attempts, severities, the trace). Restore
answers the waiting review with ``Command(resume=record)`` (or starts a run and answers it at once): nothing here
restores on its own, it drives :func:`agent.run.stream_run`.

What the port serves is only what a run made for the page that started it. The work folder is split in two: a
``private`` part (the checkpoint database, each thread's work arrays), never served and listed in Gradio's
``blocked_paths``, and a ``served`` part with one folder per run under an unguessable name (restored image, trace,
before-preview; see :class:`agent.ui.runs.UIRuns`); the example photos are public. Gradio copies those into its
upload cache under keyed hashes before the page sees a link; the file route refuses folders, so neither part can be
listed. Requests a page on another site sends get 403 from :class:`agent.ui.security.SameOriginOnly`. Uploads are
refused on their header alone when they declare more pixels than the limit: the events that read the photo take it
unprocessed (``preprocess=False``), so Gradio never opens it before :func:`agent.ui.runs.image_error` has.

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

from agent.outcome import WORDS, found_phrase, listed, outcome  # noqa: E402
from agent.run import INTERRUPT, stream_run  # noqa: E402
from agent.state import Context  # noqa: E402
from agent.ui import render as R  # noqa: E402
from agent.ui.runs import NEEDS_MODEL, UIRuns, backend_status, controlled, example_images, image_error  # noqa: E402
from agent.ui.security import SameOriginOnly, is_loopback  # noqa: E402
from reasoner.common import one_line  # noqa: E402
from reasoner.schema import KINDS  # noqa: E402

THEME_FONTS = (["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"],
               ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])  # fmt: skip

#: ``resume`` of :func:`_stream` for a thread's first run (``None`` is an answer: accept the diagnosis).
_START = object()


#: Strength sliders: overall first, then one per kind (shown for the kinds the diagnosis found).
STRENGTH_KINDS = list(KINDS)


@dataclass
class Page:
    """The page's components that handlers read or write (``elem_id``s ``rnr-*`` for browser tests and CSS)."""

    session: gr.State
    upload: gr.Image
    reasoner: gr.Dropdown
    reasoner_model: gr.Textbox
    scorer: gr.Dropdown
    scorer_model: gr.Textbox
    restorer: gr.Dropdown
    restorer_model: gr.Textbox
    index: gr.Textbox
    attempts: gr.Slider
    diagnose_btn: gr.Button
    run_btn: gr.Button
    status: gr.HTML
    slider: gr.ImageSlider
    image_file: gr.File
    adjust: gr.Accordion
    strength: gr.Slider
    kind_sliders: list
    crop: gr.ImageSlider
    crop_note: gr.HTML
    review_box: gr.Accordion
    table: gr.Dataframe
    review_msg: gr.HTML
    resume_btn: gr.Button
    steps: gr.HTML
    record: gr.HTML
    refs: gr.HTML
    attempts_box: gr.HTML
    severity: gr.HTML
    trace_file: gr.File

    def views(self) -> list:
        """What a run's handlers update."""
        return [self.session, self.status, self.slider, self.image_file, self.adjust, *self.kind_sliders, self.crop,
                self.crop_note, self.review_box, self.table, self.review_msg, self.steps, self.record, self.refs,
                self.attempts_box, self.severity, self.trace_file]  # fmt: skip

    def backends(self) -> list:
        """The backend choices and the attempt budget."""
        return [self.reasoner, self.reasoner_model, self.scorer, self.scorer_model, self.restorer,
                self.restorer_model, self.index, self.attempts]  # fmt: skip

    def controls(self) -> list:
        """What Restore reads besides the photo and the backends: the diagnosis table and the strengths."""
        return [self.table, self.strength, *self.kind_sliders]


def build_app(runs: UIRuns, examples: list[Path] | None = None) -> gr.Blocks:
    """The page: photo and result side by side, one plain sentence, then folded controls and details."""
    with gr.Blocks(title="reason-restore", analytics_enabled=False) as app:
        session = gr.State(None)
        gr.HTML(f"<style>{R.STYLE}</style><div id='rnr-head'><h2>reason-restore</h2><p class='rnr-note'>Drop a "
                "photo or pick an example, then press <b>Restore</b>. <b>Diagnose</b> only tells you what is wrong. "
                "Everything runs on this machine.</p></div>")  # fmt: skip
        c: dict = {"session": session}
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                c["upload"] = gr.Image(label="Your photo", type="filepath", sources=["upload"], height=380,
                                       elem_id="rnr-upload", buttons=[])  # fmt: skip
                with gr.Row():
                    c["diagnose_btn"] = gr.Button("Diagnose", variant="secondary", elem_id="rnr-diagnose",
                                                  min_width=120)  # fmt: skip
                    c["run_btn"] = gr.Button("Restore", variant="primary", elem_id="rnr-run", min_width=120)
            with gr.Column(scale=1, min_width=300):
                c["slider"] = gr.ImageSlider(label="Before / after: drag the line", type="filepath", height=380,
                                             interactive=False, elem_id="rnr-slider")  # fmt: skip
                c["image_file"] = gr.File(label="Restored image", interactive=False, elem_id="rnr-image-file",
                                          height=60, visible=False)  # fmt: skip
        c["status"] = gr.HTML("", elem_id="rnr-status")
        if examples:
            gr.Examples([[str(p)] for p in examples], inputs=[c["upload"]], label="Examples (click one)",
                        example_labels=[_example_label(p) for p in examples], elem_id="rnr-examples")  # fmt: skip
        c |= _adjust_panel()
        c |= _review_panel()
        c |= _details_panel()
        c |= _backends_panel(runs)
        _connect(runs, Page(**c))
    return app


def _example_label(path: Path) -> str:
    from rl.photos import EXAMPLES

    for photo, kinds in EXAMPLES:
        if path.name == f"{photo}_{'-'.join(kinds) or 'clean'}.png":
            what = listed([WORDS[k] for k in kinds]) if kinds else "clean"
            return f"{photo.split('_')[0]}: {what}"
    return path.stem


def _adjust_panel() -> dict:
    """Strength sliders (overall and per kind found) and a live before/after of a 100% crop."""
    c = {}
    with gr.Accordion("Adjust strength", open=False, elem_id="rnr-adjust") as c["adjust"]:
        gr.HTML("<p class='rnr-note'>0 leaves a problem alone, 1 restores it as diagnosed, 2 twice as hard. The "
                "preview below is a 100% crop of the most detailed part of the photo.</p>")  # fmt: skip
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                c["strength"] = gr.Slider(0, 2, value=1, step=0.05, label="All problems", elem_id="rnr-strength")
                c["kind_sliders"] = [gr.Slider(0, 2, value=1, step=0.05, label=R.KIND_LABELS[k], visible=False,
                                               elem_id=f"rnr-strength-{k}") for k in STRENGTH_KINDS]  # fmt: skip
            with gr.Column(scale=1, min_width=260):
                c["crop"] = gr.ImageSlider(label="Preview at 100%: before / after", type="filepath", height=300,
                                           interactive=False, elem_id="rnr-crop")  # fmt: skip
                c["crop_note"] = gr.HTML("", elem_id="rnr-crop-note")
    return c


def _review_panel() -> dict:
    """The diagnosis as a table a person corrects before restoring."""
    c = {}
    with gr.Accordion("Correct the diagnosis", open=False, elem_id="rnr-review") as c["review_box"]:
        gr.HTML("<p class='rnr-note'>Untick a problem to leave it alone, tick one the diagnosis missed, or change "
                "its severity (0 = none, 1 = worst) or its settings: change one and the other follows. Then press "
                "Restore.</p>")  # fmt: skip
        c["table"] = gr.Dataframe(headers=R.EDIT_HEADERS, datatype=["str", "bool", "number", "str"], type="array",
                                  interactive=True, static_columns=[0], wrap=True, elem_id="rnr-edit",
                                  column_widths=["24%", "12%", "14%", "50%"], max_height=600)  # fmt: skip
        c["review_msg"] = gr.HTML("", elem_id="rnr-review-msg")
        c["resume_btn"] = gr.Button("Restore with these changes", variant="primary", elem_id="rnr-resume")
    return c


def _details_panel() -> dict:
    """Reasoning with its evidence, the diagnosis, references, attempts, severities and the trace."""
    c = {}
    with gr.Accordion("Details: reasoning, evidence, attempts, trace", open=False, elem_id="rnr-details"):
        c["steps"] = gr.HTML("", elem_id="rnr-steps")
        c["record"] = gr.HTML("", elem_id="rnr-record")
        c["refs"] = gr.HTML("", elem_id="rnr-refs")
        c["attempts_box"] = gr.HTML("", elem_id="rnr-attempts")
        c["severity"] = gr.HTML("", elem_id="rnr-severity")
        c["trace_file"] = gr.File(label="Trace (JSON)", interactive=False, elem_id="rnr-trace-file", height=60,
                                  visible=False)  # fmt: skip
    return c


def _backends_panel(runs: UIRuns) -> dict:
    """The backends (only those whose extras are installed) and the attempt budget."""
    from reasoner.registry import REASONERS
    from restorer.base import RESTORERS

    rs_status, rt_status = backend_status(REASONERS), backend_status(RESTORERS)
    reasoners = [n for n, miss in rs_status.items() if not miss]
    restorers = [n for n, miss in rt_status.items() if not miss]
    missing = [f"{n} (needs {', '.join(m)})" for n, m in {**rs_status, **rt_status}.items() if m]
    c = {}
    with gr.Accordion("Backends", open=False, elem_id="rnr-backends"):
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
    return c


def _path(value) -> str | None:
    """The uploaded file's path from the photo's unprocessed value (Gradio has moved it into its cache)."""
    if isinstance(value, dict):
        return value.get("path")
    return value or None


def _connect(runs: UIRuns, p: Page) -> None:
    """The handlers: checking an upload, Diagnose (a new thread to its review), Restore, and the crop preview."""

    def cleared(keep_status: bool = False) -> dict:
        out = {v: "" for v in (p.steps, p.record, p.refs, p.attempts_box, p.severity, p.review_msg, p.crop_note)}
        out |= {p.slider: None, p.trace_file: gr.update(value=None, visible=False), p.crop: None, p.session: None,
                p.image_file: gr.update(value=None, visible=False),
                p.table: [], **{s: gr.update(visible=False, value=1) for s in p.kind_sliders}}  # fmt: skip
        return out if keep_status else {**out, p.status: ""}

    def on_upload(img):
        err = image_error(_path(img), runs.max_pixels)
        if err:
            return None, _error(err)
        return gr.skip(), ""

    def start(img, backends) -> tuple[str | None, object, dict | None]:
        """The checked photo path, the loaded context (or None) and an error update (or None)."""
        path = _path(img)
        err = image_error(path, runs.max_pixels)
        if err:
            return None, None, {**cleared(), p.status: _error(err)}
        rsn, rsn_m, scr, scr_m, rst, rst_m, idx, n = backends
        need = [f"{name} needs a model id or folder in '{field}'" for name, model, field in (
            (rsn, rsn_m, "Reasoner model"), (scr, scr_m, "Scorer model"), (rst, rst_m, "Restorer model"))
            if name in NEEDS_MODEL and not (model or "").strip()]  # fmt: skip
        if need:
            return None, None, {**cleared(), p.status: _error("; ".join(need))}
        try:
            key, _ = runs.context(rsn, rsn_m, scr, scr_m, rst, rst_m, idx, n)
        except Exception as e:  # any loading failure (missing weights, bad folder) is one line on the page
            return None, None, {**cleared(), p.status: _error(f"backends: {one_line(e, with_type=True)[:500]}")}
        return path, key, None

    def on_diagnose(img, *args):
        yield from _keeping_table(p, diagnose(img, *args), [])

    def on_restore(img, *args):
        yield from _keeping_table(p, restore(img, *args), R.table_rows(args[9]))

    def diagnose(img, *args):
        backends, sess = args[:8], args[8]
        path, key, err = start(img, backends)
        if err:
            yield err
            return
        sess = runs.new_session(path, key)
        yield {**cleared(), p.session: sess, p.status: _say("Diagnosing...")}
        yield from _stream(runs, p, sess, runs.loaded(key), _START, table=True)

    def restore(img, *args):
        backends, sess, (rows, strength, *per_kind) = args[:8], args[8], args[9:]
        path, key, err = start(img, backends)
        if err:
            yield err
            return
        ctx = controlled(runs.loaded(key), strength, dict(zip(STRENGTH_KINDS, per_kind, strict=True)))
        edited_before = sess is not None and sess.get("input") == path and sess.get("record") is not None
        if not (edited_before and sess.get("waiting") and tuple(sess.get("ctx", ())) == tuple(key)):
            # Nothing waiting for this photo: diagnose it afresh (the table's edits, if any, apply to the new run).
            sess = runs.new_session(path, key)
            yield {**cleared(keep_status=True), p.session: sess, p.status: _say("Diagnosing...")}
            for out in _stream(runs, p, sess, runs.loaded(key), _START, table=not edited_before):
                sess = out.get(p.session, sess)
                yield out
            if not sess.get("waiting"):
                return
        rows = rows if edited_before else None
        try:
            answer = R.apply_edits(sess["record"], rows, runs.measured(sess, ctx)) if rows else sess["record"]
            pixels = runs.input_pixels(sess) if answer != sess["record"] else None
            refused = runs.ineffective(ctx, pixels, sess["record"], answer) if pixels is not None else []
            if refused:
                raise ValueError("; ".join(refused))
        except ValueError as e:
            yield {
                p.review_msg: _error(f"Not restored: {e}"),
                p.review_box: gr.update(open=True),
                p.status: _error("Not restored: an edit in the diagnosis table cannot take effect (see below)."),
            }
            return
        yield {p.status: _say("Restoring..."), p.review_msg: ""}
        yield from _stream(runs, p, sess, ctx, None if answer == sess["record"] else answer)

    def on_preview(sess, rows, strength, *per_kind):
        if not sess or sess.get("record") is None:
            return None, _note("Diagnose or restore a photo first: the preview follows its diagnosis.")
        ctx = controlled(runs.loaded(sess["ctx"]), strength, dict(zip(STRENGTH_KINDS, per_kind, strict=True)))
        try:
            record = R.apply_edits(sess["record"], rows, runs.measured(sess, ctx)) if rows else sess["record"]
        except ValueError as e:
            return gr.skip(), _error(f"Preview not updated: {e}")
        try:
            before, after = runs.preview(sess, ctx, record)
        except Exception as e:  # a failing restorer says so in one line, the page stays usable
            return gr.skip(), _error(f"Preview failed: {one_line(e, with_type=True)[:300]}")
        return (str(before), str(after)), _note("Preview updated: drag the line to compare.")

    p.upload.upload(on_upload, p.upload, [p.upload, p.status], preprocess=False)
    p.upload.clear(lambda: cleared(), None, p.views())
    # One queue for the graph: a Restore never races the Diagnose whose review it answers. The photo is read
    # unprocessed (preprocess=False): Gradio would otherwise open it before the pixel limit is checked.
    inputs = [p.upload, *p.backends(), p.session]
    p.diagnose_btn.click(on_diagnose, inputs, p.views(), concurrency_id="rnr-graph", preprocess=False)
    for btn in (p.run_btn, p.resume_btn):
        btn.click(on_restore, [*inputs, *p.controls()], p.views(), concurrency_id="rnr-graph", preprocess=False)
    for s in (p.strength, *p.kind_sliders):
        s.release(on_preview, [p.session, *p.controls()], [p.crop, p.crop_note], concurrency_id="rnr-preview",
                  trigger_mode="always_last", preprocess=False, show_progress="minimal")  # fmt: skip


def _keeping_table(p: Page, updates: Iterator[dict], rows) -> Iterator[dict]:
    """``updates``, each setting the diagnosis table (to the last rows sent, else ``rows``: what it holds).

    Gradio 6.31's Dataframe keeps a skipped output (``{"__type__": "update"}``) as its value when a generator's last
    update leaves the table out, and the next Restore, which reads the table, then fails Gradio's validation before
    any handler runs: a second photo restored on the same page came back as "Error" everywhere. Every update carries
    the table (not only an extra last one: API clients read the results from the last update).
    """
    for out in updates:
        rows = out.get(p.table, rows)
        yield {**out, p.table: rows}


def _stream(runs: UIRuns, p: Page, sess: dict, ctx: Context, resume, table: bool = True) -> Iterator[dict]:
    """Run (or resume) the session's thread, turning each node's update into page updates.

    At the review interrupt the session is marked waiting, the table is filled (unless ``table`` is False: the
    person's edits stand), the strength sliders of the kinds found appear, and the crop preview is drawn.
    """
    plan, tries = None, []
    kw = {} if resume is _START else {"resume": resume}
    try:
        for node, update in stream_run(sess["input"], ctx, sess["work"], checkpointer=runs.saver,
                                       thread=sess["thread"], **kw):  # fmt: skip
            out = {p.status: _say(_PROGRESS.get(node, f"{node} done"))}
            if node == INTERRUPT:
                sess = {**sess, "record": update["record"], "waiting": True}
                out |= {p.session: sess, p.status: _say(_found(update["record"]))}
                if update.get("error"):  # the schema refused the edit: keep the table for fixing
                    out |= {p.review_msg: _error(f"Not accepted: {update['error']}"),
                            p.review_box: gr.update(open=True)}  # fmt: skip
                else:
                    if table:
                        out |= {p.table: R.edit_rows(sess["record"]), p.review_msg: ""}
                    out |= _strength_view(p, sess["record"])
                    out |= _preview_view(runs, p, sess, ctx)
            elif node in ("plan", "rescore"):
                plan = update.get("plan", plan)
                tries = update.get("attempts", tries)
                out |= {p.attempts_box: R.attempts_html(plan, tries)}
            else:
                if node == "review":
                    sess = {**sess, "waiting": False}
                    out[p.session] = sess
                out |= _node_view(runs, p, sess, node, update)
            yield out
    except Exception as e:  # a failing backend ends this run with one line on the page, not the server
        yield {p.status: _error(one_line(e, with_type=True)[:500])}


#: What the page says while a node runs next (the status line moves as nodes finish).
_PROGRESS = {"diagnose": "Diagnosed; looking for references...", "retrieve": "Diagnosed.",
             "review": "Restoring...", "plan": "Restoring...", "restore": "Checking the result...",
             "rescore": "Checking the result...", "decide": "Deciding...",
             "full_size": "Restoring the full photo...", "export": "Done."}  # fmt: skip


def _found(record: dict) -> str:
    """The sentence after Diagnose: what was found and what Restore would do."""
    from reasoner.schema import DiagnosisRecord

    rec = DiagnosisRecord.model_validate(record)
    said = _upper_first(found_phrase(rec))
    if not rec.detected():
        return f"{said}. Restore would return the photo unchanged."
    return (f"{said}. Press Restore to remove {'it' if len(rec.detected()) == 1 else 'them'}, or adjust the "
            "strength or correct the diagnosis below.")  # fmt: skip


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _strength_view(p: Page, record: dict) -> dict:
    found = {d["kind"] for d in record.get("degradations", []) if d["level"] != "none"}
    return {s: gr.update(visible=k in found) for k, s in zip(STRENGTH_KINDS, p.kind_sliders, strict=True)}


def _preview_view(runs: UIRuns, p: Page, sess: dict, ctx: Context) -> dict:
    try:
        before, after = runs.preview(sess, ctx, sess["record"])
    except Exception as e:  # the preview is a convenience: a failure is a note, the run goes on
        return {p.crop_note: _error(f"Preview failed: {one_line(e, with_type=True)[:300]}")}
    return {p.crop: (str(before), str(after)), p.crop_note: _note("Drag the line to compare; move a slider to "
                                                                   "update.")}  # fmt: skip


def _node_view(runs: UIRuns, p: Page, sess: dict, node: str, update: dict) -> dict:
    """Page updates for a finished diagnose, retrieve, review or export node."""
    if node == "diagnose":
        rec = update["record"]
        return {p.steps: R.steps_html(rec), p.record: R.record_html(rec)}
    if node == "retrieve":
        return {p.refs: R.references_html(update["references"])}
    if node == "review":
        out = {p.review_msg: ""}
        if update["review"].edited:
            out[p.record] = R.record_html(update["record"], "Diagnosis (edited by you)")
        return out
    if node == "export":
        image, shown, trace_path, before, trace = runs.export(sess)
        return {p.slider: (str(before), str(shown)), p.severity: R.severity_compare_html(trace),
                p.trace_file: gr.update(value=str(trace_path), visible=True),
                p.image_file: gr.update(value=str(image), visible=True),
                p.status: _say(outcome(trace).line)}  # fmt: skip
    return {}


def _say(text: str) -> str:
    return f"<p class='rnr-say'>{R.esc(text)}</p>"


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
    examples = example_images(root / "examples")
    app = build_app(runs, examples)
    theme = gr.themes.Default(font=THEME_FONTS[0], font_mono=THEME_FONTS[1])  # no Google Fonts: works offline
    app.queue(default_concurrency_limit=1)
    # allowed_paths: the served folder and the public example photos only, so that Gradio agrees to copy a run's
    # outputs into its cache even when --work-dir lies outside the temp folder and the working directory;
    # blocked_paths wins over every other rule.
    # The middleware goes in through app_kwargs, i.e. into FastAPI's constructor: Starlette refuses middleware
    # added once the server has answered a request, and launch() has answered its own readiness probe by return.
    # No run history (it keeps inputs in the browser and can send them to a Hugging Face bucket), no MCP server,
    # no monitoring page, no server-side rendering or static workers (they would answer outside the middleware).
    app.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block, theme=theme,
               allowed_paths=[str(runs.served), *{str(p.parent) for p in examples}],
               blocked_paths=[str(runs.private)],
               app_kwargs={"middleware": [Middleware(SameOriginOnly, loopback=is_loopback(host))]},
               run_history=False, mcp_server=False, enable_monitoring=False, ssr_mode=False, num_workers=0,
               show_error=False, quiet=not block, inbrowser=False)  # fmt: skip
    return app
