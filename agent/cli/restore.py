"""``rnr restore``: a batch of images through the graph into one output folder (local or Ray engine).

The batch itself is :func:`agent.batch.run_batch` (or :func:`agent.ray_engine.run_batch_ray`); this module turns
options into its arguments and its progress into terminal output, and every way it stops early into one line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from agent.cli.common import fail, parse_options, require_model, stdout_console, validation_line
from reasoner.common import one_line


def restore(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or directories of images."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder: restored images (named as the inputs), <name>.json traces, manifest."
    ),
    strength: list[str] = typer.Option(
        [],
        "--strength",
        "-s",
        metavar="S|KIND=S",
        help="How strongly to restore, 0-2: 0 returns the input untouched, 1 as diagnosed (default). KIND=S sets one "
        "kind (repeat): --strength 0.7 --strength noise=0.4.",
    ),  # fmt: skip
    only: list[str] = typer.Option([], "--only", metavar="KIND", help="Restore only this kind (repeat)."),
    skip: list[str] = typer.Option([], "--skip", metavar="KIND", help="Never restore this kind (repeat)."),
    add: list[str] = typer.Option(
        [],
        "--add",
        metavar="KIND[=SEV]",
        help="Restore this kind although the diagnosis did not report it (repeat), its settings read off the image as "
        "if present (measure; other reasoners: defaults), at severity SEV (0.1-1) if given; a kind the diagnosis "
        "found keeps its own. The trace's review lists it.",
    ),  # fmt: skip
    output_format: str | None = typer.Option(
        None,
        "--format",
        "-f",
        metavar="png|jpeg|webp|tiff",
        help="Container of the restored images (default: each input's own, with its bit depth and metadata).",
    ),  # fmt: skip
    quality: int | None = typer.Option(
        None, "--quality", "-q", metavar="1-100", help="JPEG/WebP quality (default 95; JPEG with 4:4:4 chroma)."
    ),
    workers: int = typer.Option(1, "--workers", "-j", help="Worker processes."),
    resume: bool = typer.Option(False, "--resume", help="Continue a run in --out, skipping finished images."),
    trace: bool = typer.Option(False, "--trace", help="Stream each graph node's update live (forces 1 worker)."),
    reasoner: str = typer.Option("measure", "--reasoner", help="Diagnosis backend."),
    scorer: str = typer.Option("measure", "--scorer", help="Re-scoring backend."),
    reasoner_model: str | None = typer.Option(None, "--reasoner-model", help="Model id or folder for --reasoner."),
    scorer_model: str | None = typer.Option(None, "--scorer-model", help="Model id or folder for --scorer."),
    restorer: str = typer.Option(
        "classical", "--restorer", help="Restoration backend: classical, qwen-image-edit, diffusion."
    ),
    restorer_model: str | None = typer.Option(None, "--restorer-model", help="Pipeline id or folder for --restorer."),
    restorer_opts: list[str] = typer.Option(
        [], "--restorer-opt", help="Restorer option KEY=VALUE (repeat): steps=8, resolution=512, cpu_offload=true."
    ),
    index: Path | None = typer.Option(None, "--index", help="Reference library folder (rnr index build)."),
    max_attempts: int = typer.Option(3, "--max-attempts", help="Restore attempts per image, retries included."),
    policy: Path | None = typer.Option(
        None,
        "--policy",
        metavar="FOLDER",
        help="A trained restoration-plan policy folder (bench/grpo_restore.py --keep): it writes each image's first "
        "plan from the diagnosis; re-scored and rolled back like any plan, the hand plan when its reply does not "
        "parse.",
    ),  # fmt: skip
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-directories."),
    as_json: bool = typer.Option(False, "--json", help="Print one manifest row per image as JSON lines."),
    engine: str = typer.Option("local", "--engine", help="Batch engine: local (process pool) or ray (extra 'dist')."),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster (auto, ray://host:10001); default: a local Ray runtime."
    ),
    gpus_per_worker: float = typer.Option(0, "--gpus-per-worker", help="GPUs per Ray worker (fractions share one)."),
    checkpoint: str = typer.Option(
        "sqlite",
        "--checkpoint",
        help="Per-image checkpoints: sqlite (a file in --out) or postgres://user:pass@host:port/db, shared by all "
        "workers and hosts (which then need the same --out on a shared filesystem).",
    ),
    follow_symlinks: bool = typer.Option(
        False, "--follow-symlinks", help="Follow symlinks that lead out of an input folder (refused by default)."
    ),
    max_pixels: int | None = typer.Option(
        None, "--max-pixels", help="Refuse larger images (default: what memory allows; also RNR_MAX_PIXELS)."
    ),
) -> None:
    """Diagnose, retrieve, restore and re-score images; write restored images and traces.

    Each restored image keeps its input's name, container and bit depth (a 16-bit PNG stays a 16-bit PNG, a JPEG
    stays a JPEG at quality 95 with 4:4:4 chroma) and its EXIF, ICC profile and XMP; --format and --quality choose
    otherwise.
    """
    from agent.backends import Backends

    _check_engine(engine, address, gpus_per_worker, trace)
    settings = _settings(max_attempts, strength, only, skip, policy, add)
    output = _output(output_format, quality)
    restorer_options = parse_options(restorer_opts, "--restorer-opt")
    if "strength" in restorer_options:
        fail("--restorer-opt strength is not a restorer option; use --strength S (0-2) or --strength KIND=S")
    for name, model, role, option in ((reasoner, reasoner_model, "reasoner", "--reasoner-model"),
                                      (scorer, scorer_model, "scorer", "--scorer-model"),
                                      (restorer, restorer_model, "restorer", "--restorer-model")):  # fmt: skip
        require_model(name, model, role, option)
    shared = _shared_checkpoint(checkpoint)
    backends = Backends.of(reasoner, scorer, restorer, index, reasoner_model=reasoner_model, scorer_model=scorer_model,
                           restorer_model=restorer_model, restorer_options=restorer_options)  # fmt: skip
    view = BatchView(as_json=as_json, trace=trace)
    options = dict(backends=backends, settings=settings, resume=resume, recursive=recursive,
                   follow_symlinks=follow_symlinks, max_pixels=max_pixels, on_row=view.on_row, on_warning=view.warn,
                   on_start=view.on_start, checkpoint=shared)  # fmt: skip
    options["output"] = output
    if engine == "ray":
        options |= dict(address=address, gpus_per_worker=gpus_per_worker)
    else:
        options["on_item"] = view.on_item
    summary = _run(inputs, out, engine, 1 if trace else workers, view, options)
    _finish(summary, out, view)


def parse_strength(values: list[str]) -> tuple[float | None, dict[str, float]]:
    """``--strength`` values: an overall strength (``S``) and per-kind ones (``KIND=S``), each checked to be 0-2.

    Raises:
        typer.BadParameter: A value that is not a number in 0-2, or an unknown kind (one line listing the kinds).

    >>> parse_strength(["0.7", "noise=0.4"])
    (0.7, {'noise': 0.4})

    """
    overall, per_kind = None, {}
    for value in values:
        kind, sep, number = value.rpartition("=")
        kind = kind.strip()
        try:
            s = float(number)
        except ValueError:
            s = float("nan")
        if not 0 <= s <= 2:
            raise typer.BadParameter(f"{value!r}: a strength is a number from 0 to 2 (S or KIND=S)",
                                     param_hint="--strength")  # fmt: skip
        if sep:
            per_kind[check_kind(kind, "--strength")] = s
        else:
            overall = s
    return overall, per_kind


def check_kind(kind: str, option: str) -> str:
    """``kind`` if it names a degradation kind, else a one-line usage error listing them."""
    from reasoner.schema import KINDS

    if kind not in KINDS:
        raise typer.BadParameter(f"{kind!r} is not a degradation kind; choose from {', '.join(KINDS)}",
                                 param_hint=option)  # fmt: skip
    return kind


def parse_add(values: list[str]) -> dict[str, float]:
    """``--add`` values: ``KIND`` (severity 0: the reading's own) or ``KIND=SEV``, the severity a number 0-1.

    >>> parse_add(["haze", "noise=0.3"])
    {'haze': 0.0, 'noise': 0.3}
    """
    out = {}
    for value in values:
        kind, sep, number = value.partition("=")
        try:
            severity = float(number) if sep else 0.0
        except ValueError:
            severity = float("nan")
        if not 0 <= severity <= 1:
            raise typer.BadParameter(f"{value!r}: a severity is a number from 0.1 to 1 (KIND or KIND=SEV)",
                                     param_hint="--add")  # fmt: skip
        out[check_kind(kind.strip(), "--add")] = severity
    return out


def _settings(
    max_attempts: int,
    strength: list[str],
    only: list[str],
    skip: list[str],
    policy: Path | None = None,
    add: list[str] = (),
):
    """The run's :class:`agent.state.Settings` from the options; a bad value is one line, exit 2."""
    from pydantic import ValidationError

    from agent.state import Settings

    overall, per_kind = parse_strength(strength)
    only = [check_kind(k, "--only") for k in only]
    skip = [check_kind(k, "--skip") for k in skip]
    added = parse_add(list(add))
    both = sorted(set(only) & set(skip))
    if both:
        fail(f"--only and --skip both name {', '.join(both)}; name each kind in one of them")
    if clash := sorted(set(added) & set(skip)):
        fail(f"--add and --skip both name {', '.join(clash)}; name each kind in one of them")
    if only and (left := sorted(set(added) - set(only))):
        fail(f"--add {', '.join(left)} would not be restored: --only names {', '.join(only)}; add it there too")
    fields = dict(max_attempts=max_attempts, kind_strength=per_kind, only=only, skip=skip, add=added)
    if overall is not None:
        fields["strength"] = overall
    if policy is not None:
        from rl.plan_policy import PlanPolicyError, read_meta

        try:
            read_meta(policy)  # a folder that is not a plan policy is one line, before any image is read
        except PlanPolicyError as e:
            fail(f"--policy: {e}")
        fields["policy"] = str(policy.expanduser().resolve())
    try:
        return Settings(**fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = str(first["loc"][0]) if first["loc"] else ""
        option = {"kind_strength": "--strength"}.get(where, f"--{where.replace('_', '-')}")
        if where == "add":  # the key is the kind: name it, with the reason, in the option's own words
            kind = str(first["loc"][1]) if len(first["loc"]) > 1 else ""
            fail(f"--add {kind}={first.get('input')!r}: {first['msg'].removeprefix('Value error, ')}")
        fail(f"{option} {first.get('input')!r}: {first['msg'].lower()}" if where else validation_line(e))


def _output(output_format: str | None, quality: int | None):
    """How restored images are written (:class:`agent.worker.OutputOptions`); a bad choice is one line, exit 2."""
    from agent.worker import OutputOptions

    try:
        return OutputOptions(output_format, quality)
    except ValueError as e:
        fail(str(e) if str(e).startswith("--") else f"--format {e}")


def _check_engine(engine: str, address: str | None, gpus_per_worker: float, trace: bool) -> None:
    """Refuse engine options that do not go together (usage errors, before anything is read)."""
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"{engine!r}: choose local or ray", param_hint="--engine")
    if engine == "local" and (address or gpus_per_worker):
        raise typer.BadParameter("--address/--gpus-per-worker need --engine ray", param_hint="--engine")
    if engine == "ray" and trace:
        raise typer.BadParameter("--trace streams one process's nodes; use --engine local", param_hint="--trace")


def _shared_checkpoint(checkpoint: str) -> str | None:
    """The PostgreSQL URL of ``--checkpoint`` (checked by connecting), or None for SQLite files in ``--out``."""
    from agent.checkpoint import check_postgres, is_postgres_url
    from reasoner.files import redact_url

    if checkpoint != "sqlite" and not is_postgres_url(checkpoint):
        raise typer.BadParameter(
            f"{redact_url(checkpoint)!r}: use sqlite or a postgres://user:password@host:port/database URL",
            param_hint="--checkpoint",
        )
    if not is_postgres_url(checkpoint):
        return None
    try:
        check_postgres(checkpoint)  # a bad URL or a server that is down fails here, before any image is touched
    except (ValueError, ImportError) as e:
        fail(f"--checkpoint {e}")
    return checkpoint


class BatchView:
    """What a batch shows as it runs.

    With ``--json``, one manifest row a line on stdout and nothing else; otherwise errors and warnings on stderr, and
    progress there: on a terminal a bar with n/N, the ETA and the image in hand with its stage (diagnose, plan,
    restore, ...); in a pipe or a log file, plain lines (one per stage for a single image, one per image for a batch).
    With ``--trace``, each node's update on stdout instead of progress.
    """

    def __init__(self, *, as_json: bool, trace: bool, stderr=None) -> None:
        from rich.console import Console

        self.as_json, self.trace = as_json, trace
        self.stdout, self.stderr = stdout_console(), stderr or Console(stderr=True)
        self.progress, self.task = None, None
        self.total, self.done, self.t0, self.current = 0, 0, 0.0, ""
        self.plain = False

    def on_row(self, row: dict) -> None:
        """A finished input: its manifest row (``--json``) or its error."""
        if self.as_json:
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
        elif row["status"] == "failed":
            self.stderr.print(f"[red]error:[/] {row['error']}", highlight=False, soft_wrap=True)
        self.done += 1
        if self.progress is not None:
            self.progress.advance(self.task)
        elif self.plain and self.total > 1:
            self._line(f"{row['name']}: {row['status']} ({row.get('seconds', 0):.1f} s){self._eta()}", self.done)

    def on_start(self, summary, n_todo: int) -> None:
        """The work is known: say what a resume skips, start the progress display."""
        import time

        if summary.skipped and not self.as_json:
            self.stderr.print(f"resuming: {len(summary.skipped)} of {summary.total} image(s) already done",
                              highlight=False)  # fmt: skip
        self.total, self.t0 = n_todo, time.perf_counter()
        if self.as_json or self.trace or not n_todo:
            return
        if not self.stderr.is_terminal:
            self.plain = True
            return
        from rich import progress as p

        self.progress = p.Progress(p.TextColumn("restoring"), p.BarColumn(), p.MofNCompleteColumn(),
                                   p.TimeElapsedColumn(), p.TextColumn("ETA"), p.TimeRemainingColumn(),
                                   p.TextColumn("{task.fields[current]}"), console=self.stderr,
                                   transient=True)  # fmt: skip
        self.task = self.progress.add_task("restoring", total=n_todo, current="")
        self.progress.start()

    def on_item(self, name: str, stage: str) -> None:
        """Image ``name`` reached ``stage`` ("start", a graph node, or "done" from a pool worker)."""
        if self.progress is not None:
            shown = name if len(name) <= 40 else name[:37] + "..."
            self.progress.update(self.task, current=f"{shown} · {stage}" if stage != "start" else shown)
        elif self.plain:
            if self.total == 1 and stage not in ("start", "done"):
                self._line(f"{name}: {stage}", self.done + 1)
            elif self.total > 1 and stage == "start" and name != self.current:
                self._line(f"{name}{self._eta()}", self.done + 1)
        self.current = name

    def _eta(self) -> str:
        import time

        if not self.done or self.done >= self.total:
            return ""
        left = (time.perf_counter() - self.t0) / self.done * (self.total - self.done)
        return f", ETA {_duration(left)}"

    def _line(self, text: str, n: int) -> None:
        self.stderr.print(f"[{min(n, self.total)}/{self.total}] {text}", highlight=False, markup=False,
                          soft_wrap=True)  # fmt: skip

    def warn(self, message: str) -> None:
        """One warning line on stderr (none with ``--json``)."""
        if not self.as_json:
            self.stderr.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    def on_update(self, node: str, update: dict) -> None:
        """A graph node finished (``--trace``)."""
        from agent.cli.render import render_update

        render_update(self.stdout, node, update)

    def stop(self) -> None:
        """Take the progress bar off the terminal."""
        if self.progress is not None:
            self.progress.stop()


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _run(inputs: list[Path], out: Path, engine: str, workers: int, view: BatchView, options: dict):
    """Run the batch on ``engine``; every way it can stop early is one line on stderr and an exit code."""
    from agent.batch import Interrupted, NoImagesError, run_batch
    from agent.runlock import RunLockedError
    from reasoner.files import DiskFullError
    from reasoner.imageio import ImageLoadError

    try:
        if engine == "ray":
            from agent.ray_engine import run_batch_ray

            return run_batch_ray(inputs, out, workers=workers, **options)
        return run_batch(inputs, out, workers=workers, on_update=view.on_update if view.trace else None, **options)
    except Interrupted as e:
        view.stop()
        done = len(e.summary.done) + len(e.summary.failed) + len(e.summary.skipped) if e.summary else 0
        total = e.summary.total if e.summary else 0
        what = {2: "SIGINT", 15: "SIGTERM"}.get(e.signum, f"signal {e.signum}")
        fail(f"interrupted ({what}) after {done} of {total} image(s); resume with: {resume_command()}", e.exit_code)
    except DiskFullError as e:
        fail(f"{e}: {resume_command()}", 1)
    except NoImagesError as e:
        fail(str(e))
    except (FileExistsError, RunLockedError, ImageLoadError, ValueError, ImportError) as e:
        fail(one_line(e))
    finally:
        view.stop()


def _finish(summary, out: Path, view: BatchView) -> None:
    """The summary table, the HTML report, and the failures again at the end (exit 1 if any)."""
    from agent.cli.render import summary_table

    if not view.as_json:
        view.stdout.print(summary_table(summary, out))
    if summary.done or summary.failed:
        from agent.ui.report import ReportError, write_report

        try:
            path = write_report(out)
            if not view.as_json:
                view.stderr.print(f"report: {path}", highlight=False)
        except (ReportError, OSError) as e:
            view.stderr.print(f"[yellow]warning:[/] report not written: {e}", highlight=False)
    if summary.failed:
        view.stderr.print(f"{len(summary.failed)} image(s) failed:", highlight=False)
        for row in summary.failed:
            view.stderr.print(f"  {row['error']}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def resume_command() -> str:
    """The command line of this run with ``--resume``, secrets masked, to paste after an interruption."""
    import shlex

    from reasoner.files import redact_url

    args = ["rnr", *(redact_url(a) if "://" in a else a for a in sys.argv[1:])]
    if "--resume" not in args:
        args.append("--resume")
    return shlex.join(args)
