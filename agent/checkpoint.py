"""Checkpointers whose serializer knows exactly which of our pydantic types may be revived from a checkpoint."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from pydantic import BaseModel

from reasoner.common import one_line


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


POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def is_postgres_url(spec: str | None) -> bool:
    """Whether a ``--checkpoint`` value names a PostgreSQL server (anything else is refused by the CLI)."""
    return bool(spec) and spec.startswith(POSTGRES_SCHEMES)


def redact(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***``, for error messages and logs."""
    from reasoner.files import redact_url

    return redact_url(url)


def _scrub(text: str, url: str) -> str:
    """``text`` (a driver error) with the secrets of ``url`` masked, in case it echoes its connection string."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url)
    secrets = [parts.password] if parts.password else []
    secrets += [v for k, v in parse_qsl(parts.query) if v and redact(f"x://h/?{k}=v") != f"x://h/?{k}=v"]
    for secret in secrets:
        for form in {secret, unquote(secret)}:
            text = text.replace(form, "***")
    return text


def postgres_checkpointer(url: str, *, setup: bool = False, connect_timeout: int = 10):
    """A checkpointer on the PostgreSQL server at ``url``, shared by every process and host that names it.

    ``url`` is ``postgres://user:password@host:port/database``; close the saver with ``saver.conn.close()``.

    Threads are keyed by :func:`agent.run.thread_id`, so the same image under the same backends and settings maps to
    the same thread on every host. ``setup`` creates or migrates the tables; do it once per run, before workers
    connect (concurrent first-time migrations can collide), as :func:`check_postgres` does.

    Raises:
        ImportError: ``langgraph-checkpoint-postgres`` / ``psycopg`` missing (the ``dist`` extra).
        ValueError: The server cannot be reached or refuses the connection (one line naming the redacted URL).

    """
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
    except ImportError as e:
        raise ImportError(
            "Postgres checkpoints need langgraph-checkpoint-postgres and psycopg; "
            "install with: pip install 'reason-restore[dist]'"
        ) from e
    if not is_postgres_url(url):
        raise ValueError(f"{url}: not a PostgreSQL URL; use postgres://user:password@host:port/database")
    try:
        # The settings PostgresSaver.from_conn_string uses, which its queries rely on (dict rows, autocommit).
        conn = psycopg.connect(
            url, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=connect_timeout
        )
    except psycopg.Error as e:
        reason = _scrub(one_line(e), url)
        raise ValueError(f"{redact(url)}: cannot connect to PostgreSQL: {reason}") from None
    saver = PostgresSaver(conn, serde=serde())
    if setup:
        try:
            saver.setup()
        except psycopg.Error as e:
            conn.close()
            reason = _scrub(one_line(e), url)
            raise ValueError(f"{redact(url)}: cannot create the checkpoint tables: {reason}") from None
    return saver


def check_postgres(url: str) -> None:
    """Connect to ``url`` and create the checkpoint tables, so a bad URL fails before any work (one-line error)."""
    postgres_checkpointer(url, setup=True).conn.close()


def open_checkpointer(spec: str | None, sqlite_path: str | Path):
    """The batch checkpointer for one image: PostgreSQL when ``spec`` is a URL, else SQLite at ``sqlite_path``."""
    if is_postgres_url(spec):
        return postgres_checkpointer(spec)
    return sqlite_checkpointer(sqlite_path)
