"""Fit the ``measure`` reasoner's calibration from images the project synthesises itself.

``rnr calibrate`` runs :func:`fit` with its defaults and writes ``reasoner/calibration/measure.json``; the same
seed and sample count reproduce the committed file. Needs scikit-learn (``pip install 'reason-restore[dev]'``).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from reasoner.calibration import (
    DEFAULT_PATH,
    FACTOR_TARGETS,
    Calibration,
    FactorHead,
    Mlp,
    feature_vector,
    model_feature_names,
    to_target,
)
from reasoner.features import measure_all
from reasoner.schema import KINDS
from rl.degradations import apply, factors, sample_ops
from rl.photos import CALIBRATION_PHOTOS, load_photo, random_crop

AUX_LABELS = ("noise_poisson", "blur_defocus")
CALIBRATION_VERSION = "2"


def _jitter_scene(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vary the clean scene in ways the vocabulary does not call degradations, so few scenes generalise further.

    Quarter turns (vertical structures are not rain), mild tone curves, contrast and white balance, saturation
    (15% greyscale). Ranges stay well inside what the severity maps call clean.
    """
    img = np.rot90(img, int(rng.integers(4)))
    mean = img.mean()
    img = np.clip((img - mean) * rng.uniform(0.85, 1.15) + mean, 0, 1) ** rng.uniform(0.85, 1.2)
    img = img * rng.uniform(0.93, 1.07, size=3)
    grey = img @ np.array([0.299, 0.587, 0.114])
    sat = 0.0 if rng.random() < 0.15 else rng.uniform(0.6, 1.3)
    img = grey[..., None] + sat * (img - grey[..., None])
    return np.ascontiguousarray(np.clip(img, 0, 1), dtype=np.float32)


def synth_training_case(seed: int, index: int) -> tuple[dict, dict, dict, dict]:
    """One calibration sample, deterministic in (seed, index).

    Returns (statistics, per-kind severities, auxiliary labels, per-kind factor targets of the kinds applied, in
    the spaces of :data:`reasoner.calibration.FACTOR_TARGETS`).

    A quarter of the samples are clean, 40% carry one kind and the rest a 2-3-kind mixture; crops of 160-448 px
    from calibration photos, optionally area-downscaled first so content scale varies.
    """
    rng = np.random.default_rng([seed, index])
    photo = load_photo(CALIBRATION_PHOTOS[int(rng.integers(len(CALIBRATION_PHOTOS)))])
    s = float(rng.uniform(0.5, 1.0))
    if s < 0.95:
        import cv2

        h, w = photo.shape[:2]
        photo = cv2.resize(photo, (max(32, round(w * s)), max(32, round(h * s))), interpolation=cv2.INTER_AREA)
    img = _jitter_scene(random_crop(photo, rng, int(rng.integers(160, 449))), rng)
    u = rng.random()
    ops = [] if u < 0.25 else sample_ops(rng, n_kinds=1) if u < 0.65 else sample_ops(rng, n_kinds=(2, 3))
    out = apply(img, ops) if ops else img
    sev = dict.fromkeys(KINDS, 0.0)
    aux = dict.fromkeys(AUX_LABELS, 0.0)
    fac = {}
    for op in ops:
        sev[op.kind], true = factors(op, img.shape[:2])
        if op.kind in FACTOR_TARGETS:
            fac[op.kind] = [to_target(true[name], space) for name, space in FACTOR_TARGETS[op.kind]]
        if op.kind == "noise" and getattr(op, "model", "") == "poisson_gaussian":
            aux["noise_poisson"] = 1.0
        if op.kind == "blur" and getattr(op, "kernel", "") == "defocus":
            aux["blur_defocus"] = 1.0
    return measure_all(out), sev, aux, fac


def _case(args):
    return synth_training_case(*args)


def build_dataset(n: int, seed: int = 0, workers: int | None = None):
    """Statistics matrix, severity targets, presence/aux labels, feature names and factor targets for ``n`` samples.

    Factor targets are, per kind, the indices of the samples that carry it and their targets.
    """
    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = [(seed, i) for i in range(n)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_case, jobs, chunksize=16))
    else:
        rows = [_case(j) for j in jobs]
    names = model_feature_names(rows[0][0])
    x = np.stack([feature_vector(r[0], names) for r in rows])
    y_sev = np.array([[r[1][k] for k in KINDS] for r in rows])
    y_cls = np.array([[float(r[1][k] >= 0.1) for k in KINDS] + [r[2][k] for k in AUX_LABELS] for r in rows])
    y_fac = {
        k: (
            np.array([i for i, r in enumerate(rows) if k in r[3]], dtype=int),
            np.array([r[3][k] for r in rows if k in r[3]]),
        )
        for k in FACTOR_TARGETS
    }
    return x, y_sev, y_cls, names, y_fac


def _mlp(est, output: str) -> Mlp:
    return Mlp(tuple(est.coefs_), tuple(est.intercepts_), output)


def fit(
    n: int = 8000,
    seed: int = 0,
    workers: int | None = None,
    hidden: tuple[int, ...] = (64, 32),
    alpha: float = 1.0,
    members: int = 3,
    factor_hidden: tuple[int, ...] = (32,),
) -> Calibration:
    """Synthesise ``n`` samples and fit the calibration on them (see :func:`fit_dataset`)."""
    t0 = time.perf_counter()
    cal = fit_dataset(build_dataset(n, seed, workers), seed, hidden, alpha, members, factor_hidden)
    cal.meta["fit_seconds"] = round(time.perf_counter() - t0, 1)
    return cal


