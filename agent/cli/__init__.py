"""The ``rnr`` command line: one typer app, one thin module per command (group).

Heavy imports live inside command bodies, so ``rnr --help`` stays instant and commands whose extras are missing
still list. The app is the console script ``rnr`` (``agent.cli:app``) and ``python -m agent.cli``.
"""

from __future__ import annotations

import os

import typer

from agent.cli.common import CONTEXT, RnrGroup
from agent.cli.dev import dev_app
from agent.cli.diagnose import diagnose
from agent.cli.index import index_app
from agent.cli.report import report_command
from agent.cli.restore import restore
from agent.cli.tools import calibrate, examples, schema
from agent.cli.train import synth, train_app
from agent.cli.ui import ui_command


class _Ordered(RnrGroup):
    """``rnr --help`` lists commands by use, not alphabetically."""

    def list_commands(self, ctx) -> list[str]:  # noqa: D102
        known = [name for name in ORDER if name in self.commands]
        return known + sorted(set(self.commands) - set(known))


#: The order of `rnr --help`: what a newcomer runs first comes first.
ORDER = ("restore", "diagnose", "report", "ui", "examples", "index", "synth", "train", "calibrate", "schema", "dev",
         "version")  # fmt: skip

app = typer.Typer(
    name="rnr",
    cls=_Ordered,
    context_settings=CONTEXT,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_text() -> str:
    from reasoner.version import rnr_version

    return f"rnr {rnr_version()}"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(_version_text())
        raise typer.Exit()


@app.callback(epilog="Example: rnr restore photos/ --out restored/")
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """reason-restore: diagnose image degradations, then restore (reason -> retrieve -> restore -> re-score)."""


_EXAMPLES = {
    "restore": "rnr restore photos/ --out restored/ --strength 0.7 --skip jpeg",
    "diagnose": "rnr diagnose photo.jpg --json",
    "report": "rnr report restored/ --open",
    "ui": "rnr ui --port 7860",
    "examples": "rnr examples examples/ && rnr restore examples/ --out restored/",
    "synth": "rnr synth --n 2000 --out data/sft -j 4",
    "calibrate": "rnr calibrate --n 8000 --seed 0",
    "schema": "rnr schema --trace --out trace.schema.json",
}
_COMMANDS = {"restore": restore, "diagnose": diagnose, "report": report_command, "ui": ui_command,
             "examples": examples, "synth": synth, "calibrate": calibrate, "schema": schema}  # fmt: skip
for _name, _command in _COMMANDS.items():
    app.command(_name, epilog=f"Example: {_EXAMPLES[_name]}")(_command)


@app.command("version", epilog="Example: rnr version")
def version_command() -> None:
    """Print the installed version (also `rnr --version`)."""
    typer.echo(_version_text())


for _group in (index_app, train_app, dev_app):
    app.add_typer(_group)

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry for `python -m agent.cli`
    """Run the app."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    app()
