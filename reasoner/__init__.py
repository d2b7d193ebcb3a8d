"""Diagnosis: image -> structured DiagnosisRecord. Imports nothing heavy (no torch, no model libraries)."""

from reasoner.registry import DEFAULT_REASONER, REASONERS, Reasoner, load_reasoner
from reasoner.schema import (
    KINDS,
    SCHEMA_VERSION,
    DiagnosisRecord,
    ReasoningStep,
    Semantics,
    UnsupportedVersionError,
)

__all__ = [
    "DEFAULT_REASONER",
    "KINDS",
    "REASONERS",
    "SCHEMA_VERSION",
    "DiagnosisRecord",
    "Reasoner",
    "ReasoningStep",
    "Semantics",
    "UnsupportedVersionError",
    "load_reasoner",
]
