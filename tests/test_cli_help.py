"""`rnr` to the standard of `hf` and `llm`: version, -h, examples, readable types, order, one-line errors."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.main import get_command
from typer.testing import CliRunner

from agent.cli import ORDER, app
from reasoner.version import rnr_version

runner = CliRunner()
RNR = Path(sys.executable).with_name("rnr")


def _all_commands(group=None, path=()):
    group = group or get_command(app)
    for name, cmd in group.commands.items():
        yield (*path, name)
        if hasattr(cmd, "commands"):
            yield from _all_commands(cmd, (*path, name))


COMMANDS = sorted(_all_commands())


def test_version():
    for args in (["--version"], ["-V"], ["version"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and res.stdout.strip() == f"rnr {rnr_version()}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_help_page_has_h_an_example_and_readable_types(command):
    short = runner.invoke(app, [*command, "-h"], env={"COLUMNS": "160"})
    long = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "160"})
    assert short.exit_code == long.exit_code == 0
    assert short.stdout == long.stdout
    assert "Example: rnr " in short.stdout
    for python_type in ("<bool>", "<list", "<str>", "<int>", "<path>", "<float>", "{inputs}"):
        assert python_type not in short.stdout, (command, python_type)


def test_commands_are_listed_by_use():
    res = runner.invoke(app, ["-h"], env={"COLUMNS": "160"})
    listed = [line.split()[1] for line in res.stdout.splitlines() if line.startswith("│ ") and len(line.split()) > 1]
    listed = [name for name in listed if name in ORDER]
    assert listed[:8] == ["restore", "diagnose", "report", "ui", "examples", "index", "synth", "train"]
    assert listed.index("schema") < listed.index("dev")


@pytest.mark.parametrize(
    "args, words",
    [
        (["restore"], "Missing argument 'INPUTS'"),  # no input
        (["restore", "x.png"], "Missing option '--out'"),
        (["restore", "x.png", "--out", "o", "--workers", "two"], "Input should be a valid integer"),
        (["restore", "x.png", "--out", "o", "--engine", "spark"], "choose local or ray"),
        (["diagnose", "x.png", "--nope"], "No such option"),
        (["index", "nope"], "No such command"),
    ],
)
def test_usage_errors_are_one_line(args, words):
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], res.stderr


def test_no_images_and_failed_starts_leave_no_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    res = runner.invoke(app, ["restore", str(empty), "--out", str(out)])
    assert res.exit_code == 2 and "no images found" in res.stderr and not out.exists()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "a.png")
    for bad in (["--reasoner", "nope"], ["--index", str(tmp_path / "no-library"), "--engine", "spark"]):
        res = runner.invoke(app, ["restore", str(tmp_path / "a.png"), "--out", str(out), *bad])
        assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and not out.exists(), res.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["diagnose", "{img}", "--reasoner", "qwen3vl"],
        ["restore", "{img}", "--out", "{out}", "--reasoner", "qwen3vl"],
        ["restore", "{img}", "--out", "{out}", "--scorer", "vllm"],
        ["restore", "{img}", "--out", "{out}", "--restorer", "qwen-image-edit"],
    ],
)
def test_model_backends_never_choose_a_model(tmp_path, args):
    # One line saying how to give a model, at once: no hub look-up, no retries, no folder.
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "a.png")
    args = [a.format(img=tmp_path / "a.png", out=tmp_path / "out") for a in args]
    t0 = time.perf_counter()
    res = subprocess.run([RNR, *args], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HF_HUB_OFFLINE": "0"})  # fmt: skip
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a model: pass --" in lines[0], res.stderr
    assert time.perf_counter() - t0 < 20 and not (tmp_path / "out").exists()


def test_tables_are_not_cut_when_piped(tmp_path):
    # stdout is a pipe here: the summary table keeps a long name whole instead of cutting it at 80 columns.
    name = "a_rather_long_photo_name_from_a_camera_roll_2024_05_06_" + "x" * 30
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / f"{name}.png")
    res = subprocess.run([RNR, "restore", str(tmp_path / f"{name}.png"), "--out", str(tmp_path / "out"),
                          "--strength", "0"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": ""})  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert name in res.stdout
