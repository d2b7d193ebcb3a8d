"""The ``rnr`` command line: one typer app, one thin module per command (group).

Heavy imports live inside command bodies, so ``rnr --help`` stays instant and commands whose extras are missing
still list. The app is the console script ``rnr`` (``agent.cli:app``) and ``python -m agent.cli``.
"""

from __future__ import annotations

import os

import typer

from agent.cli.dev import dev_app
from agent.cli.diagnose import diagnose
from agent.cli.index import index_app
from agent.cli.report import report_command
from agent.cli.restore import restore
from agent.cli.tools import calibrate, examples, schema
from agent.cli.train import synth, train_app
from agent.cli.ui import ui_command

app = typer.Typer(
    name="rnr",
    help="reason-restore: diagnose image degradations, then restore (reason -> retrieve -> restore -> re-score).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Registration order is the order of `rnr --help`.
app.command("report")(report_command)
app.command("synth")(synth)
app.command("ui")(ui_command)
for _command in (diagnose, restore, schema, calibrate, examples):
    app.command()(_command)
for _group in (index_app, train_app, dev_app):
    app.add_typer(_group)

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry for `python -m agent.cli`
    """Run the app."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    app()
