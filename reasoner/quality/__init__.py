"""Honest re-scoring: the estimated quality change of a restoration, its uncertainty and the artefacts it shows.

``assess(source, restored, kinds)`` needs no clean reference: statistics of the change
(:mod:`reasoner.quality.features`) go through a small calibrated ensemble (:mod:`reasoner.quality.model`, numpy
only, fitted by ``rnr calibrate --quality`` on restorations of synthesised cases whose clean image is known) and
named artefact checks (:mod:`reasoner.quality.artefacts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from reasoner.quality.artefacts import ARTEFACTS, describe, find_artefacts
from reasoner.quality.features import FEATURES, change_features
from reasoner.quality.model import QualityModel, load_model

__all__ = ["ARTEFACTS", "FEATURES", "QualityChange", "QualityModel", "assess", "describe", "load_model"]


@dataclass(frozen=True)
class QualityChange:
    """What a restoration did to an image, estimated without a reference.

    Attributes:
        gain_db: Estimated PSNR change (dB) against the unknown clean image; None when no model is fitted.
        uncertainty_db: One standard deviation of that estimate (dB); None without a model.
        artefacts: Artefacts found (name -> the statistic's value), see :mod:`reasoner.quality.artefacts`.
        stats: The change statistics the estimate was made from.

    """

    gain_db: float | None
    uncertainty_db: float | None
    artefacts: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    def lower_bound(self, z: float = 1.0) -> float | None:
        """The gain ``z`` standard deviations below the estimate (None without a model)."""
        if self.gain_db is None or self.uncertainty_db is None:
            return None
        return self.gain_db - z * self.uncertainty_db


def assess(
    source: np.ndarray, restored: np.ndarray, kinds: Iterable[str] = (), model: QualityModel | None = None
) -> QualityChange:
    """Estimate how ``restored`` changed the quality of ``source`` (both ``float32 HxWx3`` in [0, 1]).

    ``kinds`` are the kinds the restoration set out to remove (they explain some changes, see
    :func:`find_artefacts`); ``model`` defaults to the committed one.
    """
    stats = change_features(source, restored)
    model = model or load_model()
    thresholds = (model.meta.get("artefact_thresholds") if model else None) or {}
    found = find_artefacts(stats, kinds, thresholds)
    if model is None:
        return QualityChange(None, None, found, stats)
    gain, unc = model.predict(stats)
    return QualityChange(round(gain, 4), round(unc, 4), found, stats)
