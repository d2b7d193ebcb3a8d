"""The ``measure`` backend: a CPU diagnosis from measured pixel statistics and a small committed calibration.

Modules: :mod:`~reasoner.measure.features` (the statistics), :mod:`~reasoner.measure.psf` (blur kernels read off
spectral zeros), :mod:`~reasoner.measure.semantics` (coarse scene cues), :mod:`~reasoner.measure.calibration`
(statistics to severities, presence and factors), :mod:`~reasoner.measure.entries` (per-kind record entries),
:mod:`~reasoner.measure.reasoning` (per-kind evidence and the chain of thought), :mod:`~reasoner.measure.backend`
(:class:`MeasureReasoner`). No torch, no model weights.
"""

from reasoner.measure.backend import MIN_SIDE, MeasureReasoner
from reasoner.measure.entries import (
    ASSUMED_MEAN_DEPTH,
    DEFOCUS_SURE,
    ENTRIES,
    FACTOR_DIGITS,
    IMPLIED,
    JPEG_DIRECT_SCORE,
    implied_factors,
)
from reasoner.measure.reasoning import EVIDENCE, Evidence

# Old names that rl/synth.py and rl/text_policy.py import; they go once those use EVIDENCE and implied_factors.
_STEPS = tuple((kind, ev.statistics, ev.template) for kind, ev in EVIDENCE.items())
_factors_from_severity = implied_factors

__all__ = [
    "ASSUMED_MEAN_DEPTH",
    "DEFOCUS_SURE",
    "ENTRIES",
    "EVIDENCE",
    "FACTOR_DIGITS",
    "IMPLIED",
    "JPEG_DIRECT_SCORE",
    "MIN_SIDE",
    "Evidence",
    "MeasureReasoner",
    "implied_factors",
]
