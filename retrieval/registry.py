"""Short embedder names mapped to lazy dotted paths; nothing heavy is imported until an embedder is chosen."""

from __future__ import annotations

from reasoner.registry import resolve_backend
from retrieval.base import Embedder

#: name -> "module:Class". ``hf:<model id or local path>`` is handled apart (see :func:`load_embedder`).
EMBEDDERS: dict[str, str] = {
    "global": "retrieval.embedders:GlobalDescriptorEmbedder",
}
DEFAULT_EMBEDDER = "global"
HF_PREFIX = "hf:"


def _choices() -> str:
    return f"{sorted(EMBEDDERS)}, 'hf:<model id or local path>' or 'pkg.module:Class'"


def is_registered(name: object) -> bool:
    """Whether ``name`` is an embedder that loads without importing code named by the caller.

    True for registry names and ``"hf:<model id or local path>"``: the names a library may record and have
    reloaded from its ``library.json`` (a ``"pkg.module:Class"`` path from a file would import and run anything).
    """
    if not isinstance(name, str):
        return False
    return name in EMBEDDERS or (name.startswith(HF_PREFIX) and len(name.strip()) > len(HF_PREFIX))


def resolve(name_or_path: str, *, allow_path: bool = True) -> type:
    """The embedder class for a registry name or, with ``allow_path``, a ``"package.module:Class"`` path."""
    return resolve_backend(name_or_path, EMBEDDERS, "embedder", _choices(), allow_path=allow_path)


def load_embedder(name_or_path: str = DEFAULT_EMBEDDER, *, allow_path: bool = True, **kwargs) -> Embedder:
    """Instantiate an embedder, passing ``kwargs`` through.

    Args:
        name_or_path: A registry name (``"global"``), ``"hf:<model id or local path>"`` for a DINOv2 / CLIP /
            SigLIP model through transformers, or ``"pkg.module:Class"``.
        allow_path: Accept ``"pkg.module:Class"``. Pass False for names read from files, so that only
            registered names load and nothing is imported first.
        **kwargs: Constructor arguments (for ``hf:``, those of :class:`retrieval.hf.HFEmbedder`).

    Raises:
        ValueError: For an unknown name, listing the valid ones.
        ImportError: When the embedder needs an extra that is not installed, naming the install command.

    """
    if not isinstance(name_or_path, str):
        raise ValueError(f"unknown embedder {name_or_path!r}; choose one of {_choices()}")
    name = name_or_path.strip()
    if name.startswith(HF_PREFIX):
        model = name[len(HF_PREFIX) :]
        if not model:
            raise ValueError("embedder 'hf:' needs a model id or local path, e.g. 'hf:facebook/dinov2-small'")
        from retrieval.hf import HFEmbedder

        return HFEmbedder(model, **kwargs)
    return resolve(name, allow_path=allow_path)(**kwargs)
