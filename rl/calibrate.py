"""Fit the ``measure`` reasoner's calibration from images the project synthesises itself, over the whole zoo.

``rnr calibrate`` runs :func:`fit` with its defaults and writes ``reasoner/calibration/measure.json``; the same
seed and sample count reproduce the committed file byte for byte (on the same library versions). Training cases
draw every kind's synthesis model from all of its models in :data:`rl.degradations.MODELS` (the project's own and
the published ones), so the calibration learns what a kind looks like rather than what one synthesiser does to it;
clean samples include the clean negatives of :mod:`rl.negatives` (scenes built to look degraded). Pass ``models``
to leave models out (``bench/lomo.py``). Needs scikit-learn (``pip install 'reason-restore[dev]'``).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from reasoner.kinds import KINDS
from reasoner.measure.calibration import (
    DEFAULT_PATH,
    FACTOR_TARGETS,
    Calibration,
    FactorHead,
    Mlp,
    feature_vector,
    model_feature_names,
    to_target,
)
from reasoner.measure.features import measure_all
from reasoner.severity import LEVEL_THRESHOLDS
from rl.degradations import MODELS, apply, factors, model_of, sample_ops
from rl.negatives import FAMILIES, clean_negatives
from rl.photos import CALIBRATION_PHOTOS, load_photo, random_crop

AUX_LABELS = ("noise_poisson", "blur_defocus")
CALIBRATION_VERSION = "3"
#: Samples ``rnr calibrate`` fits on unless told otherwise.
DEFAULT_N = 8000
#: Every model of every kind: what training cases draw from unless told otherwise.
ZOO: dict[str, tuple[str, ...]] = {kind: tuple(by_name) for kind, by_name in MODELS.items()}
#: Clean-negative families used as training scenes: all but "photo", which crops the held-out evaluation photos.
NEGATIVE_FAMILIES: tuple[str, ...] = tuple(f for f in FAMILIES if f != "photo")
#: Shares of a training set: clean samples; of those, clean negatives; of degraded samples, a negative as the scene;
#: single-kind samples (the rest are 2-3-kind mixtures); mixtures applied in a shuffled order (BSRGAN-style).
SHARES = {"clean": 0.25, "clean_negative": 0.4, "degraded_negative": 0.1, "single": 0.4, "shuffled": 0.25}


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


def eight_bit(img: np.ndarray) -> np.ndarray:
    """``img`` rounded to 8-bit levels, as float32 (what a user's PNG or JPEG holds)."""
    return (np.rint(np.clip(img, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


class Sample(NamedTuple):
    """One training sample: what the calibration is fitted on, and how it was made.

    Attributes:
        stats: The image's statistics (:func:`reasoner.measure.features.measure_all`).
        severity: Per kind, the true severity (0 for kinds not applied).
        aux: The auxiliary labels (:data:`AUX_LABELS`), 0 or 1.
        factors: Per kind applied and with a factor head, its factors in the head's spaces
            (:data:`reasoner.measure.calibration.FACTOR_TARGETS`).
        models: Per kind applied, the zoo model that synthesised it; ``"scene"`` names the scene (a calibration
            photo or ``negative:<family>``).

    """

    stats: dict
    severity: dict
    aux: dict
    factors: dict
    models: dict


def training_scene(rng: np.random.Generator, clean: bool, photos: Sequence[str]) -> tuple[str, np.ndarray]:
    """A clean training scene, jittered (:func:`_jitter_scene`): its name and ``float32 HxWx3`` pixels in [0, 1].

    A crop of 160-448 px of one of ``photos`` (area-downscaled by 0.5-1 first, so content scale varies) or,
    sometimes (:data:`SHARES`: more often for a sample that stays clean), a clean negative of that size.
    """
    size = int(rng.integers(160, 449))
    share = SHARES["clean_negative" if clean else "degraded_negative"]
    if rng.random() < share:
        family = NEGATIVE_FAMILIES[int(rng.integers(len(NEGATIVE_FAMILIES)))]
        neg = clean_negatives(rng, 1, size, (family,))[0]
        return f"negative:{family}", _jitter_scene(neg.image, rng)
    name = photos[int(rng.integers(len(photos)))]
    photo = load_photo(name)
    s = float(rng.uniform(0.5, 1.0))
    if s < 0.95:
        import cv2

        h, w = photo.shape[:2]
        photo = cv2.resize(photo, (max(32, round(w * s)), max(32, round(h * s))), interpolation=cv2.INTER_AREA)
    return name, _jitter_scene(random_crop(photo, rng, size), rng)


def training_image(
    seed: int,
    index: int,
    models: Mapping[str, str | Sequence[str]] | None = None,
    photos: Sequence[str] = CALIBRATION_PHOTOS,
) -> tuple[np.ndarray, Sample]:
    """The image :func:`synth_training_case` measures (``float32 HxWx3`` on 8-bit levels), and its sample.

    The sample's statistics are empty: measuring them is the costly part, left to the caller.
    """
    rng = np.random.default_rng([seed, index])
    mapping = dict(ZOO) | _as_names(models)
    u = rng.random()
    clean = u < SHARES["clean"]
    scene, img = training_scene(rng, clean, photos)
    single = u < SHARES["clean"] + SHARES["single"]
    shuffled = not clean and not single and rng.random() < SHARES["shuffled"]
    ops = [] if clean else sample_ops(rng, n_kinds=1 if single else (2, 3), models=mapping, shuffled=shuffled)
    out = eight_bit(apply(img, ops, keep_order=shuffled)) if ops else img
    sev = dict.fromkeys(KINDS, 0.0)
    aux = dict.fromkeys(AUX_LABELS, 0.0)
    fac, used = {}, {"scene": scene}
    for op in ops:
        sev[op.kind], true = factors(op, img.shape[:2])
        used[op.kind] = model_of(op).name
        if op.kind in FACTOR_TARGETS:
            fac[op.kind] = [to_target(true[name], space) for name, space in FACTOR_TARGETS[op.kind]]
        if op.kind == "noise" and true.get("model") == "poisson_gaussian":
            aux["noise_poisson"] = 1.0
        if op.kind == "blur" and true.get("kernel") == "defocus":
            aux["blur_defocus"] = 1.0
    return out, Sample({}, sev, aux, fac, used)


def synth_training_case(
    seed: int,
    index: int,
    models: Mapping[str, str | Sequence[str]] | None = None,
    photos: Sequence[str] = CALIBRATION_PHOTOS,
) -> Sample:
    """One calibration sample, deterministic in (seed, index, models, photos).

    A quarter of the samples are clean, 40% carry one kind and the rest a 2-3-kind mixture (a quarter of those
    applied in a shuffled order); each kind's model is drawn uniformly from ``models[kind]`` (default: every model
    of the zoo, :data:`ZOO`). Scenes come from :func:`training_scene`; the degraded image is rounded to 8 bits, as
    every photo a user hands over is. Factor targets are each model's own mapping of its parameters to the
    schema's factors (:func:`rl.degradations.factors`).

    >>> a = synth_training_case(0, 3)
    >>> a == synth_training_case(0, 3), a.models
    (True, {'scene': 'page', 'noise': 'poisson', 'haze': 'proxy', 'rain': 'rnr'})
    """
    image, sample = training_image(seed, index, models, photos)
    return sample._replace(stats=measure_all(image))


def _case(args):
    return synth_training_case(*args)


class Dataset(NamedTuple):
    """What :func:`fit_dataset` fits on (:func:`build_dataset` makes it).

    Attributes:
        x: Statistics matrix (samples, features), :func:`~reasoner.measure.calibration.feature_vector` rows.
        y_sev: True severities (samples, kinds).
        y_cls: Presence labels (severity at least mild) then :data:`AUX_LABELS` (samples, kinds + aux).
        names: Feature names, the columns of ``x``.
        y_fac: Per kind with a factor head: the indices of the samples that carry it and their targets.
        models: Per sample, :attr:`Sample.models` (which zoo model made each kind, and the scene).

    """

    x: np.ndarray
    y_sev: np.ndarray
    y_cls: np.ndarray
    names: list[str]
    y_fac: dict[str, tuple[np.ndarray, np.ndarray]]
    models: list[dict]

    def subset(self, keep: np.ndarray) -> Dataset:
        """The samples where the boolean mask ``keep`` is true, in order."""
        keep = np.asarray(keep, dtype=bool)
        new_index = np.cumsum(keep) - 1
        y_fac = {k: (new_index[idx[keep[idx]]], y[keep[idx]]) for k, (idx, y) in self.y_fac.items()}
        models = [m for m, k in zip(self.models, keep, strict=True) if k]
        return Dataset(self.x[keep], self.y_sev[keep], self.y_cls[keep], self.names, y_fac, models)


def build_dataset(
    n: int,
    seed: int = 0,
    workers: int | None = None,
    models: Mapping[str, str | Sequence[str]] | None = None,
    photos: Sequence[str] = CALIBRATION_PHOTOS,
) -> Dataset:
    """The :class:`Dataset` of ``n`` samples :func:`synth_training_case` makes (``workers`` processes)."""
    workers = workers or min(os.cpu_count() or 1, 8)
    models = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in (models or {}).items()}
    jobs = [(seed, i, models, tuple(photos)) for i in range(n)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_case, jobs, chunksize=16))
    else:
        rows = [_case(j) for j in jobs]
    names = model_feature_names(rows[0].stats)
    x = np.stack([feature_vector(r.stats, names) for r in rows])
    y_sev = np.array([[r.severity[k] for k in KINDS] for r in rows])
    mild = LEVEL_THRESHOLDS[0]
    y_cls = np.array([[float(r.severity[k] >= mild) for k in KINDS] + [r.aux[k] for k in AUX_LABELS] for r in rows])
    y_fac = {
        k: (
            np.array([i for i, r in enumerate(rows) if k in r.factors], dtype=int),
            np.array([r.factors[k] for r in rows if k in r.factors]).reshape(-1, len(FACTOR_TARGETS[k])),
        )
        for k in FACTOR_TARGETS
    }
    return Dataset(x, y_sev, y_cls, names, y_fac, [r.models for r in rows])


def _mlp(est, output: str) -> Mlp:
    return Mlp(tuple(est.coefs_), tuple(est.intercepts_), output)


def fit(
    n: int = DEFAULT_N,
    seed: int = 0,
    workers: int | None = None,
    hidden: tuple[int, ...] = (64, 32),
    alpha: float = 1.0,
    members: int = 3,
    factor_hidden: tuple[int, ...] = (32,),
    models: Mapping[str, str | Sequence[str]] | None = None,
    photos: Sequence[str] = CALIBRATION_PHOTOS,
    validate: bool = True,
) -> Calibration:
    """Synthesise ``n`` samples (``models``/``photos`` as :func:`synth_training_case`) and fit on them.

    See :func:`fit_dataset`; the seconds taken are printed on stderr, not stored (the file stays reproducible).
    """
    import sys

    t0 = time.perf_counter()
    data = build_dataset(n, seed, workers, models, photos)
    cal = fit_dataset(data, seed, hidden, alpha, members, factor_hidden, validate=validate)
    default = not models and tuple(photos) == CALIBRATION_PHOTOS
    command = f"rnr calibrate --n {n} --seed {seed}" if default else "rl.calibrate.fit (see models and photos)"
    meta = {"command": command, **cal.meta, "photos": list(photos),
            "models": {k: list(v) for k, v in (dict(ZOO) | _as_names(models)).items()}}  # fmt: skip
    print(f"rl.calibrate: {n} samples fitted in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return replace(cal, meta=meta)


def _as_names(models: Mapping[str, str | Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    return {k: (v,) if isinstance(v, str) else tuple(v) for k, v in (models or {}).items()}


def fit_dataset(
    data: Dataset,
    seed: int = 0,
    hidden: tuple[int, ...] = (64, 32),
    alpha: float = 1.0,
    members: int = 3,
    factor_hidden: tuple[int, ...] = (32,),
    *,
    validate: bool = True,
) -> Calibration:
    """Fit ensembles of ``members`` severity regressors, presence classifiers and per-kind factor heads.

    The L2 penalty is strong on purpose: the calibration scenes are few, and a smoother map transfers better to
    scenes it never saw. Factor heads are smaller and see only the samples that carry their kind. With
    ``validate``, 10% of the samples are held out first to record validation numbers in ``meta``; the returned
    models are then refitted on everything.
    """
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError as e:
        raise ImportError(
            "fitting the calibration needs scikit-learn; install with: pip install 'reason-restore[dev]'"
        ) from e
    x, y_sev, y_cls, names, y_fac = data[:5]
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

    meta = {
        "samples": n,
        "seed": seed,
        "hidden": list(hidden),
        "factor_hidden": list(factor_hidden),
        "alpha": alpha,
        "members": members,
    }
    labels = list(KINDS) + list(AUX_LABELS)
    if validate:
        n_val = n // 10
        regs, clfs = ensemble(slice(n_val, None))
        probe = Calibration(CALIBRATION_VERSION, names, mean, scale, list(KINDS), labels, regs, clfs, {}, heads(n_val))
        sev_v = np.clip(np.mean([m(z[:n_val]) for m in regs], axis=0), 0, 1)
        prob_v = np.mean([m(z[:n_val]) for m in clfs], axis=0)[:, : len(KINDS)]
        pred = (prob_v >= 0.5) & (sev_v >= LEVEL_THRESHOLDS[0])
        truth = y_cls[:n_val, : len(KINDS)] >= 0.5
        tp, fp, fn = (pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum()
        meta |= {
            "validation_micro_f1": round(float(2 * tp / max(2 * tp + fp + fn, 1)), 4),
            "validation_severity_mae": round(
                float(np.abs(np.maximum(sev_v, LEVEL_THRESHOLDS[0]) - y_sev[:n_val])[pred & truth].mean()), 4
            ),
            "validation_factor_mae": _factor_mae(probe, z, y_fac, n_val),
        }
    regs, clfs = ensemble(slice(None))
    return Calibration(CALIBRATION_VERSION, names, mean, scale, list(KINDS), labels, regs, clfs, meta, heads(0))


def _factor_mae(cal: Calibration, z: np.ndarray, y_fac, n_val: int) -> dict[str, float]:
    """Held-out mean absolute error per factor, in the factor's natural units (``kind.factor``)."""
    from reasoner.measure.calibration import from_target

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
