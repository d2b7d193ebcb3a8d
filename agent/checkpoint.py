"""Checkpointers whose serializer knows exactly which of our pydantic types may be revived from a checkpoint."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel


def _state_types() -> list[tuple[str, str]]:
    import agent.state
    import agent.trace
    import reasoner.schema
    import restorer.plan
    import retrieval.base

    out = []
    for mod in (agent.state, agent.trace, reasoner.schema, restorer.plan, retrieval.base):
        for name, obj in vars(mod).items():
            if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == mod.__name__:
                out.append((mod.__name__, name))
    return out


def serde() -> JsonPlusSerializer:
    """A serializer that revives only the project's state models (and LangGraph's safe built-ins)."""
    return JsonPlusSerializer(allowed_msgpack_modules=_state_types())


def memory_checkpointer() -> InMemorySaver:
    """In-memory checkpoints (tests, the Python API)."""
    return InMemorySaver(serde=serde())


def sqlite_checkpointer(path: str | Path):
    """SQLite checkpoints at ``path`` (the default for batch runs, so an interrupted run resumes)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    return SqliteSaver(conn, serde=serde())
