"""The quality-change model: change statistics -> estimated PSNR change (dB) and how sure that estimate is.

A small ensemble of MLPs (numpy inference, weights in ``reasoner/calibration/quality.json``) regresses the change
in PSNR against the (unknown) clean image that a restoration brought, from :func:`reasoner.quality.features.
change_features`. Members are fitted on bootstrap resamples, so their spread is a per-image uncertainty; the file
also holds the held-out residual spread as a function of the estimate's magnitude (big changes are estimated less
precisely than small ones), added in quadrature, so the uncertainty is honest on average. Fitted by
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
from reasoner.quality.features import FEATURES

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "calibration" / "quality.json"
FORMAT = "rnr.quality_model"
#: The model's outputs are clipped to this range (dB): beyond it, "much better" or "much worse" is all it can say.
GAIN_RANGE = (-20.0, 20.0)


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
        """``(gain_db, uncertainty_db)`` for one attempt's statistics; uncertainty is one standard deviation."""
        x = np.array([[stats[k] for k in self.features]], dtype=np.float64)
        z = (x - self.mean) / self.scale
        preds = np.array([float(m(z).reshape(-1)[0]) for m in self.members])
        gain = float(np.clip(preds.mean(), *GAIN_RANGE))
        spread = float(preds.std()) if len(preds) > 1 else 0.0
        a, b = self.residual
        residual = max(a + b * abs(gain), 0.05) * math.sqrt(math.pi / 2)  # mean |error| -> std of a normal error
        return gain, math.hypot(spread, residual)

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
        if set(names) != set(FEATURES):
            raise ValueError("the quality model was fitted on other statistics; refit with `rnr calibrate --quality`")
        return cls(
            names,
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["scale"], dtype=np.float64),
            tuple(Mlp.from_json(m) for m in d["members"]),
            tuple(float(v) for v in d["residual"]),
            dict(d.get("meta", {})),
        )


@cache
def load_model(path: str | None = None) -> QualityModel | None:
    """The committed quality model (or the one at ``path``); None when no model has been fitted yet."""
    p = Path(path) if path else DEFAULT_PATH
    if not p.is_file():
        return None
    return QualityModel.from_json(json.loads(p.read_text(encoding="utf-8")))
