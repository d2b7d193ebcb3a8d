"""Small ``rnr`` commands: ``schema`` (the published JSON Schemas), ``calibrate`` and ``examples``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


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


def calibrate(
    n: int | None = typer.Option(
        None, "--n", help="Synthetic samples to fit on (default: 8000 for measure, 3000 cases for --quality)."
    ),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0: one per core)."),
    out: Path | None = typer.Option(None, "--out", help="Where to write (default: the committed file)."),
    quality: bool = typer.Option(
        False, "--quality", help="Refit the artefact-aware quality scorer (reasoner/calibration/quality.json) instead."
    ),
) -> None:
    """Refit the measure backend's calibration, or the quality scorer, from self-synthesised data.

    Both are reproducible: the same --n and --seed give the same fit on the same library versions (README says how
    the committed files differ from a refit on today's zoo).
    """
    if quality:
        from reasoner.quality.model import DEFAULT_PATH as QUALITY_PATH
        from rl.calibrate_quality import DEFAULT_N
        from rl.calibrate_quality import fit as fit_quality
        from rl.calibrate_quality import write as write_quality

        model = fit_quality(n=n or DEFAULT_N, seed=seed, workers=workers or None)
        path = write_quality(model, out or QUALITY_PATH)
        typer.echo(json.dumps({"written": str(path), **model.meta}), err=False)
        return
    from reasoner.calibration import DEFAULT_PATH
    from rl.calibrate import fit, write

    cal = fit(n=n or 8000, seed=seed, workers=workers or None)
    path = write(cal, out or DEFAULT_PATH)
    typer.echo(json.dumps({"written": str(path), **cal.meta}), err=False)


def examples(
    out: Path = typer.Argument(Path("examples"), help="Directory to write the example photos to."),
    seed: int = typer.Option(7, "--seed"),
) -> None:
    """Write a few degraded bundled photos (and a clean one) to try the pipeline on."""
    from rl.photos import write_examples

    for path in write_examples(out, seed=seed):
        typer.echo(str(path))