def fit_dataset(
    data,
    seed: int = 0,
    hidden: tuple[int, ...] = (64, 32),
    alpha: float = 1.0,
    members: int = 3,
    factor_hidden: tuple[int, ...] = (32,),
) -> Calibration:
    """Fit ensembles of ``members`` severity regressors, presence classifiers and per-kind factor heads.

    ``data`` is what :func:`build_dataset` returns. The L2 penalty is strong on purpose: the calibration scenes are
    few, and a smoother map transfers better to scenes it never saw. Factor heads are smaller and see only the
    samples that carry their kind. 10% of the samples are held out first to record validation numbers in
    ``meta``; the returned models are then refitted on everything.
    """
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError as e:
        raise ImportError(
            "fitting the calibration needs scikit-learn; install with: pip install 'reason-restore[dev]'"
        ) from e
    x, y_sev, y_cls, names, y_fac = data
    n = len(x)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    # max_iter is a deliberate budget: validation numbers are recorded below, so a fit that stops early is judged
    # by them rather than by sklearn's convergence warning.
    warnings.simplefilter("ignore", ConvergenceWarning)

    def kw(m: int, layers: tuple[int, ...]) -> dict:
        return dict(
            hidden_layer_sizes=layers, alpha=alpha, max_iter=800, random_state=seed + m, learning_rate_init=2e-3
        )

    def ensemble(rows):
        regs, clfs = [], []
        for m in range(members):
            regs.append(_mlp(MLPRegressor(**kw(m, hidden)).fit(z[rows], y_sev[rows]), "identity"))
            clfs.append(_mlp(MLPClassifier(**kw(m, hidden)).fit(z[rows], y_cls[rows]), "logistic"))
        return tuple(regs), tuple(clfs)

    def heads(first: int) -> dict[str, FactorHead]:
        out = {}
        for kind, (idx, y) in y_fac.items():
            keep = idx >= first
            rows, t = idx[keep], y[keep]
            if len(rows) < 10:
                continue
            t_mean, t_scale = t.mean(axis=0), t.std(axis=0) + 1e-6
            tz = (t - t_mean) / t_scale
            fits = [MLPRegressor(**kw(m, factor_hidden)).fit(z[rows], tz if tz.shape[1] > 1 else tz[:, 0])
                    for m in range(members)]  # fmt: skip
            out[kind] = FactorHead(kind, t_mean, t_scale, tuple(_mlp(f, "identity") for f in fits))
        return out

    n_val = n // 10
    regs, clfs = ensemble(slice(n_val, None))
    probe = Calibration(CALIBRATION_VERSION, names, mean, scale, list(KINDS), list(KINDS) + list(AUX_LABELS),
                        regs, clfs, {}, heads(n_val))  # fmt: skip
    sev_v, prob_v = [], []
    for row in z[:n_val]:
        xr = row[None, :]
        sev_v.append(np.clip(np.mean([m(xr)[0] for m in regs], axis=0), 0, 1))
        prob_v.append(np.mean([m(xr)[0] for m in clfs], axis=0)[: len(KINDS)])
    sev_v, prob_v = np.array(sev_v), np.array(prob_v)
    pred = (prob_v >= 0.5) & (sev_v >= 0.1)
    truth = y_cls[:n_val, : len(KINDS)] >= 0.5
    tp, fp, fn = (pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()
    meta = {
        "command": f"rnr calibrate --n {n} --seed {seed}",
        "samples": n,
        "seed": seed,
        "photos": list(CALIBRATION_PHOTOS),
        "hidden": list(hidden),
        "factor_hidden": list(factor_hidden),
        "alpha": alpha,
        "members": members,
        "validation_micro_f1": round(float(2 * tp / max(2 * tp + fp + fn, 1)), 4),
        "validation_severity_mae": round(
            float(np.abs(np.maximum(sev_v, 0.1) - y_sev[:n_val])[pred & truth].mean()), 4
        ),
        "validation_factor_mae": _factor_mae(probe, z, y_fac, n_val),
    }
    regs, clfs = ensemble(slice(None))
    return replace(probe, severity=regs, presence=clfs, factor_heads=heads(0), meta=meta)


def _factor_mae(cal: Calibration, z: np.ndarray, y_fac, n_val: int) -> dict[str, float]:
    """Held-out mean absolute error per factor, in the factor's natural units (``kind.factor``)."""
    from reasoner.calibration import from_target

    out = {}
    for kind, head in cal.factor_heads.items():
        idx, y = y_fac[kind]
        val = idx < n_val
        if not val.any():
            continue
        est = [head(z[i][None, :]) for i in idx[val]]
        for j, (name, space) in enumerate(FACTOR_TARGETS[kind]):
            err = [abs(e[name] - from_target(t, space)) for e, t in zip(est, y[val][:, j], strict=True)]
            out[f"{kind}.{name}"] = round(float(np.mean(err)), 4)
    return out


def write(cal: Calibration, out: str | Path = DEFAULT_PATH) -> Path:
    """Write ``cal`` atomically as JSON."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(cal.to_json(), separators=(",", ":")) + "\n")
    os.replace(tmp, out)
    return out
