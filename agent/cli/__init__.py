"""The ``rnr`` command line. Heavy imports live inside command bodies so ``rnr --help`` stays instant."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

app = typer.Typer(
    name="rnr",
    help="reason-restore: diagnose image degradations, then restore (reason -> retrieve -> restore -> re-score).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _mount_subcommands() -> None:
    from agent.cli_dev import dev_app
    from agent.cli_index import index_app
    from agent.cli_train import synth, train_app
    from agent.cli_ui import ui_command
    from agent.report import report_command

    app.add_typer(index_app)
    app.command("report")(report_command)
    app.command("synth")(synth)
    app.command("ui")(ui_command)
    app.add_typer(train_app)
    app.add_typer(dev_app)


_mount_subcommands()


def _options(pairs: list[str], hint: str) -> dict:
    """``KEY=VALUE`` pairs as a dict; values are JSON scalars when they parse (8, 0.5, true, null), else strings."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE with a Python identifier as KEY", param_hint=hint)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def diagnose(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or directories of images."),
    as_json: bool = typer.Option(False, "--json", help="Print validated records as JSON (JSONL for several)."),
    out: Path | None = typer.Option(None, "--out", help="Also write the records to this JSONL file."),
    reasoner: str = typer.Option("measure", "--reasoner", help="Reasoner backend name or 'pkg.module:Class'."),
    model: str | None = typer.Option(
        None, "--model", help="Model id or folder for model-backed reasoners (qwen3vl, vllm, vllm-server)."
    ),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-directories."),
    max_pixels: int | None = typer.Option(
        None, "--max-pixels", help="Refuse larger images (default: what memory allows; also RNR_MAX_PIXELS)."
    ),
    follow_symlinks: bool = typer.Option(
        False, "--follow-symlinks", help="Follow symlinks that lead out of an input folder (refused by default)."
    ),
) -> None:
    """Diagnose degradations in images and explain the reasoning."""
    from rich.console import Console

    from agent.render import render_record
    from reasoner import load_reasoner
    from reasoner.imageio import ImageLoadError, iter_image_files, load_image, resolve_max_pixels

    refused: list[ImageLoadError] = []
    try:
        files = iter_image_files(
            inputs, recursive=recursive, follow_symlinks=follow_symlinks, on_refused=refused.append
        )
        limit = resolve_max_pixels(max_pixels, "diagnose")
    except ImageLoadError as e:
        _fail(str(e))
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--max-pixels") from None
    if not files and not refused:
        _fail(f"no images found in {', '.join(map(str, inputs))}")
    if out is not None:
        _check_records_out(out, [*files, *(Path(e.path) for e in refused)])
    try:
        model = load_reasoner(reasoner, **({"model": model} if model else {}))
    except (ValueError, ImportError, FileNotFoundError, OSError) as e:
        raise typer.BadParameter(str(e), param_hint="--reasoner/--model") from None

    stdout, stderr = Console(), Console(stderr=True)
    records, failures = [], [(Path(e.path), str(e)) for e in refused]
    for _, msg in failures:
        stderr.print(f"[red]error:[/] {msg}", highlight=False, soft_wrap=True)
    show_progress = not as_json and len(files) > 1 and stderr.is_terminal

    def run_one(path: Path) -> None:
        try:
            rec = model.diagnose(load_image(path, max_pixels=limit))
        except ImageLoadError as e:
            failures.append((path, str(e)))
            stderr.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
            return
        records.append(rec)
        if as_json:
            sys.stdout.write(rec.model_dump_json() + "\n")
            sys.stdout.flush()
        else:
            render_record(stdout, rec)

    if show_progress:
        from rich.progress import Progress

        with Progress(console=stderr, transient=True) as bar:
            task = bar.add_task("diagnosing", total=len(files))
            for path in files:
                run_one(path)
                bar.advance(task)
    else:
        for path in files:
            run_one(path)

    if out is not None:
        from agent.io import write_jsonl_atomic

        write_jsonl_atomic(out, (r.model_dump(mode="json") for r in records))
    if failures:
        stderr.print(f"{len(failures)} of {len(files) + len(refused)} image(s) failed:", highlight=False)
        for path, msg in failures:
            stderr.print(f"  {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _check_records_out(out: Path, inputs: list[Path]) -> None:
    """Refuse a records file that would replace an input or an image (records are JSON lines)."""
    import os

    from reasoner.imageio import IMAGE_EXTENSIONS

    real = os.path.realpath(out)
    if any(os.path.realpath(p) == real for p in inputs):
        raise typer.BadParameter(f"{out} is an input; write the records to a new .jsonl file", param_hint="--out")
    if out.suffix.lower() in IMAGE_EXTENSIONS:
        raise typer.BadParameter(
            f"{out}: an image name; records are JSON lines, write them to a .jsonl file", param_hint="--out"
        )
    if out.exists() and not out.is_file():
        raise typer.BadParameter(f"{out}: exists and is not a regular file", param_hint="--out")
    if out.is_file():
        with open(out, "rb") as f:
            head = f.read(16)
        if head and head.lstrip()[:1] not in (b"{", b""):
            raise typer.BadParameter(
                f"{out}: exists and is not a records file written by rnr; it is never replaced, pick another name",
                param_hint="--out",
            )


@app.command()
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
    from rich.console import Console

    from agent.backends import Backends
    from agent.batch import Interrupted, NoImagesError, run_batch
    from agent.render import render_update, summary_table
    from agent.runlock import RunLockedError
    from agent.state import Settings
    from reasoner.files import DiskFullError, redact_url
    from reasoner.imageio import ImageLoadError

    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"{engine!r}: choose local or ray", param_hint="--engine")
    if engine == "local" and (address or gpus_per_worker):
        raise typer.BadParameter("--address/--gpus-per-worker need --engine ray", param_hint="--engine")
    if engine == "ray" and trace:
        raise typer.BadParameter("--trace streams one process's nodes; use --engine local", param_hint="--trace")
    from agent.checkpoint import check_postgres, is_postgres_url

    if checkpoint != "sqlite" and not is_postgres_url(checkpoint):
        raise typer.BadParameter(
            f"{redact_url(checkpoint)!r}: use sqlite or a postgres://user:password@host:port/database URL",
            param_hint="--checkpoint",
        )
    shared = checkpoint if is_postgres_url(checkpoint) else None
    if shared:
        try:
            check_postgres(shared)  # a bad URL or a server that is down fails here, before any image is touched
        except (ValueError, ImportError) as e:
            _fail(f"--checkpoint {e}")
    stderr, stdout = Console(stderr=True), Console()
    backends = Backends.of(
        reasoner,
        scorer,
        restorer,
        index,
        reasoner_model=reasoner_model,
        scorer_model=scorer_model,
        restorer_model=restorer_model,
        restorer_options=_options(restorer_opts, "--restorer-opt"),
    )
    progress, task = None, None

    def on_row(row: dict) -> None:
        if as_json:
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
        elif row["status"] == "failed":
            stderr.print(f"[red]error:[/] {row['error']}", highlight=False, soft_wrap=True)
        if progress is not None:
            progress.advance(task)

    def on_start(summary, n_todo: int) -> None:
        nonlocal progress, task
        if summary.skipped and not as_json:
            stderr.print(f"resuming: {len(summary.skipped)} of {summary.total} image(s) already done", highlight=False)
        if not as_json and not trace and stderr.is_terminal and n_todo:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            progress = Progress(TextColumn("restoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=stderr, transient=True)  # fmt: skip
            task = progress.add_task("restoring", total=n_todo)
            progress.start()

    def warn(message: str) -> None:
        if not as_json:
            stderr.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    on_update = (lambda node, update: render_update(stdout, node, update)) if trace else None
    common = dict(backends=backends, settings=Settings(max_attempts=max_attempts), resume=resume,
                  recursive=recursive, follow_symlinks=follow_symlinks, max_pixels=max_pixels, on_row=on_row,
                  on_warning=warn, on_start=on_start, checkpoint=shared)  # fmt: skip
    try:
        if engine == "ray":
            from agent.ray_engine import run_batch_ray

            summary = run_batch_ray(inputs, out, workers=workers, address=address, gpus_per_worker=gpus_per_worker,
                                    **common)  # fmt: skip
        else:
            summary = run_batch(inputs, out, workers=1 if trace else workers, on_update=on_update, **common)
    except Interrupted as e:
        if progress is not None:
            progress.stop()
        done = len(e.summary.done) + len(e.summary.failed) + len(e.summary.skipped) if e.summary else 0
        total = e.summary.total if e.summary else 0
        what = {2: "SIGINT", 15: "SIGTERM"}.get(e.signum, f"signal {e.signum}")
        _fail(f"interrupted ({what}) after {done} of {total} image(s); resume with: {_resume_command()}", e.exit_code)
    except DiskFullError as e:
        _fail(f"{e}: {_resume_command()}", 1)
    except NoImagesError as e:
        _fail(str(e))
    except (FileExistsError, RunLockedError, ImageLoadError, ValueError, ImportError) as e:
        _fail(" ".join(str(e).split()))
    finally:
        if progress is not None:
            progress.stop()
    if not as_json:
        stdout.print(summary_table(summary, out))
    if summary.done or summary.failed:
        from agent.report import ReportError, write_report

        try:
            path = write_report(out)
            if not as_json:
                stderr.print(f"report: {path}", highlight=False)
        except (ReportError, OSError) as e:
            stderr.print(f"[yellow]warning:[/] report not written: {e}", highlight=False)
    if summary.failed:
        stderr.print(f"{len(summary.failed)} image(s) failed:", highlight=False)
        for row in summary.failed:
            stderr.print(f"  {row['error']}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _resume_command() -> str:
    """The command line of this run with ``--resume``, secrets masked, to paste after an interruption."""
    import shlex

    from reasoner.files import redact_url

    args = ["rnr", *(redact_url(a) if "://" in a else a for a in sys.argv[1:])]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(args)


@app.command()
def schema(
    out: Path | None = typer.Option(None, "--out", help="Write to this file instead of stdout."),
    trace: bool = typer.Option(False, "--trace", help="The restoration trace's schema instead of the record's."),
) -> None:
    """Print the JSON Schema of the diagnosis record (or, with --trace, of the restoration trace)."""
    if trace:
        from agent.trace import trace_schema_text as json_schema_text
    else:
        from reasoner.schema import json_schema_text

    text = json_schema_text()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


@app.command()
def calibrate(
    n: int = typer.Option(8000, "--n", help="Synthetic samples to fit on."),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0: one per core)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write (default: the committed calibration)."),
) -> None:
    """Refit the measure backend's calibration from self-synthesised data (reproduces the committed file)."""
    from reasoner.calibration import DEFAULT_PATH
    from rl.calibrate import fit, write

    cal = fit(n=n, seed=seed, workers=workers or None)
    path = write(cal, out or DEFAULT_PATH)
    typer.echo(json.dumps({"written": str(path), **cal.meta}), err=False)


@app.command()
def examples(
    out: Path = typer.Argument(Path("examples"), help="Directory to write the example photos to."),
    seed: int = typer.Option(7, "--seed"),
) -> None:
    """Write a few degraded bundled photos (and a clean one) to try the pipeline on."""
    from rl.photos import write_examples

    for path in write_examples(out, seed=seed):
        typer.echo(str(path))


def main() -> None:  # pragma: no cover - console entry for `python -m agent.cli`
    """Run the app."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
