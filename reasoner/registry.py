"""Short backend names mapped to lazy dotted paths; nothing heavy is imported until a backend is chosen."""

from __future__ import annotations

import importlib
from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

from reasoner.schema import DiagnosisRecord

#: name -> "module:Class". Heavy backends are added by their own issues; unknown names list these.
REASONERS: dict[str, str] = {
    "measure": "reasoner.measure:MeasureReasoner",
    "qwen3vl": "reasoner.qwen3vl:Qwen3VLReasoner",
    "vllm": "reasoner.vllm_backend:VLLMReasoner",
    "vllm-server": "reasoner.openai_client:OpenAIReasoner",
}
DEFAULT_REASONER = "measure"


@runtime_checkable
class Reasoner(Protocol):
    """Anything that turns an image into a :class:`DiagnosisRecord`."""

    name: str

    def diagnose(self, image) -> DiagnosisRecord:
        """Diagnose one image (a ``LoadedImage``, a path, or an RGB array)."""
        ...


def read_output(scorer: Any, image: Any, restored_kinds: Collection[str] = ()) -> tuple[DiagnosisRecord, dict | None]:
    """``scorer``'s record of a restoration's output, and the statistics it measured (None unless it measures).

    A scorer that measures (``diagnose_measured``: ``measure``) reads the image as a restoration's output: the input's
    exposure evidence is not read, and what is left of each of ``restored_kinds`` is reported from a lower presence
    (:data:`reasoner.measure.backend.RESIDUE_SHARE`), so a plan that half-removed a kind is not read as having removed
    it. Any other scorer diagnoses it as it would an input. The agent's judgement and the GRPO rewards both read
    outputs through this.
    """
    if hasattr(scorer, "diagnose_measured"):
        return scorer.diagnose_measured(image, restored=True, residue_of=restored_kinds)
    return scorer.diagnose(image), None


def resolve_backend(
    name_or_path: str, registry: dict[str, str], what: str, choices: str | None = None, *, allow_path: bool = True
) -> type:
    """The class for a name in ``registry`` or a ``"package.module:Class"`` path, with a clear one-line error.

    Shared by the reasoner, restorer and embedder registries. ``what`` names the kind of backend in messages;
    ``choices`` overrides the list of valid names shown. A dotted path imports and runs code, so it is honoured only
    when a person gave it (command line, Python): names read from files on disk pass ``allow_path=False``, and then
    only registry names resolve, before anything is imported.
    """
    if not isinstance(name_or_path, str):
        raise ValueError(f"unknown {what} {name_or_path!r}; choose one of {choices or sorted(registry)}")
    if not allow_path and name_or_path not in registry:
        raise ValueError(
            f"unknown {what} {name_or_path!r}; only registered names are accepted here: {sorted(registry)}"
        )
    target = registry.get(name_or_path, name_or_path)
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        shown = choices or f"{sorted(registry)} or 'pkg.module:Class'"
        raise ValueError(f"unknown {what} {name_or_path!r}; choose one of {shown}")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        if isinstance(e, ImportError) and e.name and not e.name.startswith(module.split(".")[0]):
            raise ImportError(f"{what} {name_or_path!r} needs {e.name}: {e}") from e
        raise ValueError(f"cannot load {what} {name_or_path!r} from {target!r}: {e}") from e


def resolve(name_or_path: str) -> type:
    """The reasoner class for a registry name or a ``"package.module:Class"`` path."""
    return resolve_backend(name_or_path, REASONERS, "reasoner")


def load_reasoner(name_or_path: str = DEFAULT_REASONER, **kwargs) -> Reasoner:
    """Instantiate a reasoner by registry name (``"measure"``) or dotted path, passing ``kwargs`` through."""
    return resolve(name_or_path)(**kwargs)
