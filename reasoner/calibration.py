"""The ``measure`` backend's calibration: small MLPs mapping measured statistics to severities and presence.

The parameter file is plain JSON (weights as nested lists), committed under ``reasoner/calibration/`` and rebuilt
by one command, ``rnr calibrate`` (see ``rl/calibrate.py``), from images the project synthesises itself. Inference
is numpy only, so the default backend needs neither scikit-learn nor torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_PATH = Path(__file__).parent / "calibration" / "measure.json"
FORMAT = "rnr.measure_calibration"

#: Statistics compressed with log1p before standardisation (heavy-tailed, scale-like).
LOG_FEATURES = (
    "noise_sigma_haar",
    "noise_sigma_flat",
    "noise_sigma_median",
    "noise_sigma_mid",
    "edge_width",
    "blur_sigma_fit",
    "grad_p98",
)
#: Statistics that are angles or positions, kept for evidence but not fed to the model.
EXCLUDED = (
    "orient_min_angle",
    "rain_angle",
    "resample_period",
    "airlight_r",
    "airlight_g",
    "airlight_b",
    "jpeg_quality_read",
    "jpeg_read_score",
)


def feature_vector(feats: dict[str, float], names: list[str]) -> np.ndarray:
    """The model input for ``feats`` in the order ``names`` (log1p applied to :data:`LOG_FEATURES`)."""
    return np.array(
        [math.log1p(max(feats[n], 0.0)) if n in LOG_FEATURES else feats[n] for n in names], dtype=np.float64
    )


def model_feature_names(feats: dict[str, float]) -> list[str]:
    """Names of the statistics that enter the model, in a stable order."""
    return sorted(n for n in feats if n not in EXCLUDED)


@dataclass(frozen=True)
class Mlp:
    """A ReLU multi-layer perceptron with a linear or logistic output layer."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    output: str  # "identity" or "logistic"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Forward pass on ``x`` of shape (n, features)."""
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w + b
            if i < len(self.weights) - 1:
                x = np.maximum(x, 0.0)
        return 1.0 / (1.0 + np.exp(-x)) if self.output == "logistic" else x

    @classmethod
    def from_json(cls, d: dict) -> Mlp:
        """Inverse of :meth:`to_json`."""
        return cls(
            tuple(np.asarray(w, dtype=np.float64) for w in d["weights"]),
            tuple(np.asarray(b, dtype=np.float64) for b in d["biases"]),
            d["output"],
        )

    def to_json(self) -> dict:
        """Weights rounded to 5 significant digits (keeps the file small and diffs readable)."""
        rnd = lambda a: np.vectorize(lambda v: float(f"{v:.5g}"))(a).tolist()  # noqa: E731
        return {
            "weights": [rnd(w) for w in self.weights],
            "biases": [rnd(b) for b in self.biases],
            "output": self.output,
        }


@dataclass(frozen=True)
class Calibration:
    """Standardisation, then ensembles of severity regressors and presence classifiers (outputs averaged)."""

    version: str
    feature_names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    kinds: list[str]
    presence_labels: list[str]
    severity: tuple[Mlp, ...]
    presence: tuple[Mlp, ...]
    meta: dict

    def predict(self, feats: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
        """Per-kind severity in [0, 1] and presence probability (plus auxiliary labels) for one image."""
        missing = [n for n in self.feature_names if n not in feats]
        if missing:
            raise ValueError(f"calibration {self.version} needs statistics this build does not measure: {missing}")
        x = ((feature_vector(feats, self.feature_names) - self.mean) / self.scale)[None, :]
        sev = np.clip(np.mean([m(x)[0] for m in self.severity], axis=0), 0.0, 1.0)
        prob = np.mean([m(x)[0] for m in self.presence], axis=0)
        return (
            {k: float(v) for k, v in zip(self.kinds, sev, strict=True)},
            {k: float(v) for k, v in zip(self.presence_labels, prob, strict=True)},
        )

    def to_json(self) -> dict:
        """The committed file's content."""
        return {
            "format": FORMAT,
            "version": self.version,
            "feature_names": self.feature_names,
            "mean": [float(f"{v:.8g}") for v in self.mean],
            "scale": [float(f"{v:.8g}") for v in self.scale],
            "kinds": self.kinds,
            "presence_labels": self.presence_labels,
            "severity": [m.to_json() for m in self.severity],
            "presence": [m.to_json() for m in self.presence],
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, d: dict) -> Calibration:
        """Inverse of :meth:`to_json`."""
        if d.get("format") != FORMAT:
            raise ValueError(f"not a measure calibration file (format {d.get('format')!r}, expected {FORMAT!r})")
        return cls(
            version=d["version"],
            feature_names=list(d["feature_names"]),
            mean=np.asarray(d["mean"], dtype=np.float64),
            scale=np.asarray(d["scale"], dtype=np.float64),
            kinds=list(d["kinds"]),
            presence_labels=list(d["presence_labels"]),
            severity=tuple(Mlp.from_json(m) for m in d["severity"]),
            presence=tuple(Mlp.from_json(m) for m in d["presence"]),
            meta=dict(d.get("meta", {})),
        )


def load_calibration(path: str | Path | None = None) -> Calibration:
    """Read a calibration file (the committed default when ``path`` is None) with a one-line error if unusable."""
    p = Path(path) if path is not None else DEFAULT_PATH
    try:
        return Calibration.from_json(json.loads(p.read_text()))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: calibration file not found; rebuild it with: rnr calibrate --out {p}") from None
    except (json.JSONDecodeError, KeyError, ValueError) as e:
        raise ValueError(f"{p}: unusable calibration file ({e}); rebuild it with: rnr calibrate --out {p}") from None
