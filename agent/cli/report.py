"""``rnr report RUN_DIR``: write the HTML report of a batch run (:mod:`agent.ui.report`)."""

from __future__ import annotations

from pathlib import Path

import typer

from agent.cli.common import fail


def report_command(
    run_dir: Path = typer.Argument(..., help="The --out folder of an `rnr restore` run."),
    out: Path | None = typer.Option(None, "--out", "-o", help="HTML file to write (default RUN_DIR/report.html)."),
    embed: bool = typer.Option(
        True, "--embed/--relative", help="Embed thumbnails (self-contained) or link images by relative path."
    ),
    thumb: int = typer.Option(256, "--thumb", min=32, max=1024, help="Thumbnail size in pixels (embedded mode)."),
    open_: bool = typer.Option(False, "--open", help="Open the report in the default browser."),
) -> None:
    """Write a self-contained HTML report of a batch run: thumbnails, severity charts, failures, timings."""
    from rich.console import Console

    from agent.ui.report import ReportError, write_report

    stderr = Console(stderr=True)

    # What cannot be read (a bad manifest line, a damaged trace) is a note in the page and a warning here.
    def warn(message: str) -> None:
        stderr.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    try:
        path = write_report(run_dir, out, embed=embed, thumb=thumb, warn=warn)
    except (ReportError, OSError) as e:
        fail(str(e))
    typer.echo(str(path))
    if open_:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())
