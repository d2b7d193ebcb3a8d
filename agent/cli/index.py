"""``rnr index``: build, grow and query reference libraries. Heavy imports live inside the command bodies."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import typer

from agent.cli.common import fail, stdout_console

index_app = typer.Typer(
    name="index",
    help="Reference libraries: build one from a folder of high-quality images, add to it, query it.",
    epilog="Example: rnr index build good_photos/ --index refs/",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_INDEX_HELP = "Library folder (created by `rnr index build`)."


def _parse_params(items: list[str]) -> dict[str, int | None]:
    params: dict[str, int | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not (value.isdigit() or value == "none"):
            raise typer.BadParameter(f"{item!r} is not KEY=INTEGER (e.g. nlist=1024)", param_hint="--index-param")
        params[key.strip()] = None if value == "none" else int(value)
    return params


def _embedder_kwargs(name: str, device: str | None) -> dict[str, Any]:
    return {"device": device} if device and name.startswith("hf:") else {}


def _files(inputs: list[Path], recursive: bool) -> tuple[list[Path], list[str]]:
    """The image files among ``inputs``, and one line per FIFO, device or outside symlink refused (never opened)."""
    from reasoner.imageio import ImageLoadError, iter_image_files

    refused: list[str] = []
    try:
        files = iter_image_files(inputs, recursive=recursive, on_refused=lambda e: refused.append(str(e)))
    except ImageLoadError as e:
        fail(str(e))
    if not files:
        for line in refused:
            typer.echo(line, err=True)
        hint = "" if recursive else " (use --recursive for sub-folders)"
        fail(f"no images found in {', '.join(map(str, inputs))}{hint}")
    return files, refused


def _pixel_limit(max_pixels: int | None):
    """The ``--max-pixels`` in force: the option, else RNR_MAX_PIXELS, else what memory allows for decoding."""
    from reasoner.imageio import resolve_max_pixels

    try:
        return resolve_max_pixels(max_pixels, "load")
    except ValueError as e:
        fail(str(e))


def _add_with_progress(lib, files: list[Path], category: str, show: bool, max_pixels: int, refused: list[str]):
    """``lib.add`` with a progress bar on a terminal; refused inputs lead the errors, one line each."""
    from rich.console import Console

    from reasoner.files import DiskFullError
    from retrieval.library import LibraryError

    stderr = Console(stderr=True)
    try:
        if not show or not stderr.is_terminal:
            result = lib.add(files, category=category, max_pixels=max_pixels)
        else:
            from rich.progress import Progress

            with Progress(console=stderr, transient=True) as bar:
                task = bar.add_task("indexing", total=len(files))
                result = lib.add(
                    files,
                    category=category,
                    max_pixels=max_pixels,
                    progress=lambda done, _: bar.update(task, completed=done),
                )
    except (LibraryError, DiskFullError) as e:
        fail(str(e))
    result.errors[:0] = refused
    return result


def _report(lib, result, n_inputs: int, as_json: bool, action: str) -> None:
    """Print what an add did (stdout), bad inputs (stderr), and exit 1 if any input failed."""
    from rich.console import Console
    from rich.table import Table

    summary = {
        "index": str(lib.root),
        "action": action,
        "inputs": n_inputs,
        "added": len(result),
        "ids": list(result),
        "duplicates": [{"input": str(i), "existing_id": e} for i, e in result.duplicates],
        "errors": list(result.errors),
        "entries": len(lib),
        "categories": lib.counts(),
        "embedder": lib.embedder_tag,
        "index_type": lib.index_type,
        "threshold": lib.threshold,
    }
    stderr = Console(stderr=True)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        table = Table(title=f"{action} {lib.root}", show_header=False)
        table.add_column("", style="bold")
        table.add_column("")
        table.add_row("added", f"{len(result)} of {n_inputs} input(s)")
        if result.duplicates:
            table.add_row("skipped (duplicates)", str(len(result.duplicates)))
        table.add_row("entries", ", ".join(f"{c}: {n}" for c, n in summary["categories"].items()) or "0")
        table.add_row("embedder", lib.embedder_tag)
        table.add_row("index", lib.index_type)
        table.add_row("threshold", f"{lib.threshold:.2f}")
        stdout_console().print(table)
    if result.errors:
        stderr.print(f"{len(result.errors)} of {n_inputs} input(s) failed and were skipped:", highlight=False)
        for msg in result.errors:
            stderr.print(f"  {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _open(index: Path, device: str | None):
    """Open a library, or exit 2 with one line naming the damaged file and the fix."""
    from retrieval.library import LibraryError, ReferenceLibrary, read_meta

    try:
        name = read_meta(index)["embedder"]["name"]
        return ReferenceLibrary.open(index, **_embedder_kwargs(name, device))
    except (LibraryError, ImportError) as e:
        fail(str(e))


def _check_category(category: str) -> None:
    from retrieval.library import LibraryError, check_category

    try:
        check_category(category)
    except LibraryError as e:
        raise typer.BadParameter(str(e), param_hint="--category") from None


@index_app.command(epilog="Example: rnr index build good_photos/ --index refs/")
def build(
    refs_dir: Path = typer.Argument(..., help="Folder of high-quality reference images."),
    index: Path = typer.Option(..., "--index", help="Library folder to create."),
    embedder: str = typer.Option("global", "--embedder", help="'global', 'hf:<model id or path>' or 'pkg.mod:Class'."),
    category: str = typer.Option("default", "--category", help="Sub-library to put the images in."),
    index_type: str = typer.Option("flat", "--index-type", help="flat (exact), ivf, hnsw, ivf-pq (large)."),
    index_param: list[str] = typer.Option([], "--index-param", help="KEY=INT: nlist=1024, nprobe=32, M=32, m=64."),
    threshold: float | None = typer.Option(None, "--threshold", help="Default relevance threshold (cosine)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing library at --index."),
    device: str | None = typer.Option(None, "--device", help="Device of an hf: embedder (cpu, cuda, auto)."),
    max_pixels: int | None = typer.Option(None, "--max-pixels", help="Refuse images with more pixels than this."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of a table."),
) -> None:
    """Build a reference library from a folder of images (bad files are reported and skipped).

    --overwrite replaces only what reason-restore wrote in the folder (library.json, entries.sqlite, index files,
    stored copies of images); anything else there, such as the reference photos themselves, stays.
    """
    import secrets

    from retrieval.library import LibraryError, ReferenceLibrary, check_overwritable, library_files, replace_library
    from retrieval.registry import load_embedder

    _check_category(category)
    if not refs_dir.is_dir():
        raise typer.BadParameter(f"{refs_dir}: not a folder of images", param_hint="REFS_DIR")
    existing = index.exists() and (not index.is_dir() or any(index.iterdir()))
    if existing and not overwrite:
        if (index / "library.json").is_file() or library_files(index):
            fail(f"{index} holds a library; add to it with `rnr index add` or pass --overwrite")
        fail(f"{index} exists and is not an empty folder; pick a new --index")
    if existing:
        try:
            check_overwritable(index)
        except LibraryError as e:
            fail(str(e))
    params = _parse_params(index_param)
    limit = _pixel_limit(max_pixels)
    files, refused = _files([refs_dir], recursive)
    try:
        model = load_embedder(embedder, **_embedder_kwargs(embedder, device))
    except (ValueError, ImportError, OSError) as e:
        raise typer.BadParameter(str(e), param_hint="--embedder") from None

    # Build beside the target and move it into place at the end, so an interrupted build leaves nothing behind.
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".{index.name}.building-{secrets.token_hex(4)}")
    try:
        try:
            lib = ReferenceLibrary.create(tmp, model, index_type, threshold=threshold, **params)
        except LibraryError as e:
            raise typer.BadParameter(str(e), param_hint="--index-type/--index-param/--threshold") from None
        with lib:
            result = _add_with_progress(lib, files, category, not as_json, limit, refused)
        if existing:
            replace_library(tmp, index)  # leaves whatever reason-restore did not write (input photos, notes)
        else:
            if index.is_dir():
                index.rmdir()
            tmp.rename(index)
    except (LibraryError, OSError) as e:  # DiskFullError is an OSError; the old library is left as it was
        fail(str(e))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        lib = ReferenceLibrary.open(index, model)
    except LibraryError as e:
        fail(str(e))
    with lib:
        _report(lib, result, len(files) + len(refused), as_json, "built")


@index_app.command(epilog="Example: rnr index add more/ --index refs/ --category portraits")
def add(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders of images."),
    index: Path = typer.Option(..., "--index", help=_INDEX_HELP),
    category: str = typer.Option("default", "--category", help="Sub-library to add to (created if new)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    device: str | None = typer.Option(None, "--device", help="Device of an hf: embedder (cpu, cuda, auto)."),
    max_pixels: int | None = typer.Option(None, "--max-pixels", help="Refuse images with more pixels than this."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary instead of a table."),
) -> None:
    """Add images to an existing library (duplicates are skipped, bad files reported)."""
    _check_category(category)
    limit = _pixel_limit(max_pixels)
    files, refused = _files(inputs, recursive)
    with _open(index, device) as lib:
        result = _add_with_progress(lib, files, category, not as_json, limit, refused)
        _report(lib, result, len(files) + len(refused), as_json, "added to")


@index_app.command(epilog="Example: rnr index query photo.jpg --index refs/ -k 5")
def query(
    image: Path = typer.Argument(..., help="The (degraded) image to find references for."),
    index: Path = typer.Option(..., "--index", help=_INDEX_HELP),
    k: int = typer.Option(5, "-k", "--top-k", min=1, help="How many references at most."),
    category: list[str] = typer.Option([], "--category", help="Search only this sub-library (repeatable)."),
    threshold: float | None = typer.Option(None, "--threshold", help="Minimum score (default: the library's)."),
    device: str | None = typer.Option(None, "--device", help="Device of an hf: embedder (cpu, cuda, auto)."),
    max_pixels: int | None = typer.Option(None, "--max-pixels", help="Refuse a query with more pixels than this."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Find the references most similar to an image."""
    from rich.table import Table

    from reasoner.imageio import ImageLoadError, load_image
    from retrieval.library import LibraryError

    try:
        loaded = load_image(image, max_pixels=_pixel_limit(max_pixels))
    except ImageLoadError as e:
        fail(str(e))
    with _open(index, device) as lib:
        try:
            refs = lib.search(loaded, k=k, category=category or None, threshold=threshold)
        except LibraryError as e:
            fail(str(e))
        used = lib.threshold if threshold is None else threshold
        tag = lib.embedder_tag
    if as_json:
        doc = {
            "query": str(image),
            "index": str(index),
            "embedder": tag,
            "k": k,
            "threshold": used,
            "categories": category or None,
            "references": [r.model_dump(mode="json") for r in refs],
        }
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    con = stdout_console()
    if not refs:
        con.print(f"no reference scores ≥ {used:.2f} for {image}; lower --threshold to see weaker matches")
        return
    table = Table(title=f"references for {image} (threshold {used:.2f}, {tag})")
    for col in ("rank", "score", "category", "id", "path"):
        table.add_column(col, justify="right" if col in ("rank", "score") else "left", overflow="fold")
    for r in refs:
        table.add_row(str(r.rank), f"{r.score:.3f}", r.category or "", r.id, r.path)
    con.print(table)
