"""The quality-change model: change statistics -> estimated PSNR change (dB) and how sure that estimate is.

A small ensemble of MLPs (numpy inference, weights in ``reasoner/calibration/quality.json``) regresses the change
in PSNR against the (unknown) clean image that a restoration brought, from :func:`reasoner.quality.features.
quality_statistics`, in a signed-log space (``sign(d) log(1 + |d|)``: a 10 dB loss and a 12 dB loss matter less
apart than 0 and 2 dB do). Members are fitted on bootstrap resamples, so their spread is a per-image uncertainty;
the file also holds the held-out residual spread as a function of the estimate's magnitude (big changes are
estimated less precisely than small ones), added in quadrature, so the uncertainty is honest on average. Fitted by
``rnr calibrate --quality`` (:mod:`rl.calibrate_quality`) on restorations, good and bad, of cases the project
synthesises, whose clean image is known.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from reasoner.measure.calibration import Mlp
from reasoner.quality.features import statistic_names

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "calibration" / "quality.json"
FORMAT = "rnr.quality_model"
#: The model's outputs are clipped to this range (dB): beyond it, "much better" or "much worse" is all it can say.
GAIN_RANGE = (-20.0, 20.0)
#: Statistics further than this many standard deviations from their training mean are outside the bulk the model was
#: fitted on (5-7% of attempts at held-out photos); there the members' agreement assures nothing.
TYPICAL_Z = 8.0


@dataclass(frozen=True)
class QualityModel:
    """Standardisation of the statistics, the ensemble, and the residual spread measured on held-out attempts."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    members: tuple[Mlp, ...]
    residual: tuple[float, float]  # held-out mean |error| = a + b |estimate| (dB)
    meta: dict = field(default_factory=dict)

    def predict(self, stats: dict[str, float]) -> tuple[float, float]:
        """``(gain_db, uncertainty_db)`` for one attempt: the estimate and one standard deviation of its error."""
        gain, spread = self.estimate(stats)
        a, b = self.residual
        residual = max(a + b * abs(gain), 0.05) * math.sqrt(math.pi / 2)  # mean |error| -> std of a normal error
        return gain, math.hypot(spread, residual)

    def estimate(self, stats: dict[str, float]) -> tuple[float, float]:
        """``(gain_db, spread_db)``: the ensemble's estimate and the members' disagreement on this image."""
        gain, spread, _ = self.ensemble(stats)
        return gain, spread

    def ensemble(self, stats: dict[str, float]) -> tuple[float, float, float | None]:
        """``(gain_db, spread_db, spread_log)``: the estimate and the members' disagreement, in dB and in signed log.

        Signed log is the space the members regress in (:func:`to_slog`; the estimate is their mean there).

        The two spreads differ when the members agree on the sign but not on the size of a big change (2.8, 2.9,
        24, 28 and 36 dB on a dim photo brightened right: 13.8 dB apart, 1.0 in signed log; the gain at least
        ``from_slog(to_slog(gain) - z * spread_log)``). ``spread_log`` is None where the members extrapolate: a
        statistic more than :data:`TYPICAL_Z` standard deviations from its training mean (a hazy, rainy crop, bright
        beyond 13 deviations, dehazed 4 dB worse: members 1.5 to 79 dB, 1.1 apart in signed log, as far as on the
        dim photo). An estimate at :data:`GAIN_RANGE`'s end is not by itself extrapolation: the clip is of the
        output, and members that agree on a change bigger than it are the clearest case for the signed-log bound. Until
        2026-12-05 it withheld the spread too, and a hazy phone JPEG of the coffee cup (members 9.6 to 55 dB,
        statistics within 6.1 deviations, 0.58 apart in signed log), dehazed truly +12.7 dB, came back hazy. Over
        the agent's runs at the protocols' cases (seeds 0-12, and 1-3 saved as camera JPEGs: 3,232 crops) 7
        attempts were at the clip; the two truly worse ones (-6.2, -10.6 dB) are beyond 13 deviations and still
        withheld, a dim crop returned dark is now brightened +6.3 dB, and another gets its +9.5 dB attempt instead
        of +6.6.
        """
        x = np.array([[stats[k] for k in self.features]], dtype=np.float64)
        z = (x - self.mean) / self.scale
        logs = np.array([float(m(z).reshape(-1)[0]) for m in self.members])
        preds = from_slog(logs)
        gain = float(np.clip(from_slog(np.mean(logs)), *GAIN_RANGE))
        many = len(preds) > 1
        typical = float(np.abs(z).max()) <= TYPICAL_Z
        return gain, float(preds.std()) if many else 0.0, (float(logs.std()) if many else 0.0) if typical else None

    def to_json(self) -> dict:
        """The file's content."""
        return {
            "format": FORMAT,
            "features": list(self.features),
            "mean": [float(f"{v:.6g}") for v in self.mean],
            "scale": [float(f"{v:.6g}") for v in self.scale],
            "members": [m.to_json() for m in self.members],
            "residual": [round(v, 5) for v in self.residual],
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, d: dict) -> QualityModel:
        """Inverse of :meth:`to_json`; refuses a file for other statistics than this version computes."""
        if d.get("format") != FORMAT:
            raise ValueError(f"not a quality model (format {d.get('format')!r})")
        names = tuple(d["features"])
        if set(names) != set(statistic_names()):
            raise ValueError("the quality model was fitted on other statistics; refit with `rnr calibrate --quality`")
        return cls(
            names,
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["scale"], dtype=np.float64),
            tuple(Mlp.from_json(m) for m in d["members"]),
            tuple(float(v) for v in d["residual"]),
            dict(d.get("meta", {})),
        )


def to_slog(x):
    """Signed log: ``sign(x) log(1 + |x|)``, the space the model regresses in.

    >>> float(to_slog(-1.718281828459045))
    -1.0
    """
    return np.sign(x) * np.log1p(np.abs(x))


def from_slog(y):
    """Inverse of :func:`to_slog`."""
    return np.sign(y) * np.expm1(np.abs(y))


def load_model(path: str | None = None) -> QualityModel | None:
    """The quality model at ``path``, else at ``RNR_QUALITY_MODEL``, else the committed one; None when none exists.

    Raises:
        ValueError: For a file that is not a quality model for these statistics (one line naming it).

    """
    import os

    chosen = path or os.environ.get("RNR_QUALITY_MODEL") or str(DEFAULT_PATH)
    return _load(chosen)


@cache
def _load(path: str) -> QualityModel | None:
    p = Path(path)
    if not p.is_file():
        if path != str(DEFAULT_PATH):
            raise ValueError(f"{path}: no such quality model file")
        return None
    try:
        return QualityModel.from_json(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a usable quality model ({' '.join(str(e).split())[:200]})") from None
