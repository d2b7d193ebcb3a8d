"""Prompt templates: versioned, rendered from the schema vocabulary, and pinned by snapshots."""

import os
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
