"""Training recipes are package data: `rnr train sft|grpo` find them from any folder and any install."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from rl.recipe import recipe_path, recipe_text

ROOT = Path(__file__).resolve().parents[1]
RNR = Path(sys.executable).with_name("rnr")


def test_default_recipes_from_another_folder(tmp_path):
    # run where no rl/recipes/ exists: the default --config comes from the installed package
    for kind in ("sft", "grpo"):
        res = subprocess.run([RNR, "train", kind, "--print-recipe"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert res.stdout == recipe_text(kind) and res.stdout.startswith("#")  # with its comments, to copy and edit
        assert yaml.safe_load(res.stdout)["model"]
        res = subprocess.run([RNR, "train", kind, "--print-recipe", "--json", "--set", "max_steps=7"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert res.returncode == 0 and json.loads(res.stdout)["max_steps"] == 7, res.stderr
    res = subprocess.run([RNR, "train", "sft", "-c", "mine.yaml"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 2 and "rnr train sft --print-recipe" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_printed_recipe_is_a_valid_config(tmp_path):
    from rl.recipe import GRPORecipe, SFTRecipe

    for kind, cls in (("sft", SFTRecipe), ("grpo", GRPORecipe)):
        (tmp_path / f"{kind}.yaml").write_text(recipe_text(kind))
        assert cls.load(tmp_path / f"{kind}.yaml") == cls.load(recipe_path(kind))


def test_non_editable_install_has_the_recipes(tmp_path):
    # A wheel built from the checkout and installed into a plain folder: the recipes come with it.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "bench",
                                                             "tests", "examples", "runs", "data"))  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import rl, sys; from agent.cli import app; sys.argv = ['rnr', 'train', 'sft', '--print-recipe']; " \
           "print(rl.__file__, file=sys.stderr); app()"  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert str(site) in res.stderr and res.stdout == recipe_text("sft")
