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
    max_pixels: int | None = typer.Option(None, "--max-pixels", help="Refuse images with more pixels than this."),
) -> None:
    """Diagnose degradations in images and explain the reasoning."""
    from rich.console import Console

    from agent.render import render_record
    from reasoner import load_reasoner
    from reasoner.imageio import ImageLoadError, iter_image_files, load_image

    try:
        files = iter_image_files(inputs, recursive=recursive)
    except ImageLoadError as e:
        _fail(str(e))
    if not files:
        _fail(f"no images found in {', '.join(map(str, inputs))}")
    try:
        model = load_reasoner(reasoner, **({"model": model} if model else {}))
    except (ValueError, ImportError, FileNotFoundError, OSError) as e:
        raise typer.BadParameter(str(e), param_hint="--reasoner/--model") from None

    stdout, stderr = Console(), Console(stderr=True)
    records, failures = [], []
    show_progress = not as_json and len(files) > 1 and stderr.is_terminal

    def run_one(path: Path) -> None:
        try:
            rec = model.diagnose(load_image(path, max_pixels=max_pixels))
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
        stderr.print(f"{len(failures)} of {len(files)} image(s) failed:", highlight=False)
        for path, msg in failures:
            stderr.print(f"  {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


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
) -> None:
    """Diagnose, retrieve, restore and re-score images; write restored images and traces."""
    from rich.console import Console

    from agent.batch import run_batch
    from agent.render import render_update, summary_table
    from agent.state import Settings
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
            f"{checkpoint!r}: use sqlite or a postgres://user:password@host:port/database URL",
            param_hint="--checkpoint",
        )
    shared = checkpoint if is_postgres_url(checkpoint) else None
    if shared:
        try:
            check_postgres(shared)  # a bad URL or a server that is down fails here, before any image is touched
        except (ValueError, ImportError) as e:
            _fail(f"--checkpoint {e}")
    stderr, stdout = Console(stderr=True), Console()
    backends = {"reasoner": reasoner, "scorer": scorer, "restorer": restorer, "index": index}
    models = (("reasoner_model", reasoner_model), ("scorer_model", scorer_model), ("restorer_model", restorer_model))
    backends |= {k: v for k, v in models if v}
    if restorer_opts:
        backends["restorer_options"] = _options(restorer_opts, "--restorer-opt")
    progress = None

    def on_row(row: dict) -> None:
        if as_json:
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
        elif row["status"] == "failed":
            stderr.print(f"[red]error:[/] {row['error']}", highlight=False, soft_wrap=True)
        if progress is not None:
            progress.advance(task)

    on_update = (lambda node, update: render_update(stdout, node, update)) if trace else None
    try:
        if not as_json and not trace and stderr.is_terminal:
            from rich.progress import Progress

            progress = Progress(console=stderr, transient=True)
            task = progress.add_task("restoring", total=None)
            progress.start()
        if engine == "ray":
            from agent.ray_engine import run_batch_ray

            summary = run_batch_ray(
                inputs, out, backends=backends, settings=Settings(max_attempts=max_attempts), workers=workers,
                resume=resume, recursive=recursive, address=address, gpus_per_worker=gpus_per_worker, on_row=on_row,
                checkpoint=shared,
            )  # fmt: skip
        else:
            summary = run_batch(
                inputs, out, backends=backends, settings=Settings(max_attempts=max_attempts),
                workers=1 if trace else workers, resume=resume, recursive=recursive, on_row=on_row,
                on_update=on_update, checkpoint=shared,
            )  # fmt: skip
    except (FileExistsError, ImageLoadError, ValueError, ImportError) as e:
        _fail(str(e))
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
