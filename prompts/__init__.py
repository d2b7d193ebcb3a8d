"""Versioned prompt templates (system + user) for diagnosis, re-scoring and the restorer's edit instruction.

Templates live next to this file as ``<task>/v<N>.system.txt`` and ``<task>/v<N>.user.txt``. The degradation
vocabulary they show the model (kinds, factor names, units, bounds, level thresholds) is rendered from the record
schema by :mod:`reasoner.prompting` and committed as ``vocabulary.json``, which fills those template values unless a
caller gives them; a test regenerates it and fails on drift, so the prompt cannot drift from what the grammar and
the parser accept. This package holds templates only and imports nothing from the rest of the project. Snapshot
tests pin the rendered text: changing a template means adding a version, or updating the snapshot on purpose.

    >>> p = load_prompt("diagnose")
    >>> p.version, "motion_blur" in p.render(width=64, height=48)[0]
    ('v1', True)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROMPT_DIR = Path(__file__).parent
TASKS = ("diagnose", "rescore", "edit")
#: Template values rendered from the record schema (``vocabulary``, ``levels``, ``max_steps``); written by
#: ``python -m reasoner.prompting``.
VOCABULARY_PATH = PROMPT_DIR / "vocabulary.json"


@dataclass(frozen=True)
class Prompt:
    """One version of one task's templates."""

    task: str
    version: str
    system: str
    user: str

    def render(self, **values) -> tuple[str, str]:
        """(system, user) with ``values`` filled in; the schema vocabulary (:func:`vocabulary_values`) unless given."""
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
    """The committed template values rendered from the record schema: ``vocabulary``, ``levels``, ``max_steps``."""
    return dict(_vocabulary())


@lru_cache(maxsize=1)
def _vocabulary() -> dict[str, object]:
    # Multi-line values are committed as lists of lines (readable diffs).
    values = json.loads(VOCABULARY_PATH.read_text(encoding="utf-8"))
    return {k: "\n".join(v) if isinstance(v, list) else v for k, v in values.items()}
