"""``rnr diagnose``: records for images, shown as a readable trace or as JSON lines."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from agent.cli.common import fail, require_model, stdout_console


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
    """Diagnose degradations in images and explain the reasoning (nothing is written unless --out is given)."""
    from agent.backends import BackendSpec

    require_model(reasoner, model, "reasoner", "--model")
    files, refused, limit = _inputs(inputs, recursive, follow_symlinks, max_pixels)
    if out is not None:
        _check_records_out(out, [*files, *(Path(e.path) for e in refused)])
    try:
        backend = BackendSpec("reasoner", reasoner, model or None).load()
    except (ValueError, ImportError, FileNotFoundError, OSError) as e:
        raise typer.BadParameter(str(e), param_hint="--reasoner/--model") from None
    records, failures = _diagnose_all(backend, files, refused, limit, as_json)
    if out is not None:
        from agent.io import write_jsonl_atomic

        write_jsonl_atomic(out, (r.model_dump(mode="json") for r in records))
    if failures:
        from rich.console import Console

        stderr = Console(stderr=True)
        stderr.print(f"{len(failures)} of {len(files) + len(refused)} image(s) failed:", highlight=False)
        for msg in failures:
            stderr.print(f"  {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _inputs(inputs: list[Path], recursive: bool, follow_symlinks: bool, max_pixels: int | None):
    """The image files, the inputs refused unread (FIFOs, links out), and the pixel limit; exits on bad options."""
    from reasoner.imageio import ImageLoadError, iter_image_files, resolve_max_pixels

    refused: list[ImageLoadError] = []
    try:
        files = iter_image_files(
            inputs, recursive=recursive, follow_symlinks=follow_symlinks, on_refused=refused.append
        )
        limit = resolve_max_pixels(max_pixels, "diagnose")
    except ImageLoadError as e:
        fail(str(e))
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--max-pixels") from None
    if not files and not refused:
        fail(f"no images found in {', '.join(map(str, inputs))}")
    return files, refused, limit


def _diagnose_all(backend, files: list[Path], refused: list, limit: int, as_json: bool) -> tuple[list, list[str]]:
    """Diagnose each file, printing records as they come (JSON lines or panels) and errors on stderr.

    Returns:
        The records, and one message per input that failed (the refused ones first).

    """
    from rich.console import Console

    from agent.cli.render import render_record
    from reasoner.imageio import ImageLoadError, load_image

    stdout, stderr = stdout_console(), Console(stderr=True)
    records, failures = [], [str(e) for e in refused]
    for msg in failures:
        stderr.print(f"[red]error:[/] {msg}", highlight=False, soft_wrap=True)

    def run_one(path: Path) -> None:
        try:
            rec = backend.diagnose(load_image(path, max_pixels=limit))
        except ImageLoadError as e:
            failures.append(str(e))
            stderr.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
            return
        records.append(rec)
        if as_json:
            sys.stdout.write(rec.model_dump_json() + "\n")
            sys.stdout.flush()
        else:
            render_record(stdout, rec)

    if not as_json and len(files) > 1 and stderr.is_terminal:
        from rich.progress import Progress

        with Progress(console=stderr, transient=True) as bar:
            task = bar.add_task("diagnosing", total=len(files))
            for path in files:
                run_one(path)
                bar.advance(task)
    else:
        for path in files:
            run_one(path)
    return records, failures


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
