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

from reasoner.quality.artefacts import (
    ARTEFACTS,
    BY_NAME,
    describe,
    describe_unchecked,
    find_artefacts,
    implausible,
    tone_may_hide,
    unchecked,
)
from reasoner.quality.features import FEATURES, measured, quality_statistics, removed_noise, tone_gain
from reasoner.quality.model import QualityModel, load_model

__all__ = [
    "ARTEFACTS", "BY_NAME", "FEATURES", "QualityChange", "QualityModel", "assess", "describe", "describe_unchecked",
    "implausible", "load_model", "measured",
]  # fmt: skip


def _complete(stats: dict[str, float] | None) -> dict[str, float] | None:
    """``stats`` if they hold every measurement the model reads (an image too small to measure has fewer)."""
    from reasoner.quality.features import measured_names

    return stats if stats is not None and all(k in stats for k in measured_names()) else None


@dataclass(frozen=True)
class QualityChange:
    """What a restoration did to an image, estimated without a reference.

    Attributes:
        gain_db: Estimated PSNR change (dB) against the unknown clean image; None when no model is fitted.
        uncertainty_db: One standard deviation of that estimate's error (dB), calibrated on held-out attempts;
            None without a model.
        spread_db: How much the ensemble's members disagree on this image (dB): the per-image part of the
            uncertainty, which the decide policy weighs; None without a model.
        spread_log: The same disagreement in the signed-log space the members regress in
            (:meth:`reasoner.quality.model.QualityModel.ensemble`); None without a model and where the members
            extrapolate.
        artefacts: Artefacts found (name -> the statistic's value), see :mod:`reasoner.quality.artefacts`.
        stats: The change statistics the estimate was made from.
        implausible: Why the change cannot be trusted as a restoration at all (see
            :func:`reasoner.quality.artefacts.implausible`), or None.
        removed_noise: For a restoration that only removed noise of a known sigma: what it took away against that
            noise (:func:`reasoner.quality.features.removed_noise`: std over sigma, lag-1 correlation), else None.
        compression_cells: For a restoration that only undid JPEG of a known quality: how well the source carries
            the DCT grid of the nearby quality it fits best (:func:`reasoner.jpeg_cells.fitted_grid`) and how far
            the change left those quantisation cells (:func:`reasoner.jpeg_cells.outside`), else None (also when
            the grid cannot be measured).
        unchecked: Artefacts the plan may have made that the checks could not see on this change, each with what
            hid it (:func:`reasoner.quality.artefacts.unchecked`: texture loss after a large tone change).

    """

    gain_db: float | None
    uncertainty_db: float | None
    spread_db: float | None = None
    artefacts: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)
    implausible: str | None = None
    spread_log: float | None = None
    removed_noise: tuple[float, float] | None = None
    compression_cells: tuple[float, float] | None = None
    unchecked: dict[str, float] = field(default_factory=dict)

    def lower_bound(self, z: float = 1.0) -> float | None:
        """The gain ``z`` ensemble spreads below the estimate (None without a model)."""
        if self.gain_db is None or self.spread_db is None:
            return None
        return self.gain_db - z * self.spread_db


def assess(
    source: np.ndarray,
    restored: np.ndarray,
    kinds: Iterable[str] = (),
    model: QualityModel | None = None,
    *,
    source_measured: dict[str, float] | None = None,
    restored_measured: dict[str, float] | None = None,
    noise_sigma: float | None = None,
    jpeg_quality: int | None = None,
) -> QualityChange:
    """Estimate how ``restored`` changed the quality of ``source`` (both ``float32 HxWx3`` in [0, 1]).

    ``kinds`` are the kinds the restoration set out to remove (they explain some changes, see
    :func:`find_artefacts`); ``model`` defaults to the committed one; ``source_measured`` and
    ``restored_measured`` (``measure``'s statistics of either image, e.g. from
    :meth:`reasoner.measure.MeasureReasoner.diagnose_measured`) save measuring them again. ``noise_sigma`` (0-255),
    the source's diagnosed noise, is what a restoration of noise alone is checked against (``removed_noise``);
    ``jpeg_quality``, the source's diagnosed JPEG quality, the cells a restoration of JPEG alone is checked against
    (``compression_cells``).
    """
    if np.array_equal(source, restored):  # nothing changed: nothing gained, whatever a model would extrapolate
        return QualityChange(0.0, 0.0, 0.0, spread_log=0.0)
    kinds = set(kinds)
    stats = quality_statistics(source, restored, _complete(source_measured), _complete(restored_measured))
    model = model or load_model()
    thresholds = (model.meta.get("artefact_thresholds") if model else None) or {}
    found = find_artefacts(stats, kinds, thresholds)
    if tone_may_hide(kinds, found):  # measured only where the report reads it (a tenth of the statistics' time)
        stats = {**stats, "tone_gain": tone_gain(source, restored)}
    missed = unchecked(stats, kinds, found)
    why = implausible(stats, kinds)
    removed = None
    if kinds == {"noise"} and noise_sigma:
        removed = tuple(round(v, 4) for v in removed_noise(source, restored, noise_sigma))
    cells = None
    if kinds == {"jpeg"} and jpeg_quality:
        from reasoner.jpeg_cells import fitted_grid, outside

        if (grid := fitted_grid(source, jpeg_quality)) is not None:
            quality, origin, fit = grid
            cells = (round(fit, 4), round(outside(source, restored, quality, origin=origin), 4))
    if model is None:
        return QualityChange(None, None, None, found, stats, why, removed_noise=removed, compression_cells=cells,
                             unchecked=missed)  # fmt: skip
    gain, spread, spread_log = model.ensemble(stats)
    _, total = model.predict(stats)
    spread_log = None if spread_log is None else round(spread_log, 4)
    return QualityChange(round(gain, 4), round(total, 4), round(spread, 4), found, stats, why, spread_log, removed,
                         cells, missed)  # fmt: skip
