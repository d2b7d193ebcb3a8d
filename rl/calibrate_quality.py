"""Fit the quality-change model (``reasoner/calibration/quality.json``) from :mod:`rl.quality_data` attempts.

``rnr calibrate --quality`` runs :func:`fit` with its defaults; the same seed and sample count reproduce the file.
Cases are split by case (never an attempt of a validation case in training); members are MLPs fitted on bootstrap
resamples of the training cases; the validation cases give the residual spread (as a function of the predicted
magnitude: big changes are estimated less precisely than small ones), the artefact thresholds' check, and the
figures stored in ``meta``. Needs scikit-learn (``pip install 'reason-restore[dev]'``).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from reasoner.kinds import LOWPASS
from reasoner.quality.artefacts import ARTEFACTS
from reasoner.quality.features import statistic_names
from reasoner.quality.model import DEFAULT_PATH, GAIN_RANGE, QualityModel, to_slog

DEFAULT_N = 3000  # cases (each 4-6 attempts): about 15 minutes on two idle cores
TARGET_CLIP = 15.0  # dB: labels beyond this are "catastrophic" either way; clipping keeps them from dominating
GOOD_DB = 0.5  # attempts better than this (dB) define what good restorations look like, for artefact thresholds
#: Over-smoothing raises PSNR (noise goes with the texture), so a good attempt for its threshold must also have kept
#: at least half the clean crop's fine-texture energy (``tex_true``, full-reference), on cases with no low-pass
#: degradation (where the source still held the texture, so what is missing is the restoration's doing). Fitted on
#: PSNR alone the threshold for denoising plans was -2.29: a fur denoised to watercolour (-0.76) passed.
TEXTURE_KEPT = float(np.log(0.5))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _kept_texture(row: Mapping) -> bool:
    return row.get("tex_true", 0.0) >= TEXTURE_KEPT and not set(row["degradations"].split(",")) & LOWPASS


def _deblurred(row: Mapping) -> bool:
    return bool(set(row["kinds"].split(",")) & LOWPASS)


#: Artefacts whose good attempts must pass a further test than the PSNR gain (rows without its label: PSNR alone).
#: Ghosting is judged against good deblurrings only: what a deconvolution that helped leaves (0.46 on calibration
#: crops), not what plans without one leave (about 0.3 over all good attempts, which would flag good deblurrings).
GOOD_FOR: dict[str, Callable[[Mapping], bool]] = {"over_smoothing": _kept_texture, "ghosting": _deblurred}


def artefact_thresholds(rows: Sequence[Mapping], percentile: float = 97.0) -> dict[str, list[float]]:
    """Per artefact, the statistic's ``percentile`` over good attempts: [plans it is not explained by, explained].

    Plans with a kind the artefact is not looked for after (``unbounded_with``) are left out of its fit.
    """
    good = [r for r in rows if r["dpsnr"] > GOOD_DB]
    labelled = all("tex_true" in r for r in good)
    out = {}
    for a in ARTEFACTS:
        limits = []
        test = GOOD_FOR.get(a.name) if labelled else None
        for explained in (False, True):
            vals = [r[a.statistic] - a.allowance(r["kinds"].split(","), r) for r in good
                    if bool(set(r["kinds"].split(",")) & a.explained_by) == explained
                    and not set(r["kinds"].split(",")) & a.unbounded_with and (test is None or test(r))]  # fmt: skip
            if len(vals) < 30:
                limits.append(a.default[int(explained)])
                continue
            q = percentile if a.direction > 0 else 100.0 - percentile
            limits.append(round(float(np.percentile(vals, q)), 5))
        out[a.name] = limits
    return out


def fit_rows(
    rows: Sequence[Mapping],
    seed: int = 0,
    members: int = 5,
    hidden: tuple[int, ...] = (64, 32),
    alpha: float = 1e-2,
    val_frac: float = 0.2,
) -> QualityModel:
    """Fit the model on attempt rows (see :func:`rl.quality_data.quality_case`)."""
    from sklearn.neural_network import MLPRegressor

    cases = np.array([r["index"] for r in rows])
    rng = np.random.default_rng(seed)
    uniq = np.unique(cases)
    val_cases = set(rng.choice(uniq, size=max(1, int(len(uniq) * val_frac)), replace=False).tolist())
    is_val = np.array([c in val_cases for c in cases])
    names = statistic_names()
    x = np.nan_to_num(np.array([[r[k] for k in names] for r in rows], dtype=np.float64))
    y = np.clip(np.array([r["dpsnr"] for r in rows], dtype=np.float64), -TARGET_CLIP, TARGET_CLIP)
    xt = x[~is_val]
    mean, scale = xt.mean(axis=0), xt.std(axis=0) + 1e-9
    z = (x - mean) / scale
    train_cases = np.unique(cases[~is_val])
    fitted = []
    for m in range(members):
        pick = rng.choice(train_cases, size=len(train_cases), replace=True)
        idx = np.concatenate([np.flatnonzero(cases == c) for c in pick])
        est = MLPRegressor(hidden_layer_sizes=hidden, alpha=alpha, max_iter=600, early_stopping=True,
                           random_state=seed * 100 + m, learning_rate_init=1e-3)  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(z[idx], to_slog(y[idx]))
        from reasoner.measure.calibration import Mlp

        fitted.append(Mlp(tuple(est.coefs_), tuple(est.intercepts_), "identity"))
    model = QualityModel(names, mean, scale, tuple(fitted), (0.0, 0.0), {})
    preds = np.array([model.predict(dict(zip(names, row, strict=True)))[0] for row in x[is_val]])
    resid = preds - y[is_val]
    # Heteroscedastic spread: |residual| grows with the size of the change; fit E|r| = a + b |pred| (robustly).
    a_mat = np.stack([np.ones_like(preds), np.abs(preds)], axis=1)
    coef, *_ = np.linalg.lstsq(a_mat, np.abs(resid), rcond=None)
    meta = {
        "fitted_cases": int(len(train_cases)),
        "validation_cases": int(len(val_cases)),
        "attempts": len(rows),
        "validation_spearman": round(_spearman(preds, y[is_val]), 4),
        "validation_mae_db": round(float(np.mean(np.abs(resid))), 4),
        "artefact_thresholds": artefact_thresholds([r for r, v in zip(rows, is_val, strict=True) if not v]),
    }
    return QualityModel(names, mean, scale, tuple(fitted), (float(coef[0]), float(coef[1])), meta)


def fit(
    n: int = DEFAULT_N,
    seed: int = 0,
    workers: int | None = None,
    model_pool: Mapping[str, Sequence[str]] | None = None,
) -> QualityModel:
    """Synthesise ``n`` cases' attempts (:func:`rl.quality_data.build`) and fit on them."""
    from rl.quality_data import build

    t0 = time.perf_counter()
    model = fit_rows(build(n, seed, workers, model_pool), seed)
    model.meta["fit_seconds"] = round(time.perf_counter() - t0, 1)
    model.meta["n"], model.meta["seed"] = n, seed
    return model


def write(model: QualityModel, out: str | Path = DEFAULT_PATH) -> Path:
    """Write the model as compact JSON (stable key order, so a refit with the same inputs gives the same bytes)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model.to_json(), sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")
    return out


__all__ = ["DEFAULT_N", "GAIN_RANGE", "artefact_thresholds", "fit", "fit_rows", "write"]
