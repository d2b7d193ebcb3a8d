"""Reference retrieval: embedders and FAISS reference libraries. Imports nothing heavy."""

from retrieval.base import Embedder, Reference

__all__ = ["Embedder", "Reference"]
