"""Versioned prompt templates (system + user) for diagnosis, re-scoring and the restorer's edit instruction.

Templates live next to this file as ``<task>/v<N>.system.txt`` and ``<task>/v<N>.user.txt``. The degradation
vocabulary they show the model is rendered from the record schema (kinds, factor names, units, bounds, level
thresholds), so the prompt cannot drift from what the grammar and the parser accept. Snapshot tests pin the
rendered text: changing a template means adding a version, or updating the snapshot on purpose.

    >>> p = load_prompt("diagnose")
    >>> p.version, "motion_blur" in p.render(width=64, height=48)[0]
    ('v1', True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROMPT_DIR = Path(__file__).parent
TASKS = ("diagnose", "rescore", "edit")


@dataclass(frozen=True)
class Prompt:
    """One version of one task's templates."""

    task: str
    version: str
    system: str
    user: str

    def render(self, **values) -> tuple[str, str]:
        """(system, user) with ``values`` filled in; the schema vocabulary is supplied unless given."""
        fill = {**vocabulary_values(), **values}
        try:
            return self.system.format(**fill).strip(), self.user.format(**fill).strip()
        except KeyError as e:
            raise ValueError(f"prompt {self.task}/{self.version} needs a value for {e.args[0]!r}") from None

    @property
    def id(self) -> str:
        """``task/version``, recorded in provenance."""
        return f"{self.task}/{self.version}"


def versions(task: str) -> list[str]:
    """Versions available for ``task``, oldest first."""
    found = {m.group(1) for p in (PROMPT_DIR / task).glob("v*.system.txt") if (m := re.match(r"(v\d+)\.", p.name))}
    return sorted(found, key=lambda v: int(v[1:]))


def load_prompt(task: str, version: str | None = None) -> Prompt:
    """The templates of ``task`` at ``version`` (default: the newest), with a one-line error when unknown."""
    if task not in TASKS:
        raise ValueError(f"unknown prompt task {task!r}; choose one of {list(TASKS)}")
    have = versions(task)
    version = version or (have[-1] if have else None)
    if version not in have:
        raise ValueError(f"prompt {task!r} has no version {version!r}; available: {have}")
    base = PROMPT_DIR / task / version
    return Prompt(
        task,
        version,
        base.with_name(f"{version}.system.txt").read_text(),
        base.with_name(f"{version}.user.txt").read_text(),
    )


def vocabulary_values() -> dict[str, object]:
    """Template values derived from the record schema: ``vocabulary``, ``levels``, ``max_steps``."""
    from reasoner.schema import DEGRADATION_MODELS, KINDS, LEVEL_THRESHOLDS
    from reasoner.vlm_output import MAX_STEPS

    lines = []
    for kind in KINDS:
        factors = DEGRADATION_MODELS[kind].model_fields["factors"].annotation
        doc = (factors.__doc__ or "").strip().splitlines()[0]
        parts = []
        for name, field in factors.model_fields.items():
            parts.append(f"{name} ({_bounds(field)}): {field.description}")
        lines.append(f"- {kind}: {doc}\n    " + "\n    ".join(parts))
    mild, moderate, severe = LEVEL_THRESHOLDS
    levels = f"none below {mild}, mild from {mild}, moderate from {moderate}, severe from {severe}"
    return {"vocabulary": "\n".join(lines), "levels": levels, "max_steps": MAX_STEPS}


def _bounds(field) -> str:
    from typing import get_args

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
