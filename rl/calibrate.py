"""Fit the ``measure`` reasoner's calibration from images the project synthesises itself.

``rnr calibrate`` runs :func:`fit` with its defaults and writes ``reasoner/calibration/measure.json``; the same
seed and sample count reproduce the committed file. Needs scikit-learn (``pip install 'reason-restore[dev]'``).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from reasoner.calibration import DEFAULT_PATH, Calibration, Mlp, feature_vector, model_feature_names
from reasoner.features import measure_all
from reasoner.schema import KINDS
from rl.degradations import apply, factors, sample_ops
from rl.photos import CALIBRATION_PHOTOS, load_photo, random_crop

AUX_LABELS = ("noise_poisson", "blur_defocus")
CALIBRATION_VERSION = "1"


def synth_training_case(seed: int, index: int) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """One calibration sample: (statistics, per-kind severities, auxiliary labels), deterministic in (seed, index).

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
    img = random_crop(photo, rng, int(rng.integers(160, 449)))
    u = rng.random()
    ops = [] if u < 0.25 else sample_ops(rng, n_kinds=1) if u < 0.65 else sample_ops(rng, n_kinds=(2, 3))
    out = apply(img, ops) if ops else img
    sev = dict.fromkeys(KINDS, 0.0)
    aux = dict.fromkeys(AUX_LABELS, 0.0)
    for op in ops:
        sev[op.kind] = factors(op, img.shape[:2])[0]
        if op.kind == "noise" and getattr(op, "model", "") == "poisson_gaussian":
            aux["noise_poisson"] = 1.0
        if op.kind == "blur" and getattr(op, "kernel", "") == "defocus":
            aux["blur_defocus"] = 1.0
    return measure_all(out), sev, aux


def _case(args):
    return synth_training_case(*args)


def build_dataset(n: int, seed: int = 0, workers: int | None = None):
    """Statistics matrix, severity targets, presence/aux labels and feature names for ``n`` synthetic samples."""
    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = [(seed, i) for i in range(n)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_case, jobs, chunksize=16))
    else:
        rows = [_case(j) for j in jobs]
    names = model_feature_names(rows[0][0])
    x = np.stack([feature_vector(f, names) for f, _, _ in rows])
    y_sev = np.array([[s[k] for k in KINDS] for _, s, _ in rows])
    y_cls = np.array([[float(s[k] >= 0.1) for k in KINDS] + [a[k] for k in AUX_LABELS] for _, s, a in rows])
    return x, y_sev, y_cls, names


def _mlp(est, output: str) -> Mlp:
    return Mlp(tuple(est.coefs_), tuple(est.intercepts_), output)


def fit(n: int = 6000, seed: int = 0, workers: int | None = None, hidden: tuple[int, ...] = (64, 32)) -> Calibration:
    """Synthesise ``n`` samples and fit the severity regressor and presence classifier (scikit-learn MLPs)."""
    try:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError as e:
        raise ImportError(
            "fitting the calibration needs scikit-learn; install with: pip install 'reason-restore[dev]'"
        ) from e
    t0 = time.perf_counter()
    x, y_sev, y_cls, names = build_dataset(n, seed, workers)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    n_val = n // 10
    zt, zv = z[n_val:], z[:n_val]
    common = dict(hidden_layer_sizes=hidden, alpha=1e-3, max_iter=800, random_state=seed, learning_rate_init=2e-3)
    reg = MLPRegressor(**common).fit(zt, y_sev[n_val:])
    clf = MLPClassifier(**common).fit(zt, y_cls[n_val:])
    sev_v = np.clip(reg.predict(zv), 0, 1)
    prob_v = clf.predict_proba(zv)
    pred = prob_v[:, : len(KINDS)] >= 0.5
    truth = y_cls[:n_val, : len(KINDS)] >= 0.5
    tp, fp, fn = (pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()
    meta = {
        "command": f"rnr calibrate --n {n} --seed {seed}",
        "samples": n,
        "seed": seed,
        "photos": list(CALIBRATION_PHOTOS),
        "hidden": list(hidden),
        "validation_micro_f1": round(float(2 * tp / max(2 * tp + fp + fn, 1)), 4),
        "validation_severity_mae": round(float(np.abs(sev_v - y_sev[:n_val])[truth].mean()), 4),
        "fit_seconds": round(time.perf_counter() - t0, 1),
    }
    # Refit on everything now that validation numbers are recorded.
    reg = MLPRegressor(**common).fit(z, y_sev)
    clf = MLPClassifier(**common).fit(z, y_cls)
    return Calibration(
        version=CALIBRATION_VERSION,
        feature_names=names,
        mean=mean,
        scale=scale,
        kinds=list(KINDS),
        presence_labels=list(KINDS) + list(AUX_LABELS),
        severity=_mlp(reg, "identity"),
        presence=_mlp(clf, "logistic"),
        meta=meta,
    )


def write(cal: Calibration, out: str | Path = DEFAULT_PATH) -> Path:
    """Write ``cal`` atomically as JSON."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(cal.to_json(), separators=(",", ":")) + "\n")
    os.replace(tmp, out)
    return out
