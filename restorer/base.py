"""What every restorer implements, and the short-name registry of restorers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from reasoner.registry import resolve_backend
from reasoner.schema import DiagnosisRecord
from restorer.plan import Plan


@dataclass(frozen=True, eq=False)
class ReferenceImage:
    """A retrieved high-quality reference: ``float32 HxWx3 RGB in [0, 1]`` pixels and its relevance in [0, 1]."""

    pixels: np.ndarray
    score: float
    id: str = ""


@dataclass(frozen=True, eq=False)
class RestoreOutput:
    """What a restorer returns: the restored pixels, and what a model restorer reports of its run for the trace.

    Attributes:
        pixels: ``float32 HxWx3 RGB in [0, 1]``, the input's shape, a new array.
        run: JSON-able settings that reproduce the run (prompt, seed, steps, references, ...), or None.

    """

    pixels: np.ndarray
    run: dict | None = None


@runtime_checkable
class Restorer(Protocol):
    """Restores an image given its diagnosis, references and the plan.

    A restorer may set ``local = True`` when its result at a pixel depends only on a neighbourhood (and image-wide
    estimates): the graph then judges a big photo's attempts on crops and runs only the chosen plan at full size.
    """

    name: str

    def restore(
        self, image: np.ndarray, record: DiagnosisRecord, references: Sequence[ReferenceImage], plan: Plan
    ) -> RestoreOutput:
        """``image`` is ``float32 HxWx3 RGB in [0, 1]`` and is not modified; the pixels returned have its shape."""
        ...


#: name -> "module:Class"; heavy backends are added by their own issues.
RESTORERS: dict[str, str] = {
    "classical": "restorer.classical:ClassicalRestorer",
    "qwen-image-edit": "restorer.qwen_edit:QwenEditRestorer",
    "diffusion": "restorer.diffusion:DiffusionRestorer",
}
DEFAULT_RESTORER = "classical"


def load_restorer(name_or_path: str = DEFAULT_RESTORER, **kwargs) -> Restorer:
    """Instantiate a restorer by registry name or ``"pkg.module:Class"``."""
    return resolve_backend(name_or_path, RESTORERS, "restorer")(**kwargs)
