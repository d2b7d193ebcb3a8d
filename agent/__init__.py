"""The reason-then-restore agent: the LangGraph graph, its decide policy, the batch engines, and their presentation.

The graph core lives here (``state``, ``policy``, ``graph``, ``backends``, ``run``, ``trace``, ``batch``, ``worker``,
``manifest``, ``runlock``, ``checkpoint``, ``ray_engine``, ``report``); ``agent.cli`` and ``agent.ui`` present it
(terminal, web) and nothing in the core imports them. The Python API's names load on first use, so ``import agent``
stays light.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BackendSpec": "agent.backends",
    "Backends": "agent.backends",
    "Settings": "agent.state",
    "make_context": "agent.backends",
    "restore_image": "agent.run",
    "run_batch": "agent.batch",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
