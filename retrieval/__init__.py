"""Reference retrieval: embedders and FAISS reference libraries. Imports nothing heavy."""

from retrieval.base import Embedder, Reference
from retrieval.registry import DEFAULT_EMBEDDER, EMBEDDERS, load_embedder

__all__ = ["DEFAULT_EMBEDDER", "EMBEDDERS", "Embedder", "Reference", "load_embedder"]
