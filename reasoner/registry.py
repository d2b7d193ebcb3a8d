"""Short backend names mapped to lazy dotted paths; nothing heavy is imported until a backend is chosen."""

from __future__ import annotations

import importlib
from typing import Protocol, runtime_checkable

from reasoner.schema import DiagnosisRecord

#: name -> "module:Class". Heavy backends are added by their own issues; unknown names list these.
REASONERS: dict[str, str] = {
    "measure": "reasoner.measure:MeasureReasoner",
}
DEFAULT_REASONER = "measure"


@runtime_checkable
class Reasoner(Protocol):
    """Anything that turns an image into a :class:`DiagnosisRecord`."""

    name: str

    def diagnose(self, image) -> DiagnosisRecord:
        """Diagnose one image (a ``LoadedImage``, a path, or an RGB array)."""
        ...


def resolve(name_or_path: str) -> type:
    """The class for a registry name or a ``"package.module:Class"`` path, with a clear error otherwise."""
    target = REASONERS.get(name_or_path, name_or_path)
    if ":" not in target:
        raise ValueError(f"unknown reasoner {name_or_path!r}; choose one of {sorted(REASONERS)} or 'pkg.module:Class'")
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        if isinstance(e, ImportError) and e.name and not e.name.startswith(module.split(".")[0]):
            raise ImportError(f"reasoner {name_or_path!r} needs {e.name}: {e}") from e
        raise ValueError(f"cannot load reasoner {name_or_path!r} from {target!r}: {e}") from e


def load_reasoner(name_or_path: str = DEFAULT_REASONER, **kwargs) -> Reasoner:
    """Instantiate a reasoner by registry name (``"measure"``) or dotted path, passing ``kwargs`` through."""
    return resolve(name_or_path)(**kwargs)
