"""What every ``rnr`` command shares: the one-line error exit and ``KEY=VALUE`` option parsing."""

from __future__ import annotations

import json
from typing import NoReturn

import typer


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
