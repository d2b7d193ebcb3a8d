"""The ``measure`` backend: a CPU diagnosis from measured pixel statistics and a small committed calibration.

Modules: :mod:`~reasoner.measure.features` (the statistics), :mod:`~reasoner.measure.psf` (blur kernels read off
spectral zeros), :mod:`~reasoner.measure.semantics` (coarse scene cues), :mod:`~reasoner.measure.calibration`
(statistics to severities, presence and factors), :mod:`~reasoner.measure.backend` (:class:`MeasureReasoner`).
No torch, no model weights.
"""

# rl/text_policy.py and rl/synth.py still import these private names from here.
from reasoner.measure.backend import (  # noqa: F401
    _STEPS,
    ASSUMED_MEAN_DEPTH,
    DEFOCUS_SURE,
    FACTOR_DIGITS,
    JPEG_DIRECT_SCORE,
    MIN_SIDE,
    MeasureReasoner,
    _factors_from_severity,
)

__all__ = ["ASSUMED_MEAN_DEPTH", "DEFOCUS_SURE", "FACTOR_DIGITS", "JPEG_DIRECT_SCORE", "MIN_SIDE", "MeasureReasoner"]
