"""``rnr dev``: developer helpers (tiny offline checkpoints for smoke runs). Heavy imports live in command bodies."""

from __future__ import annotations

from pathlib import Path

import typer

from agent.cli.common import fail

dev_app = typer.Typer(
    name="dev",
    help="Developer helpers: tiny random-weight checkpoints that exercise the real model code paths offline.",
    epilog="Example: rnr dev tiny-reasoner /tmp/tiny",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dev_app.callback()
def _dev() -> None:
    """Developer helpers: tiny offline checkpoints (`rnr dev tiny-reasoner`, `rnr dev tiny-restorer`)."""


@dev_app.command("tiny-reasoner", epilog="Example: rnr dev tiny-reasoner /tmp/tiny")
def tiny_reasoner(
    out_dir: Path = typer.Argument(..., help="Folder to write the checkpoint to (created if missing)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
    thinking: bool = typer.Option(False, "--thinking", help="Write a thinking-variant chat template."),
) -> None:
    """Build a tiny random-weight Qwen3-VL checkpoint (offline, ~1 MB) and print its path.

    Use it with `rnr diagnose --reasoner qwen3vl` / `bench/diagnose.py --reasoner qwen3vl --model DIR` to smoke-test
    the transformers backend without downloading weights. Its diagnoses are noise: the weights are random.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise typer.BadParameter(f"{out_dir} exists and is not a folder; choose another path", param_hint="OUT_DIR")
    try:
        from reasoner.tiny_vlm import build_tiny_reasoner
    except ImportError as e:
        fail(str(e))

    typer.echo(str(build_tiny_reasoner(out_dir, seed=seed, thinking=thinking)))


@dev_app.command("tiny-restorer", epilog="Example: rnr dev tiny-restorer /tmp/tiny-edit")
def tiny_restorer(
    out_dir: Path = typer.Argument(..., help="Folder to write the pipeline to (created if missing)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
    single: bool = typer.Option(
        False, "--single", help="Write the single-picture QwenImageEditPipeline instead of the Plus pipeline."
    ),
) -> None:
    """Build a tiny random-weight Qwen-Image-Edit(-Plus) pipeline (offline, ~20 MB) and print its path.

    Use it as `QwenEditRestorer(model=DIR, resolution=64)` (restorer `qwen-image-edit`) to smoke-test the diffusers
    backend without downloading weights. Its restorations are noise: the weights are random.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise typer.BadParameter(f"{out_dir} exists and is not a folder; choose another path", param_hint="OUT_DIR")
    try:
        from restorer.tiny_edit import build_tiny_restorer
    except ImportError as e:
        fail(str(e))

    typer.echo(str(build_tiny_restorer(out_dir, seed=seed, plus=not single)))
