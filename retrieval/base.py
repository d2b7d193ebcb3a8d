"""Shared retrieval types: the embedder protocol and a retrieved reference as recorded in traces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


@runtime_checkable
class Embedder(Protocol):
    """Maps images to L2-normalised vectors whose inner product is the relevance of one image to another."""

    name: str
    version: str
    dim: int

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``images``: ``float32 HxWx3 RGB in [0, 1]`` each; returns ``float32 (n, dim)``, rows of unit norm."""
        ...


class Reference(BaseModel):
    """A library entry returned for a query, with its similarity score and provenance."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Stable id of the entry in its library.")
    path: str = Field(description="Path of the reference image as stored in the library.")
    score: float = Field(description="Inner-product similarity of the embeddings (cosine, in [-1, 1]).")
    rank: int = Field(ge=1, description="1 for the best match.")
    category: str | None = Field(None, description="Sub-library the entry belongs to, if any.")
    embedder: str = Field(description="Embedder name and version that produced the score.")
