"""``rnr ui``: serve the interactive page (extra ``ui``).

Gradio is imported inside the command, so ``rnr --help`` stays instant and installs without the extra still run
every other command.
"""

from __future__ import annotations

from pathlib import Path

import typer

from agent.cli.common import fail


def ui_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; loopback by default (0.0.0.0: all)."),
    port: int = typer.Option(7860, "--port", help="TCP port of the page."),
    index: Path | None = typer.Option(None, "--index", help="Default reference library folder (rnr index build)."),
    work_dir: Path | None = typer.Option(
        None, "--work-dir", help="Where runs, checkpoints and downloads are kept (default: a new temporary folder)."
    ),
    max_pixels: int | None = typer.Option(
        None,
        "--max-pixels",
        help="Refuse uploads whose header declares more pixels than this (default: RNR_MAX_PIXELS, else what "
        "memory allows for a restoration).",
    ),
) -> None:
    """Open a local web page: diagnose an image, review and edit the diagnosis, restore, download the trace."""
    from reasoner.imageio import resolve_max_pixels

    if not 0 < port < 65536:
        raise typer.BadParameter(f"{port}: a TCP port is 1..65535", param_hint="--port")
    if index is not None and not index.is_dir():
        raise typer.BadParameter(f"{index}: no such reference library folder", param_hint="--index")
    try:
        limit = resolve_max_pixels(max_pixels, "restore")
    except ValueError as e:  # the message names --max-pixels or RNR_MAX_PIXELS, whichever was wrong
        raise typer.BadParameter(str(e), param_hint="--max-pixels" if max_pixels is not None else None) from None
    try:
        from agent.ui.page import launch
    except ImportError as e:
        fail(f"rnr ui needs {e.name}; install with: pip install 'reason-restore[ui]'")
    typer.echo(
        f"rnr ui: http://{host}:{port}  (Ctrl+C to stop; uploads up to {limit:,} pixels: {limit.why})", err=True
    )
    launch(host=host, port=port, work_dir=work_dir, index=str(index) if index else None, block=True, max_pixels=limit)
