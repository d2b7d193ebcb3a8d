"""The ``measure`` backend's calibration: small MLPs mapping measured statistics to severities, presence and factors.

The parameter file is plain JSON (weights as nested lists), committed under ``reasoner/calibration/`` and rebuilt
by one command, ``rnr calibrate`` (see ``rl/calibrate.py``), from images the project synthesises itself. Inference
is numpy only, so the default backend needs neither scikit-learn nor torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reasoner.kinds import check_table

DEFAULT_PATH = Path(__file__).parent.parent / "calibration" / "measure.json"
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
    "airlight_floor",
    "jpeg_quality_read",
    "jpeg_read_score",
)


#: Factor heads: per kind, the physical factors regressed directly (trained only on images that carry the kind) and
#: the space each is regressed in, or None for a kind without a head. Inverting the severity map instead gives one
#: number per kind, which cannot split under-exposure into exposure and gamma, and carries the severity head's bias
#: towards "absent". JPEG has no head: its quality is read off the DCT quantisation steps, or else the severity map's.
FACTOR_HEADS: dict[str, tuple[tuple[str, str], ...] | None] = check_table(
    {
        "noise": (("sigma", "log"),),
        "blur": (("sigma", "log"),),
        "motion_blur": (("length", "log"),),
        "haze": (("transmission", "logit"),),
        "low_light": (("exposure", "log"), ("gamma", "identity")),
        "jpeg": None,
        "rain": (("density", "log"),),
        "low_resolution": (("scale", "log"),),
    },
    "reasoner.measure FACTOR_HEADS",
)
#: The kinds that have a factor head, and their targets (what ``rnr calibrate`` fits and the calibration file holds).
FACTOR_TARGETS: dict[str, tuple[tuple[str, str], ...]] = {k: t for k, t in FACTOR_HEADS.items() if t is not None}


def to_target(value: float, space: str) -> float:
    """A factor in the space its head regresses it in (see :data:`FACTOR_TARGETS`)."""
    if space == "log":
        return math.log(max(value, 1e-6))
    if space == "logit":
        v = min(max(value, 1e-4), 1 - 1e-4)
        return math.log(v / (1 - v))
    return float(value)


#: Largest exponent :func:`from_target` passes to ``math.exp``, which raises OverflowError past ~709: a head far
#: outside its training range then saturates (and the schema's bounds clamp it) instead of crashing a diagnosis.
_MAX_EXP = 700.0


def from_target(value: float, space: str) -> float:
    """Inverse of :func:`to_target`."""
    if space == "log":
        return math.exp(min(value, _MAX_EXP))
    if space == "logit":
        return 1.0 / (1.0 + math.exp(min(-value, _MAX_EXP)))
    return float(value)


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
class FactorHead:
    """An ensemble regressing one kind's factors (standardised targets, in the spaces of :data:`FACTOR_TARGETS`)."""

    kind: str
    mean: np.ndarray
    scale: np.ndarray
    members: tuple[Mlp, ...]

    def __call__(self, z: np.ndarray) -> dict[str, float]:
        """Factors for one standardised feature row ``z`` of shape (1, features)."""
        y = np.mean([m(z)[0] for m in self.members], axis=0) * self.scale + self.mean
        return {
            name: from_target(float(v), space) for (name, space), v in zip(FACTOR_TARGETS[self.kind], y, strict=True)
        }

    def to_json(self) -> dict:
        """The head's part of the committed file."""
        return {
            "mean": [float(f"{v:.8g}") for v in self.mean],
            "scale": [float(f"{v:.8g}") for v in self.scale],
            "members": [m.to_json() for m in self.members],
        }

    @classmethod
    def from_json(cls, kind: str, d: dict) -> FactorHead:
        """Inverse of :meth:`to_json`."""
        if kind not in FACTOR_TARGETS:
            raise ValueError(f"factor head for unknown kind {kind!r}")
        return cls(
            kind,
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["scale"], dtype=np.float64),
            tuple(Mlp.from_json(m) for m in d["members"]),
        )


@dataclass(frozen=True)
class Calibration:
    """Standardisation, then ensembles of severity regressors, presence classifiers and per-kind factor heads.

    Ensemble outputs are averaged. Files without factor heads (format version 1) still load; the diagnoser then
    derives factors from severities.
    """

    version: str
    feature_names: list[str]
    mean: np.ndarray
    scale: np.ndarray
    kinds: list[str]
    presence_labels: list[str]
    severity: tuple[Mlp, ...]
    presence: tuple[Mlp, ...]
    meta: dict
    factor_heads: dict[str, FactorHead] = field(default_factory=dict)

    def standardise(self, feats: dict[str, float]) -> np.ndarray:
        """The model input row (1, features) for one image's statistics."""
        missing = [n for n in self.feature_names if n not in feats]
        if missing:
            raise ValueError(f"calibration {self.version} needs statistics this build does not measure: {missing}")
        return ((feature_vector(feats, self.feature_names) - self.mean) / self.scale)[None, :]

    def predict(self, feats: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
        """Per-kind severity in [0, 1] and presence probability (plus auxiliary labels) for one image."""
        x = self.standardise(feats)
        sev = np.clip(np.mean([m(x)[0] for m in self.severity], axis=0), 0.0, 1.0)
        prob = np.mean([m(x)[0] for m in self.presence], axis=0)
        return (
            {k: float(v) for k, v in zip(self.kinds, sev, strict=True)},
            {k: float(v) for k, v in zip(self.presence_labels, prob, strict=True)},
        )

    def predict_factors(self, feats: dict[str, float], kind: str) -> dict[str, float] | None:
        """The factor head's estimate for ``kind`` (assuming it is present), or None without a head for it."""
        head = self.factor_heads.get(kind)
        return None if head is None else head(self.standardise(feats))

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
            "factor_heads": {k: h.to_json() for k, h in self.factor_heads.items()},
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
            factor_heads={k: FactorHead.from_json(k, h) for k, h in d.get("factor_heads", {}).items()},
        )


def load_calibration(path: str | Path | None = None) -> Calibration:
    """Read a calibration file (the committed default when ``path`` is None) with a one-line error if unusable."""
    p = Path(path) if path is not None else DEFAULT_PATH
    try:
        return Calibration.from_json(json.loads(p.read_text()))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: calibration file not found; rebuild it with: rnr calibrate --out {p}") from None
    except (json.JSONDecodeError, KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{p}: unusable calibration file ({e}); rebuild it with: rnr calibrate --out {p}") from None
