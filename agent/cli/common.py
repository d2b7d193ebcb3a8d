"""What every ``rnr`` command shares: one-line errors, readable help, ``KEY=VALUE`` parsing, output consoles."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn, get_args, get_origin

import typer
from typer.core import TyperArgument, TyperGroup

#: ``-h`` as well as ``--help``, on every command (sub-commands inherit it from the group's context).
CONTEXT = {"help_option_names": ["-h", "--help"]}


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` (one line, on stderr) and exit with ``code`` (2: a usage error, 1: a failure)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def parse_options(pairs: list[str], hint: str) -> dict:
    """``KEY=VALUE`` pairs as a dict; values are JSON scalars when they parse (8, 0.5, true, null), else strings.

    >>> parse_options(["steps=8", "cpu_offload=true", "prompt=sharp photo"], "--restorer-opt")
    {'steps': 8, 'cpu_offload': True, 'prompt': 'sharp photo'}
    """
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


def validation_line(err: Exception) -> str:
    """A pydantic ValidationError (or any error) as one line: ``field: message`` for the first error."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "value"
        return f"{where}: {first.get('msg', '')}"
    from reasoner.common import one_line

    return one_line(err)


def stdout_console():
    """A rich console for stdout that does not cut tables at 80 columns when stdout is a pipe or a file.

    A terminal's width is its own; a pipe's is ``COLUMNS`` when set, else wide enough for any table rnr prints.
    """
    import os

    from rich.console import Console

    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(width=max(console.width, 200), soft_wrap=False)
    return console


def require_model(name: str, model: str | None, role: str, option: str) -> None:
    """Exit (one line) when backend ``name`` needs a model and none was given: rnr never picks one for the user.

    The rule is :func:`agent.backends.model_default` (the class's source is read, not imported, so the answer comes
    at once even when the backend imports torch).
    """
    from agent.backends import MODEL_EXAMPLES, model_default

    if model:
        return
    if model_default(name, role) is not None:
        fail(f"{role} {name!r} needs a model: pass {option} with a hub id (e.g. {MODEL_EXAMPLES[role]}) or a local "
             "folder")  # fmt: skip


class RnrGroup(TyperGroup):
    """The ``rnr`` command group: one-line usage errors, readable types in help, ``-h``.

    Click's usage errors (a missing argument, a bad value) become ``error: <message> (rnr CMD -h for help)`` on one
    line, exit code 2. Types read as words (``PATH``, ``N``), flags show none.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _readable_types(self)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        errors = typer.BadParameter.__mro__[2]  # click's ClickException (typer vendors click)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except errors as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # no arguments: typer has printed the help
                sys.exit(2)
            ctx = getattr(e, "ctx", None)
            hint = f" ({ctx.command_path} -h for help)" if ctx is not None else ""
            typer.echo(f"error: {' '.join(e.format_message().split())}{hint}", err=True)
            sys.exit(e.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _flag_help(get_help_option):
    """``-h, --help`` shown as the flag it is (click builds the option per context, typed ``<bool>``)."""

    def wrapped(ctx):
        option = get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return wrapped


_WORDS = {int: "N", float: "NUMBER", str: "TEXT", Path: "PATH"}


def _readable_types(group) -> None:
    """Give every parameter of ``group`` (recursively) a metavar in words, in place of ``<list[Path]>``."""
    for command in [group, *group.commands.values()]:
        if command is not group and hasattr(command, "commands"):
            _readable_types(command)
        command.get_help_option = _flag_help(command.get_help_option)
        for param in command.params:
            if param.metavar is not None:
                continue
            if getattr(param, "is_flag", False):
                param.metavar = ""
                continue
            annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
            if get_origin(annotation) is list:
                (annotation,) = get_args(annotation)
            word = _WORDS.get(annotation)
            if isinstance(param, TyperArgument):
                param.metavar = param.name.upper()
                shown = (word or "TEXT") + ("..." if param.nargs != 1 else "")
                param.display_type_rich = lambda ctx, shown=shown: shown  # typer shows arguments' types apart
            elif word is not None:
                param.metavar = word
