"""``rnr synth`` (training data) and ``rnr train sft|grpo``; heavy imports (datasets, torch, TRL) inside commands."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from agent.cli.common import fail

train_app = typer.Typer(
    name="train",
    help="Fine-tune a vision-language reasoner (sft: supervised; grpo: reinforcement with restoration rewards).",
    epilog="Example: rnr train sft --print-recipe > my-sft.yaml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _size(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    if not sep or not h.isdigit() or not w.isdigit() or int(h) < 16 or int(w) < 16:
        raise typer.BadParameter(f"{text!r} is not HEIGHTxWIDTH in pixels, each at least 16 (e.g. 256x384)")
    return int(h), int(w)


def _n_kinds(text: str) -> int | tuple[int, int]:
    lo, sep, hi = text.partition("-")
    if not lo.isdigit() or (sep and not hi.isdigit()):
        raise typer.BadParameter(f"{text!r} is not a count or an inclusive range like 1-3")
    return (int(lo), int(hi)) if sep else int(lo)


def _quiet_libraries() -> None:
    """No progress bars from datasets/transformers: stdout carries one JSON document and stderr stays quiet."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _recipe(kind: str, config: Path | None) -> Path:
    """The recipe file to use: ``--config``, else the packaged one (found from any folder, editable install or not)."""
    from rl.recipe import RecipeError, recipe_path

    if config is None:
        try:
            return recipe_path(kind)
        except RecipeError as e:
            fail(str(e))
    if not config.is_file():
        raise typer.BadParameter(
            f"{config} does not exist; `rnr train {kind} --print-recipe > {kind}.yaml` writes the default recipe to "
            "copy and edit",
            param_hint="--config",
        )
    return config


def _print_recipe(kind: str, config: Path | None, overrides: list[str], as_json: bool) -> None:
    """Print a recipe and stop; nothing is loaded or trained.

    Without ``--config``, ``--set`` or ``--json``: the packaged recipe as committed, comments included, to copy and
    edit. Otherwise the effective recipe (YAML, or one JSON document with ``--json``).
    """
    from rl.recipe import GRPORecipe, RecipeError, SFTRecipe, recipe_text

    if config is None and not overrides and not as_json:
        sys.stdout.write(recipe_text(kind))
        return
    config = _recipe(kind, config)
    try:
        recipe = (SFTRecipe if kind == "sft" else GRPORecipe).load(config, overrides)
    except RecipeError as e:
        raise typer.BadParameter(str(e), param_hint="--config/--set") from None
    sys.stdout.write(json.dumps(recipe.model_dump(mode="json")) + "\n" if as_json else recipe.to_yaml())


def _run_recipe(run, as_json: bool):
    """``run(log)`` under the CLI's conventions: progress to stderr (none with --json), one-line errors.

    Returns ``(result, stderr console)``.
    """
    from rich.console import Console

    from rl.recipe import RecipeError

    stderr = Console(stderr=True)
    if as_json:
        _quiet_libraries()
    log = None if as_json else (lambda line: stderr.print(line, highlight=False, soft_wrap=True))
    try:
        return run(log), stderr
    except RecipeError as e:
        raise typer.BadParameter(str(e), param_hint="--config/--set") from None
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        fail(str(e))


