"""Progress: n/N, ETA and the image in hand for batches, each stage for a single image, plain lines in a pipe."""

import io
import re

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from agent.batch import run_batch
from agent.cli.restore import BatchView
from agent.state import Settings


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("one", "two", "three"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(d / f"{name}.png")
    return d


def _view(terminal: bool) -> tuple[BatchView, io.StringIO]:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=160)
    return BatchView(as_json=False, trace=False, stderr=console), buf


def _run(view: BatchView, inputs, out):
    return run_batch(inputs, out, settings=Settings(max_attempts=1), on_row=view.on_row, on_start=view.on_start,
                     on_item=view.on_item, on_warning=view.warn)  # fmt: skip


def test_single_image_shows_each_stage_as_plain_lines(photos, tmp_path):
    view, buf = _view(terminal=False)
    _run(view, [photos / "one.png"], tmp_path / "out")
    lines = buf.getvalue().splitlines()
    assert lines[:3] == ["[1/1] one: diagnose", "[1/1] one: retrieve", "[1/1] one: plan"]
    assert "[1/1] one: export" in lines
    assert all("\x1b" not in line for line in lines)  # no animation, no colour codes in a log file


def test_batch_plain_lines_count_name_and_eta(photos, tmp_path):
    view, buf = _view(terminal=False)
    _run(view, [photos], tmp_path / "out")
    lines = buf.getvalue().splitlines()
    # one line as each image starts (n/N, its name, the ETA once known) and one as it ends (status, seconds)
    patterns = [
        r"\[1/3\] one",
        r"\[1/3\] one: \w+ \(\d+\.\d s\), ETA .+",
        r"\[2/3\] three, ETA .+",
        r"\[2/3\] three: \w+ \(.*\), ETA .+",
        r"\[3/3\] two, ETA .+",
        r"\[3/3\] two: \w+ \(.*\)",
    ]
    assert len(lines) == len(patterns) and all(re.fullmatch(p, line) for p, line in zip(patterns, lines)), lines


def test_terminal_bar_shows_the_image_and_its_stage(photos, tmp_path):
    view, _ = _view(terminal=True)
    seen = []
    on_item = view.on_item

    def spy(name, stage):
        on_item(name, stage)
        seen.append(view.progress.tasks[0].fields["current"])

    view.on_item = spy
    _run(view, [photos], tmp_path / "out")
    task = view.progress.tasks[0]
    assert task.total == 3 and task.completed == 3
    assert "one" in seen and "two · restore" in seen
    columns = [type(c).__name__ for c in view.progress.columns]
    assert "MofNCompleteColumn" in columns and "TimeRemainingColumn" in columns


def test_json_mode_shows_no_progress(photos, tmp_path, capsys):
    buf = io.StringIO()
    view = BatchView(as_json=True, trace=False, stderr=Console(file=buf, force_terminal=False))
    _run(view, [photos / "one.png"], tmp_path / "out")
    assert buf.getvalue() == "" and view.progress is None
    assert capsys.readouterr().out.count("\n") == 1  # one manifest row
