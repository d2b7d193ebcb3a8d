"""The schema's degradation vocabulary as prompt templates show it, and the committed copy ``prompts`` reads.

``prompts`` holds templates only and imports nothing from ``reasoner``; the values its templates take from the
record schema (``vocabulary``: kinds, factor names, units, bounds; ``levels``: the level thresholds; ``max_steps``)
are rendered here and committed as ``prompts/vocabulary.json``. ``tests/test_prompts.py`` regenerates them and fails
on drift, so a prompt cannot drift from what the grammar and the parser accept. After an intended schema change::

    python -m reasoner.prompting
"""

from __future__ import annotations

import json
import sys
from typing import get_args

from prompts import VOCABULARY_PATH
from reasoner.schema import DEGRADATION_MODELS, KINDS, LEVEL_THRESHOLDS
from reasoner.vlm_output import MAX_STEPS


def vocabulary_values() -> dict[str, object]:
    """Template values derived from the record schema: ``vocabulary``, ``levels``, ``max_steps``.

    >>> v = vocabulary_values()
    >>> v["levels"], v["max_steps"]
    ('none below 0.1, mild from 0.1, moderate from 0.35, severe from 0.65', 8)
    """
    lines = []
    for kind in KINDS:
        factors = DEGRADATION_MODELS[kind].model_fields["factors"].annotation
        doc = (factors.__doc__ or "").strip().splitlines()[0]
        parts = [f"{name} ({_bounds(field)}): {field.description}" for name, field in factors.model_fields.items()]
        lines.append(f"- {kind}: {doc}\n    " + "\n    ".join(parts))
    mild, moderate, severe = LEVEL_THRESHOLDS
    levels = f"none below {mild}, mild from {mild}, moderate from {moderate}, severe from {severe}"
    return {"vocabulary": "\n".join(lines), "levels": levels, "max_steps": MAX_STEPS}


def vocabulary_text() -> str:
    """:func:`vocabulary_values` serialised exactly as committed in ``prompts/vocabulary.json``.

    Multi-line values are stored as lists of lines, so a schema change shows as a readable diff.
    """
    values = {k: v.split("\n") if isinstance(v, str) and "\n" in v else v for k, v in vocabulary_values().items()}
    return json.dumps(values, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _bounds(field) -> str:
    lo = hi = None
    for m in field.metadata:
        for attr in ("ge", "gt"):
            lo = getattr(m, attr, None) if getattr(m, attr, None) is not None else lo
        for attr in ("le", "lt"):
            hi = getattr(m, attr, None) if getattr(m, attr, None) is not None else hi
    choices = get_args(field.annotation)
    if choices and all(isinstance(c, str) for c in choices):
        return " or ".join(choices)
    if lo is None and hi is None:
        return "list of 3 numbers in [0, 1]" if "list" in str(field.annotation) else str(field.annotation)
    return f"{lo} to {hi}"


if __name__ == "__main__":  # pragma: no cover - the regeneration command named in the module docstring
    VOCABULARY_PATH.write_text(vocabulary_text())
    print(f"written {VOCABULARY_PATH}", file=sys.stderr)