def synth(
    n: int = typer.Option(..., "--n", min=1, help="Number of samples."),
    out: Path = typer.Option(..., "--out", help="Dataset folder to create (a Hugging Face datasets folder)."),
    seed: int = typer.Option(0, "--seed", help="Set seed; sample i depends only on (seed, i)."),
    size: str = typer.Option("256x384", "--size", help="Crop HEIGHTxWIDTH (smaller where a photo is)."),
    kinds: list[str] = typer.Option([], "--kind", help="Synthesise these kinds on every degraded sample (repeat)."),
    n_kinds: str = typer.Option("1-3", "--n-kinds", help="Kinds drawn per degraded sample: N or LOW-HIGH."),
    clean_fraction: float = typer.Option(0.2, "--clean-fraction", min=0.0, max=1.0, help="Share of clean samples."),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes (same result for any count)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty --out folder."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Write supervised fine-tuning data: degraded photo crops, ground-truth records and target completions."""
    from collections import Counter

    from rich.console import Console

    from reasoner.schema import KINDS
    from rl.synth import COLUMNS, load_dataset, write_dataset

    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise typer.BadParameter(f"unknown kind(s) {bad}; choose from {list(KINDS)}", param_hint="--kind")
    hw, nk = _size(size), _n_kinds(n_kinds)
    stderr = Console(stderr=True)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise typer.BadParameter(f"{out} is not empty; choose a new folder or pass --overwrite", param_hint="--out")
    if as_json:
        _quiet_libraries()
    t0 = time.perf_counter()
    kwargs = dict(seed=seed, size=hw, kinds=kinds or None, n_kinds=nk, clean_fraction=clean_fraction)
    try:
        if as_json or not stderr.is_terminal:
            write_dataset(out, n, workers=workers, overwrite=overwrite, **kwargs)
        else:
            from rich.progress import Progress

            with Progress(console=stderr, transient=True) as bar:
                task = bar.add_task("synthesising", total=n)
                progress = lambda done, _total: bar.update(task, completed=done)  # noqa: E731
                write_dataset(out, n, workers=workers, overwrite=overwrite, progress=progress, **kwargs)
    except (ValueError, FileExistsError) as e:
        fail(str(e))
    ds = load_dataset(out)
    counts = Counter(k for ks in ds["kinds"] for k in ks)
    summary = {
        "dataset": str(out),
        "samples": len(ds),
        "clean": sum(1 for ks in ds["kinds"] if not ks),
        "kinds": {k: counts[k] for k in KINDS},
        "seed": seed,
        "size": list(hw),
        "columns": list(COLUMNS),
        "elapsed_s": round(time.perf_counter() - t0, 3),
    }
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    shown = ", ".join(f"{k} {v}" for k, v in summary["kinds"].items() if v)
    stderr.print(f"wrote {len(ds)} samples to {out} ({summary['clean']} clean; {shown}) in {summary['elapsed_s']} s")


@train_app.command(epilog="Example: rnr train sft --print-recipe > my-sft.yaml && rnr train sft -c my-sft.yaml")
def sft(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML recipe (default: the packaged sft recipe; --print-recipe shows it)."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe field: KEY=VALUE (repeat; lora.r=8)."),
    print_recipe: bool = typer.Option(
        False,
        "--print-recipe",
        help="Print the recipe and stop: the default one to copy and edit, or with --config /--set the effective one.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout (no progress)."),
) -> None:
    """Supervised fine-tuning of a Qwen3-VL reasoner with TRL; the output folder loads with --reasoner qwen3vl."""
    if print_recipe:
        _print_recipe("sft", config, overrides, as_json)
        return
    config = _recipe("sft", config)
    try:
        from rl.sft import train_sft
        from rl.training import read_manifest
    except ImportError as e:
        fail(str(e))
    out, stderr = _run_recipe(lambda log: train_sft(config, overrides, log=log), as_json)
    m = read_manifest(out)
    summary = {
        "output_dir": str(out),
        "samples": m["samples"],
        "global_step": m["global_step"],
        "train_loss": m["train_loss"],
        "final_loss": m["final_loss"],
        "step_time_s": m["step_time_s"],
    }
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        stderr.print(
            f"trained {summary['global_step']} steps on {summary['samples']} samples: final loss "
            f"{summary['final_loss']:.4g}, {summary['step_time_s']:.3g} s/step -> {out}",
            highlight=False,
        )


@train_app.command(epilog="Example: rnr train grpo --dry-run --samples 4")
def grpo(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML recipe (default: the packaged grpo recipe; --print-recipe shows it)."
    ),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe field: KEY=VALUE (repeat)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Score the policy's generations on a few samples; no training."
    ),
    samples: int = typer.Option(4, "--samples", min=1, help="Samples for --dry-run."),
    print_recipe: bool = typer.Option(
        False,
        "--print-recipe",
        help="Print the recipe and stop: the default one to copy and edit, or with --config /--set the effective one.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout (no progress)."),
) -> None:
    """GRPO of a Qwen3-VL reasoner with restoration rewards (TRL); the output loads with --reasoner qwen3vl."""
    if print_recipe:
        _print_recipe("grpo", config, overrides, as_json)
        return
    config = _recipe("grpo", config)
    try:
        from rl.grpo import dry_run as run_dry
        from rl.grpo import train_grpo
        from rl.training import read_manifest
    except ImportError as e:
        fail(str(e))
    if dry_run:
        report, stderr = _run_recipe(lambda log: run_dry(config, overrides, samples=samples, log=log), as_json)
    else:
        out, stderr = _run_recipe(lambda log: train_grpo(config, overrides, log=log), as_json)
    if dry_run:
        if as_json:
            sys.stdout.write(json.dumps(report) + "\n")
            return
        from rich.table import Table

        table = Table(title=f"rewards on {report['samples']} samples x {report['generations']} generations")
        for col in ("reward", "weight", "mean", "min", "max", "None"):
            table.add_column(col, justify="left" if col == "reward" else "right")
        show = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        for name, r in report["rewards"].items():
            table.add_row(name, show(r["weight"]), show(r["mean"]), show(r["min"]), show(r["max"]), str(r["none"]))
        stderr.print(table)
        return
    m = read_manifest(out)
    last = next((h for h in reversed(m["log_history"]) if "reward" in h), {})
    summary = {
        "output_dir": str(out),
        "samples": m["samples"],
        "global_step": m["global_step"],
        "rewards": m["rewards"],
        "final_reward": m["final_reward"],
        "final_reward_means": {k: v for k, v in last.items() if k.startswith("rewards/") and k.endswith("/mean")},
        "kl": last.get("kl"),
        "step_time_s": m["step_time_s"],
    }
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        stderr.print(
            f"trained {summary['global_step']} steps on {summary['samples']} samples: final reward "
            f"{summary['final_reward']}, {summary['step_time_s']:.3g} s/step -> {out}",
            highlight=False,
        )
