"""``rnr restore``: a batch of images through the graph into one output folder (local or Ray engine).

The batch itself is :func:`agent.batch.run_batch` (or :func:`agent.ray_engine.run_batch_ray`); this module turns
options into its arguments and its progress into terminal output, and every way it stops early into one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from agent.cli.common import fail, parse_options
from reasoner.common import one_line


def restore(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or directories of images."),
    out: Path = typer.Option(..., "--out", help="Output folder: <name>.png, <name>.json traces, manifest.jsonl."),
    workers: int = typer.Option(1, "--workers", "-j", help="Worker processes."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run in --out, skipping finished images."),
    trace: bool = typer.Option(False, "--trace", help="Stream each graph node's update live (forces 1 worker)."),
    reasoner: str = typer.Option("measure", "--reasoner", help="Diagnosis backend."),
    scorer: str = typer.Option("measure", "--scorer", help="Re-scoring backend."),
    reasoner_model: str | None = typer.Option(None, "--reasoner-model", help="Model id or folder for --reasoner."),
    scorer_model: str | None = typer.Option(None, "--scorer-model", help="Model id or folder for --scorer."),
    restorer: str = typer.Option(
        "classical", "--restorer", help="Restoration backend: classical, qwen-image-edit, diffusion."
    ),
    restorer_model: str | None = typer.Option(None, "--restorer-model", help="Pipeline id or folder for --restorer."),
    restorer_opts: list[str] = typer.Option(
        [], "--restorer-opt", help="Restorer option KEY=VALUE (repeat): steps=8, resolution=512, cpu_offload=true."
    ),
    index: Path | None = typer.Option(None, "--index", help="Reference library folder (rnr index build)."),
    max_attempts: int = typer.Option(3, "--max-attempts", help="Restore attempts per image, retries included."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-directories."),
    as_json: bool = typer.Option(False, "--json", help="Print one manifest row per image as JSON lines."),
    engine: str = typer.Option("local", "--engine", help="Batch engine: local (process pool) or ray (extra 'dist')."),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster (auto, ray://host:10001); default: a local Ray runtime."
    ),
    gpus_per_worker: float = typer.Option(0, "--gpus-per-worker", help="GPUs per Ray worker (fractions share one)."),
    checkpoint: str = typer.Option(
        "sqlite",
        "--checkpoint",
        help="Per-image checkpoints: sqlite (a file in --out) or postgres://user:pass@host:port/db, shared by all "
        "workers and hosts (which then need the same --out on a shared filesystem).",
    ),
    follow_symlinks: bool = typer.Option(
        False, "--follow-symlinks", help="Follow symlinks that lead out of an input folder (refused by default)."
    ),
    max_pixels: int | None = typer.Option(
        None, "--max-pixels", help="Refuse larger images (default: what memory allows; also RNR_MAX_PIXELS)."
    ),
) -> None:
    """Diagnose, retrieve, restore and re-score images; write restored images and traces."""
    from agent.backends import Backends
    from agent.state import Settings

    _check_engine(engine, address, gpus_per_worker, trace)
    shared = _shared_checkpoint(checkpoint)
    restorer_options = parse_options(restorer_opts, "--restorer-opt")
    backends = Backends.of(reasoner, scorer, restorer, index, reasoner_model=reasoner_model, scorer_model=scorer_model,
                           restorer_model=restorer_model, restorer_options=restorer_options)  # fmt: skip
    view = BatchView(as_json=as_json, trace=trace)
    options = dict(backends=backends, settings=Settings(max_attempts=max_attempts), resume=resume, recursive=recursive,
                   follow_symlinks=follow_symlinks, max_pixels=max_pixels, on_row=view.on_row, on_warning=view.warn,
                   on_start=view.on_start, checkpoint=shared)  # fmt: skip
    if engine == "ray":
        options |= dict(address=address, gpus_per_worker=gpus_per_worker)
    summary = _run(inputs, out, engine, 1 if trace else workers, view, options)
    _finish(summary, out, view)


def _check_engine(engine: str, address: str | None, gpus_per_worker: float, trace: bool) -> None:
    """Refuse engine options that do not go together (usage errors, before anything is read)."""
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"{engine!r}: choose local or ray", param_hint="--engine")
    if engine == "local" and (address or gpus_per_worker):
        raise typer.BadParameter("--address/--gpus-per-worker need --engine ray", param_hint="--engine")
    if engine == "ray" and trace:
        raise typer.BadParameter("--trace streams one process's nodes; use --engine local", param_hint="--trace")


def _shared_checkpoint(checkpoint: str) -> str | None:
    """The PostgreSQL URL of ``--checkpoint`` (checked by connecting), or None for SQLite files in ``--out``."""
    from agent.checkpoint import check_postgres, is_postgres_url
    from reasoner.files import redact_url

    if checkpoint != "sqlite" and not is_postgres_url(checkpoint):
        raise typer.BadParameter(
            f"{redact_url(checkpoint)!r}: use sqlite or a postgres://user:password@host:port/database URL",
            param_hint="--checkpoint",
        )
    if not is_postgres_url(checkpoint):
        return None
    try:
        check_postgres(checkpoint)  # a bad URL or a server that is down fails here, before any image is touched
    except (ValueError, ImportError) as e:
        fail(f"--checkpoint {e}")
    return checkpoint


class BatchView:
    """What a batch shows as it runs.

    With ``--json``, one manifest row a line on stdout and nothing else; otherwise errors, warnings and a progress bar
    on stderr, and each node's update on stdout with ``--trace``.
    """

    def __init__(self, *, as_json: bool, trace: bool) -> None:
        from rich.console import Console

        self.as_json, self.trace = as_json, trace
        self.stdout, self.stderr = Console(), Console(stderr=True)
        self.progress, self.task = None, None

    def on_row(self, row: dict) -> None:
        """A finished input: its manifest row (``--json``) or its error."""
        if self.as_json:
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
        elif row["status"] == "failed":
            self.stderr.print(f"[red]error:[/] {row['error']}", highlight=False, soft_wrap=True)
        if self.progress is not None:
            self.progress.advance(self.task)

    def on_start(self, summary, n_todo: int) -> None:
        """The work is known: say what a resume skips, start the progress bar on a terminal."""
        if summary.skipped and not self.as_json:
            self.stderr.print(f"resuming: {len(summary.skipped)} of {summary.total} image(s) already done",
                              highlight=False)  # fmt: skip
        if not self.as_json and not self.trace and self.stderr.is_terminal and n_todo:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("restoring"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=self.stderr, transient=True)  # fmt: skip
            self.task = self.progress.add_task("restoring", total=n_todo)
            self.progress.start()

    def warn(self, message: str) -> None:
        """One warning line on stderr (none with ``--json``)."""
        if not self.as_json:
            self.stderr.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    def on_update(self, node: str, update: dict) -> None:
        """A graph node finished (``--trace``)."""
        from agent.cli.render import render_update

        render_update(self.stdout, node, update)

    def stop(self) -> None:
        """Take the progress bar off the terminal."""
        if self.progress is not None:
            self.progress.stop()


def _run(inputs: list[Path], out: Path, engine: str, workers: int, view: BatchView, options: dict):
    """Run the batch on ``engine``; every way it can stop early is one line on stderr and an exit code."""
    from agent.batch import Interrupted, NoImagesError, run_batch
    from agent.runlock import RunLockedError
    from reasoner.files import DiskFullError
    from reasoner.imageio import ImageLoadError

    try:
        if engine == "ray":
            from agent.ray_engine import run_batch_ray

            return run_batch_ray(inputs, out, workers=workers, **options)
        return run_batch(inputs, out, workers=workers, on_update=view.on_update if view.trace else None, **options)
    except Interrupted as e:
        view.stop()
        done = len(e.summary.done) + len(e.summary.failed) + len(e.summary.skipped) if e.summary else 0
        total = e.summary.total if e.summary else 0
        what = {2: "SIGINT", 15: "SIGTERM"}.get(e.signum, f"signal {e.signum}")
        fail(f"interrupted ({what}) after {done} of {total} image(s); resume with: {resume_command()}", e.exit_code)
    except DiskFullError as e:
        fail(f"{e}: {resume_command()}", 1)
    except NoImagesError as e:
        fail(str(e))
    except (FileExistsError, RunLockedError, ImageLoadError, ValueError, ImportError) as e:
        fail(one_line(e))
    finally:
        view.stop()


def _finish(summary, out: Path, view: BatchView) -> None:
    """The summary table, the HTML report, and the failures again at the end (exit 1 if any)."""
    from agent.cli.render import summary_table

    if not view.as_json:
        view.stdout.print(summary_table(summary, out))
    if summary.done or summary.failed:
        from agent.ui.report import ReportError, write_report

        try:
            path = write_report(out)
            if not view.as_json:
                view.stderr.print(f"report: {path}", highlight=False)
        except (ReportError, OSError) as e:
            view.stderr.print(f"[yellow]warning:[/] report not written: {e}", highlight=False)
    if summary.failed:
        view.stderr.print(f"{len(summary.failed)} image(s) failed:", highlight=False)
        for row in summary.failed:
            view.stderr.print(f"  {row['error']}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def resume_command() -> str:
    """The command line of this run with ``--resume``, secrets masked, to paste after an interruption."""
    import shlex

    from reasoner.files import redact_url

    args = ["rnr", *(redact_url(a) if "://" in a else a for a in sys.argv[1:])]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(args)
