"""Prompt templates: versioned, rendered from the schema vocabulary, and pinned by snapshots."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prompts import TASKS, load_prompt, versions

SNAPSHOTS = Path(__file__).parent / "snapshots"
#: Values each task's templates are rendered with for the snapshot.
VALUES = {
    "diagnose": {"width": 640, "height": 480},
    "rescore": {"width": 640, "height": 480, "before": "- noise: moderate (severity 0.42), sigma 18.0"},
    "edit": {
        "instruction": "Remove noise (moderate).",
        "description": "A cat on a sofa.",
        "references": "",
        "preserve": "- Keep the colours, white balance and framing of Picture 1.",
    },
}


@pytest.mark.parametrize("task", TASKS)
def test_rendered_prompt_matches_snapshot(task):
    # An unintended change to a template (or to the schema vocabulary it shows) fails here. To accept an intended
    # one, add a template version, or rerun with RNR_UPDATE_SNAPSHOTS=1 and review the diff.
    p = load_prompt(task)
    system, user = p.render(**VALUES[task])
    text = f"# {p.id}\n## system\n{system}\n## user\n{user}\n"
    snap = SNAPSHOTS / f"prompt_{task}_{p.version}.txt"
    if os.environ.get("RNR_UPDATE_SNAPSHOTS"):
        snap.write_text(text)
    assert snap.read_text() == text


def test_committed_vocabulary_matches_the_schema():
    # Golden test: the vocabulary prompts show is rendered from reasoner.schema and committed, so that prompts imports
    # nothing from reasoner. Regenerate with `python -m reasoner.prompting` after an intended schema change.
    from prompts import VOCABULARY_PATH, vocabulary_values
    from reasoner.prompting import vocabulary_text
    from reasoner.prompting import vocabulary_values as from_schema

    assert VOCABULARY_PATH.read_text(encoding="utf-8") == vocabulary_text()
    assert vocabulary_values() == from_schema()


def test_prompts_import_nothing_from_reasoner():
    # Layering: reasoner -> prompts, never back (prompts holds templates only).
    code = (
        "import sys, prompts; prompts.load_prompt('diagnose').render(width=1, height=1); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('reasoner', 'agent', 'rl', 'restorer')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_vocabulary_comes_from_the_schema():
    from reasoner.schema import KINDS, LEVEL_THRESHOLDS

    system, _ = load_prompt("diagnose").render(width=1, height=1)
    for kind in KINDS:
        assert f"- {kind}:" in system
    assert "sigma (0 to 255)" in system  # noise sigma bounds as the schema enforces them
    assert str(LEVEL_THRESHOLDS[1]) in system


def test_versions_and_errors():
    assert versions("diagnose")[0] == "v1"
    with pytest.raises(ValueError, match="choose one of"):
        load_prompt("nope")
    with pytest.raises(ValueError, match="available"):
        load_prompt("diagnose", "v99")
    with pytest.raises(ValueError, match="needs a value for 'width'"):
        load_prompt("diagnose").render()
