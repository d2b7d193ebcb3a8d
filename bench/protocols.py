"""Literature protocols on held-out photos: MiO/AgenticIR groups A/B/C, PromptIR Gaussian denoising, our own cases.

    python bench/protocols.py --protocol mio|promptir|rnr|heldout|all [--per-group N] [--size 256] [--workers 2]
                              [--out bench/out/protocols.json] [--harm-seeds 1,2,3] [--finish camera-jpeg]

Protocols (every degradation from ``rl.degradations``' zoo, deterministic per ``--seed``):

- ``mio``: AgenticIR's 16 combinations (``eval/compare_methods.py`` groups A, B, C), each degradation applied left
  to right with 8-bit quantisation after every step (``dataset/synthesize.py``), with MiO's models and ranges:
  rain (MiO streaks), haze (RESIDE ranges over a depth *proxy*: MiO uses per-image depth maps we do not have),
  motion blur (imagecorruptions trail), defocus (imagecorruptions soft disk), dark (HSV value shift / gamma /
  squash), noise (Gaussian sigma 20-50 or BasicSR Poisson scale 1-3), JPEG (quality 10-29; OpenCV's encoder gives
  our 4:2:0 model's pixels), low resolution (MATLAB bicubic x1/4, always last). N images per combination.
  Caveat: AgenticIR hands its restorers the small image and scores x4 super-resolution outputs; here every method
  gets the bicubic x4 up-sample of the 8-bit small image (what ``rnr`` accepts), so low-resolution tasks measure
  detail recovery from an interpolated image, not a super-resolution network's.
- ``promptir``: PromptIR's denoising test: Gaussian noise sigma 15, 25, 50 on the 0-255 scale, clipped and
  truncated to 8 bits as its ``DenoiseTestDataset`` does; crops a multiple of 16. N images per sigma.
- ``rnr``: the project's own cases (``rl.cases.evaluation_cases``: single kinds, mixtures, clean crops) plus clean
  negatives (``rl.negatives``). N cases per group (singles: ceil(N / 8) per kind).
- ``heldout``: every kind from one zoo model held out of ``bench/scorer.py``'s quality fit (:data:`HELD_OUT_MODELS`):
  N singles, N 2-3-kind mixtures, N / 4 clean crops. Run it with ``RNR_QUALITY_MODEL=bench/out/scorer_model.json``
  for a scorer that never saw those models (the shipped one was fitted on the whole zoo).

Photos: ``rl.photos.EVALUATION_PHOTOS`` (held out from calibration), plus the real photos in the gradio wheel
(cheetah, lion, tower, cheetah2) when gradio is installed; random crops of ``--size`` px.

Methods: identity; blind single operators and the blind chain of the classical restorer (``bench/restore.py``'s
mid-range settings); OpenCV non-local means (a classic blind denoiser, h = 10); the oracle (the classical restorer
with ``plan_from_record`` of the ground truth: the parameters mapped to the schema); ``rnr``
(``agent.run.restore_image`` with the default backends) in a process pool. Metrics on the 8-bit outputs: PSNR on
RGB, SSIM on luminance (BT.601 Y, 11x11 Gaussian window, sigma 1.5: what AgenticIR reports through pyiqa) and SSIM
on RGB; harm rate = share of outputs more than 0.5 dB below the input's PSNR. Writes JSON and, per protocol, a
contact sheet of the 8 cases where rnr gained least over the input (100% crops: degraded | rnr | oracle | clean).
``--harm-seeds`` then runs only ``rnr`` on the same protocols drawn with further seeds and prints its harm per seed
(harm is a case in a hundred: one seed's 0% says little). Every ``rnr`` run also records each attempt's rule,
source, strengths, verdict, estimate and true PSNR (``attempts`` per case; per seed under ``harm_by_seed``): what a
decision rule is judged on (how often an "uncertain" attempt of some kind was truly better, which rule's retries were
worse than the attempt before them). ``--finish camera-jpeg`` saves every case that carries no
JPEG as a camera or phone does (:func:`camera_finish`): nearly every photo a user hands over is such a JPEG, and none
of the protocols is otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

# One OpenCV thread from the start: pool workers are forked, and a child that inherits OpenCV's thread pool from a
# parent that used it deadlocks on its first OpenCV call (seen in cv2.setNumThreads).
cv2.setNumThreads(1)

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

from reasoner.kinds import KINDS  # noqa: E402
from reasoner.schema import DiagnosisRecord  # noqa: E402
from rl import degradations as D  # noqa: E402
from rl.ground_truth import ground_truth  # noqa: E402
from rl.photos import EVALUATION_PHOTOS, load_photo, random_crop  # noqa: E402

#: AgenticIR's groups of combinations (eval/compare_methods.py), degradations in the order they are applied.
MIO_GROUPS: dict[str, tuple[tuple[str, ...], ...]] = {
    "A": (("rain", "haze"), ("motion_blur", "low_resolution"), ("dark", "noise"), ("defocus", "jpeg"),
          ("noise", "jpeg"), ("rain", "low_resolution"), ("motion_blur", "dark"), ("defocus", "haze")),
    "B": (("motion_blur", "jpeg"), ("haze", "noise"), ("defocus", "low_resolution"), ("rain", "dark")),
    "C": (("haze", "motion_blur", "low_resolution"), ("rain", "noise", "low_resolution"),
          ("dark", "defocus", "jpeg"), ("motion_blur", "defocus", "noise")),
}  # fmt: skip
#: Published PSNR on MiO100 (dB, groups A/B/C; GPU networks, other images): from the project's FACTS.
PUBLISHED = {"AgenticIR": (21.04, 20.55, 18.82), "MAIR": (21.02, 20.92, 19.42), "RAR": (20.46, 21.04, 19.33)}
PROMPTIR_SIGMAS = (15, 25, 50)
DEFAULT_N = {"mio": 6, "promptir": 10, "rnr": 12, "heldout": 24}
GRADIO_PHOTOS = ("media_assets/images/cheetah.jpg", "media_assets/images/lion.jpg",
                 "media_assets/images/tower.jpg", "test_data/cheetah2.jpg")  # fmt: skip
PSNR_CAP = 60.0
HARM_DB = 0.5
NLM_H = 10.0


@dataclass(frozen=True, eq=False)
class ProtocolCase:
    """One case: 8-bit ``image`` (float32 HxWx3 in [0, 1]) the methods get, its ``clean`` original and truth."""

    name: str
    protocol: str
    group: str
    task: str
    clean: np.ndarray
    image: np.ndarray
    record: DiagnosisRecord


def quantise(img: np.ndarray) -> np.ndarray:
    """Round to 8 bits (what a saved PNG holds), as float32 in [0, 1]."""
    return (np.rint(np.clip(img, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


@cache
def held_out_photos() -> dict[str, np.ndarray]:
    """Held-out scenes: the evaluation photos, plus gradio's bundled real photos when gradio is installed."""
    from PIL import Image

    photos = {name: load_photo(name) for name in EVALUATION_PHOTOS}
    for name, path in gradio_photo_files().items():
        with Image.open(path) as im:
            photos[name] = np.asarray(im.convert("RGB"), np.float32) / np.float32(255.0)
    return photos


def gradio_photo_files() -> dict[str, Path]:
    """gradio's bundled real photos (:data:`GRADIO_PHOTOS`) by held-out name; none when gradio is not installed."""
    try:
        import gradio
    except ImportError:
        return {}
    root = Path(gradio.__file__).parent
    return {f"gradio_{Path(rel).stem}": root / rel for rel in GRADIO_PHOTOS if (root / rel).is_file()}


def stored_jpeg_quality(path: Path) -> int | None:
    """The IJG quality whose luma table is nearest the one ``path`` was saved with, or None for a non-JPEG."""
    from PIL import Image

    from reasoner.jpeg_cells import ijg_table

    with Image.open(path) as im:
        tables = getattr(im, "quantization", None) or {}
    if 0 not in tables:
        return None
    luma = np.asarray(tables[0], np.float64).reshape(8, 8)  # Pillow gives the tables in natural order
    return min(range(1, 101), key=lambda q: (float(np.abs(ijg_table(q) - luma).sum()), -q))


def _photo_quality(name: str) -> int | None:
    # rl.photos names: sklearn's sample images are JPEGs, scikit-image's data files PNG or JPEG
    if name.startswith("sklearn_"):
        import sklearn

        files = [Path(sklearn.__file__).parent / "datasets" / "images" / f"{name.removeprefix('sklearn_')}.jpg"]
    else:
        import skimage

        files = sorted((Path(skimage.__file__).parent / "data").glob(f"{name}.*"))
    return stored_jpeg_quality(files[0]) if files and files[0].is_file() else None


def held_out_photo_qualities() -> dict[str, int | None]:
    """The JPEG quality each held-out photo was saved at (None: a lossless source); gradio's are JPEGs."""
    qualities = {name: _photo_quality(name) for name in EVALUATION_PHOTOS}
    return qualities | {name: stored_jpeg_quality(path) for name, path in gradio_photo_files().items()}


def crop(rng: np.random.Generator, index: int, size: int, base: int = 4) -> tuple[str, np.ndarray]:
    """A random crop of at most ``size`` px of held-out photo ``index`` (cycling), sides a multiple of ``base``."""
    photos = held_out_photos()
    name = list(photos)[index % len(photos)]
    img = random_crop(photos[name], rng, size)
    h, w = (img.shape[0] // base) * base, (img.shape[1] // base) * base
    return name, quantise(img[:h, :w])


# --------------------------------------------------------------------------------------------------- MiO protocol


def _mio_op(step: str, rng: np.random.Generator):
    models = D.MODELS
    if step == "rain":
        return models["rain"]["mio"].sample(rng)
    if step == "haze":
        return models["haze"]["mio"].sample(rng)
    if step == "motion_blur":
        return models["motion_blur"]["trail"].sample(rng)
    if step == "defocus":
        return models["blur"]["soft_disk"].sample(rng)
    if step == "dark":
        return models["low_light"]["mio"].sample(rng)
    if step == "noise":  # MiO: BasicSR Gaussian sigma 20-50 or Poisson scale 1-3, 50/50
        if rng.random() < 0.5:
            return D.NoiseParams(float(rng.uniform(20.0, 50.0)), "gaussian", 0.0, int(rng.integers(0, 2**31 - 1)))
        return models["noise"]["poisson"].sample(rng)
    if step == "jpeg":
        return D.JpegParams(int(rng.integers(10, 30)))
    if step == "low_resolution":
        return D.MioLowResolutionParams(4.0)
    raise ValueError(f"unknown MiO step {step!r}")


def mio_degrade(clean: np.ndarray, steps: tuple[str, ...], rng: np.random.Generator) -> tuple[np.ndarray, list]:
    """Apply MiO ``steps`` left to right, 8-bit after each; low resolution goes to 1/4 and back up (bicubic)."""
    from rl.degradations.low_resolution import mio_small_size

    img, ops = clean, []
    for step in steps:
        op = _mio_op(step, rng)
        ops.append(op)
        if isinstance(op, D.MioLowResolutionParams):
            sh, sw = mio_small_size(op, img.shape)
            small = quantise(D.imresize_bicubic(img, sh, sw))  # the LQ image MiO saves
            img = quantise(D.imresize_bicubic(small, img.shape[0], img.shape[1]))  # what the restorers get
        else:
            img = quantise(D.model_of(op).apply(img, op))
    return img, ops


def mio_cases(seed: int, n: int, size: int) -> list[ProtocolCase]:
    """``n`` images per MiO combination."""
    rng = np.random.default_rng(seed)
    cases = []
    for group, tasks in MIO_GROUPS.items():
        for t, steps in enumerate(tasks):
            task = "+".join(steps)
            for i in range(n):
                photo, clean = crop(rng, i + 3 * t, size)
                image, ops = mio_degrade(clean, steps, rng)
                name = f"mio_{group}_{task}_{i}_{photo}"
                cases.append(ProtocolCase(name, "mio", group, task, clean, image, ground_truth(ops, image)))
    return cases


# ---------------------------------------------------------------------------------------------- PromptIR and rnr


def promptir_cases(seed: int, n: int, size: int) -> list[ProtocolCase]:
    """``n`` images per sigma in 15, 25, 50: Gaussian noise, clipped, truncated to 8 bits (PromptIR's test set)."""
    rng = np.random.default_rng(seed + 1)
    cases = []
    for sigma in PROMPTIR_SIGMAS:
        for i in range(n):
            photo, clean = crop(rng, i, size, base=16)
            op = D.NoiseParams(float(sigma), "gaussian", 0.0, int(rng.integers(0, 2**31 - 1)))
            image = (np.floor(D.apply_noise(clean, op) * 255.0) / 255.0).astype(np.float32)
            group = f"sigma{sigma}"
            name = f"promptir_{group}_{i}_{photo}"
            cases.append(ProtocolCase(name, "promptir", group, group, clean, image, ground_truth([op], image)))
    return cases


def rnr_cases(seed: int, n: int, size: int) -> list[ProtocolCase]:
    """The project's evaluation cases (singles, mixtures, clean) and clean negatives, ``n`` per group."""
    from rl.cases import evaluation_cases
    from rl.negatives import clean_negatives

    cases = []
    for c in evaluation_cases(seed, per_kind=math.ceil(n / len(KINDS)), mixed=n, clean=n, size=size):
        task = "-".join(d.kind for d in c.record.degradations) or "clean"
        cases.append(ProtocolCase(f"rnr_{c.name}", "rnr", c.group, task, c.clean, quantise(c.image), c.record))
    for neg in clean_negatives(np.random.default_rng(seed + 2), n, size):
        cases.append(ProtocolCase(f"rnr_{neg.name}", "rnr", "negative", neg.family, neg.image, neg.image,
                                  neg.record))  # fmt: skip
    return cases


#: The held-out model of each kind (as ``bench/scorer.py`` holds them out of its quality model's fit).
HELD_OUT_MODELS = {"haze": "mio", "rain": "mio", "motion_blur": "trail", "blur": "soft_disk", "low_resolution": "mio",
                   "low_light": "mio", "noise": "poisson", "jpeg": "double"}  # fmt: skip


def heldout_cases(seed: int, n: int, size: int) -> list[ProtocolCase]:
    """``n`` single-kind cases, ``n`` 2-3-kind mixtures (physical order) and ``n // 4`` clean crops, every kind drawn
    from its :data:`HELD_OUT_MODELS` entry.

    With ``RNR_QUALITY_MODEL=bench/out/scorer_model.json`` (fitted without these models by ``bench/scorer.py``) the
    agent decides with a scorer that never saw them: held-out photos and held-out models end to end.
    """
    rng = np.random.default_rng(seed + 3)
    cases = []
    for group, count in (("single", n), ("mixed", n), ("clean", max(1, n // 4))):
        for i in range(count):
            photo, clean = crop(rng, i, size, base=8)
            kinds = 0 if group == "clean" else 1 if group == "single" else int(rng.integers(2, 4))
            ops = D.sample_ops(rng, n_kinds=kinds, models=HELD_OUT_MODELS) if kinds else []
            image = quantise(D.apply(clean, ops)) if ops else clean
            record = ground_truth(ops, image)
            task = "+".join(d.kind for d in record.detected()) or "clean"
            cases.append(ProtocolCase(f"heldout_{group}_{i}_{photo}", "heldout", group, task, clean, image, record))
    return cases


PROTOCOLS = {"mio": mio_cases, "promptir": promptir_cases, "rnr": rnr_cases, "heldout": heldout_cases}

#: The qualities of ``--finish camera-jpeg`` (4:2:0, Pillow's encoder): what cameras and phones save at, light enough
#: that the severity map calls the compression clean (below mild), so the ground truth, the oracle and the groups of
#: each case stay as they are.
CAMERA_JPEG = (92, 97)


def camera_finish(cases: list[ProtocolCase], seed: int) -> list[ProtocolCase]:
    """``cases`` with every image whose truth has no JPEG saved as a camera JPEG (quality in :data:`CAMERA_JPEG`).

    The quality is drawn per case from ``seed`` and the case's name, so a case gets the same file on every run.
    """
    out = []
    for case in cases:
        if any(d.kind == "jpeg" for d in case.record.detected()):
            out.append(case)
            continue
        rng = np.random.default_rng([seed, zlib.crc32(case.name.encode())])
        q = int(rng.integers(CAMERA_JPEG[0], CAMERA_JPEG[1] + 1))
        out.append(replace(case, image=quantise(D.apply(case.image, [D.JpegParams(q)]))))
    return out


def build(name: str, seed: int, args) -> list[ProtocolCase]:
    """Protocol ``name``'s cases for ``seed`` with ``args``' size, count and finish."""
    cases = PROTOCOLS[name](seed, args.per_group or DEFAULT_N[name], args.size)
    return camera_finish(cases, seed) if args.finish == "camera-jpeg" else cases


# ------------------------------------------------------------------------------------------------ methods, metrics


def luma(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of ``img`` in [0, 1] on the YCbCr scale (16-235) divided by 255, as pyiqa's ``test_y_channel``."""
    return (16.0 + img.astype(np.float64) @ np.array([65.481, 128.553, 24.966])) / 255.0


def psnr_of(out: np.ndarray, ref: np.ndarray) -> float:
    """PSNR (RGB, dB, capped at :data:`PSNR_CAP`) of float64 ``out`` against ``ref``, both in [0, 1]."""
    mse = float(np.mean((out - ref) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10.0 * math.log10(1.0 / mse))


def metrics(img: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    """PSNR (RGB, dB, capped), SSIM on luma (11x11 Gaussian window, sigma 1.5) and SSIM on RGB of 8-bit ``img``."""
    out, ref = quantise(img).astype(np.float64), clean.astype(np.float64)
    psnr = psnr_of(out, ref)
    ssim_y = structural_similarity(luma(ref), luma(out), data_range=1.0, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False)  # fmt: skip
    ssim = structural_similarity(ref, out, channel_axis=2, data_range=1.0)
    return {"psnr": psnr, "ssim_y": float(ssim_y), "ssim": float(ssim)}


def nlm(img: np.ndarray) -> np.ndarray:
    """OpenCV's non-local means on the 8-bit image (h = hColor = 10, 7x7 patches, 21x21 search)."""
    u8 = np.rint(img * 255.0).astype(np.uint8)
    return cv2.fastNlMeansDenoisingColored(u8, None, NLM_H, NLM_H, 7, 21).astype(np.float32) / 255.0


def oracle(case: ProtocolCase, classical) -> np.ndarray:
    """The classical restorer driven by the ground truth's plan."""
    from restorer import plan_from_record

    return classical.restore(case.image, case.record, [], plan_from_record(case.record)).pixels


def run_case(case: ProtocolCase) -> dict:
    """Every method on one case: metrics per method, rnr's decision and time."""
    from bench.restore import BLIND, blind_plan
    from restorer import RESTORE_ORDER, load_restorer

    classical = load_restorer("classical")
    result = run_rnr(case)
    m = {"identity": result["m"]["identity"]}
    for k in BLIND:
        m[f"blind:{k}"] = metrics(classical.restore(case.image, case.record, [], blind_plan([k])).pixels, case.clean)
    m["blind chain"] = metrics(classical.restore(case.image, case.record, [], blind_plan(RESTORE_ORDER)).pixels,
                               case.clean)  # fmt: skip
    m["nlm"] = metrics(nlm(case.image), case.clean)
    m["oracle"] = metrics(oracle(case, classical), case.clean)
    m["rnr"] = result["m"]["rnr"]
    return {**result, "m": m}


class Recording:
    """A restorer that keeps every output it returns, so each attempt's true PSNR is known next to its verdict."""

    def __init__(self, inner):
        self.inner, self.outputs = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def restore(self, image, record, references, plan):
        out = self.inner.restore(image, record, references, plan)
        self.outputs.append(out.pixels)
        return out


def attempt_rows(trace, outputs: list[np.ndarray], clean: np.ndarray) -> list[dict] | None:
    """Each attempt of ``trace`` with its true PSNR against ``clean`` (None when the outputs do not map one to one
    onto the attempts, as for a large photo restored crop by crop)."""
    if len(outputs) != len(trace.attempts):
        return None
    ref, rows = clean.astype(np.float64), []
    for a, px in zip(trace.attempts, outputs, strict=True):
        q = a.quality
        rows.append({"index": a.index, "rule": a.rule, "source": a.source, "strengths": dict(a.plan.strengths),
                     "verdict": a.verdict, "estimate_db": q.gain_db if q else None,
                     "uncertainty_db": q.uncertainty_db if q else None, "spread_log": q.spread_log if q else None,
                     "artefacts": sorted(q.artefacts) if q else [],
                     "psnr": psnr_of(quantise(px).astype(np.float64), ref)})  # fmt: skip
    return rows


def run_rnr(case: ProtocolCase) -> dict:
    """Identity and rnr alone on one case (the harm check on further seeds runs only this): metrics, decision, time,
    and each attempt's verdict, estimate and true PSNR (``attempts``: what a decision rule is judged on)."""
    from agent.backends import make_context
    from agent.run import restore_image

    ctx = make_context()
    recording = Recording(ctx.restorer)
    t0 = time.perf_counter()
    out, trace = restore_image(case.image, context=replace(ctx, restorer=recording))
    seconds = time.perf_counter() - t0
    kinds = [d.kind for d in case.record.detected()]
    m = {"identity": metrics(case.image, case.clean), "rnr": metrics(out, case.clean)}
    return {"name": case.name, "protocol": case.protocol, "group": case.group, "task": case.task, "kinds": kinds,
            "m": m, "rnr_s": seconds, "decision": trace.decision, "chosen": trace.chosen_attempt,
            "attempts": attempt_rows(trace, recording.outputs, case.clean)}  # fmt: skip


def harm_by_seed(con: Console, names: list[str], seeds: list[int], args, pool) -> dict:
    """rnr's harm on each protocol's degraded cases (clean crops and negatives aside), seed by seed: one seed's 0%
    says little when harm is one case in a hundred."""
    t = Table(title=f"Harm by seed (rnr, degraded cases; an output > {HARM_DB} dB below its input is harm)")
    for col in ("protocol", "seed", "cases", "harmed", "rate", "worst dB", "rnr - identity dB"):
        t.add_column(col, justify="left" if col == "protocol" else "right")
    out: dict = {}
    for seed in seeds:
        cases = [c for p in names for c in build(p, seed, args) if c.group not in ("clean", "negative")]
        rows = list(pool.map(run_rnr, cases, chunksize=1))
        for p in names:
            rs = [r for r in rows if r["protocol"] == p]
            if not rs:
                continue
            loss = [r["m"]["rnr"]["psnr"] - r["m"]["identity"]["psnr"] for r in rs]
            harmed = [r["name"] for r, d in zip(rs, loss, strict=True) if d < -HARM_DB]
            attempts = {r["name"]: {"chosen": r.get("chosen"), "attempts": r.get("attempts")} for r in rs}
            out.setdefault(p, {})[str(seed)] = {"n": len(rs), "harmed": harmed, "worst_db": float(min(loss)),
                                                "mean_gain_db": float(np.mean(loss)),
                                                "gain_db": {r["name"]: round(d, 3) for r, d in zip(rs, loss)},
                                                "decision": {r["name"]: r["decision"] for r in rs},
                                                "attempts": attempts}  # fmt: skip
            t.add_row(p, str(seed), str(len(rs)), str(len(harmed)), f"{len(harmed) / len(rs):.1%}",
                      f"{min(loss):+.2f}", f"{np.mean(loss):+.2f}")  # fmt: skip
    for p, per in out.items():
        n, h = sum(v["n"] for v in per.values()), sum(len(v["harmed"]) for v in per.values())
        t.add_row(p, "all", str(n), str(h), f"{h / n:.1%}", f"{min(v['worst_db'] for v in per.values()):+.2f}", "")
    con.print(t)
    return out


METHODS_SHOWN = ("identity", "best blind", "blind chain", "nlm", "oracle", "rnr")


def summarise(results: list[dict], key: str) -> dict[str, dict[str, dict[str, float]]]:
    """Per value of ``key`` ("group" or "task"), per method: mean PSNR / SSIM-Y / SSIM and the harm rate."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for value in dict.fromkeys(r[key] for r in results):
        rows = [r for r in results if r[key] == value]
        summary = {}
        for method in rows[0]["m"]:
            psnr = [r["m"][method]["psnr"] for r in rows]
            harm = [r["m"][method]["psnr"] < r["m"]["identity"]["psnr"] - HARM_DB for r in rows]
            summary[method] = {
                "psnr": float(np.mean(psnr)),
                "ssim_y": float(np.mean([r["m"][method]["ssim_y"] for r in rows])),
                "ssim": float(np.mean([r["m"][method]["ssim"] for r in rows])),
                "harm": float(np.mean(harm)),
                "n": len(rows),
            }
        blind = [m for m in summary if m.startswith("blind:")]
        best = max(blind, key=lambda m: summary[m]["psnr"])
        summary["best blind"] = {**summary[best], "which": best.removeprefix("blind:")}
        out[value] = summary
    return out


def print_table(con: Console, title: str, table: dict, *, harm: bool = True) -> None:
    """Rows of ``table`` (key -> method -> stats): PSNR / SSIM-Y per method, the best blind tool, harm rates."""
    t = Table(title=title)
    for col in ("group", "n", *METHODS_SHOWN, "best blind tool"):
        t.add_column(col, justify="left" if col in ("group", "best blind tool") else "right")
    for key, row in table.items():
        cells = [f"{row[m]['psnr']:.2f} / {row[m]['ssim_y']:.3f}" for m in METHODS_SHOWN]
        t.add_row(key, str(row["identity"]["n"]), *cells, row["best blind"]["which"])
    con.print(t)
    if harm:
        h = Table(title=f"{title.split(':')[0]}: harm rate (share of outputs > {HARM_DB} dB below the input)")
        for col in ("group", *METHODS_SHOWN[1:]):
            h.add_column(col, justify="left" if col == "group" else "right")
        for key, row in table.items():
            h.add_row(key, *(f"{row[m]['harm']:.0%}" for m in METHODS_SHOWN[1:]))
        con.print(h)


def print_published(con: Console, groups: dict) -> None:
    """Published MiO100 PSNR beside ours, with the caveats."""
    t = Table(title="MiO groups: published PSNR (dB) on MiO100 vs this run (other images; see caveats)")
    t.add_column("method")
    for g in MIO_GROUPS:
        t.add_column(g, justify="right")
    for name, values in PUBLISHED.items():
        t.add_row(f"{name} (published, GPU networks)", *(f"{v:.2f}" for v in values))
    for m in ("identity", "oracle", "rnr"):
        t.add_row(f"{m} (this run)", *(f"{groups[g][m]['psnr']:.2f}" if g in groups else "-" for g in MIO_GROUPS))
    con.print(t)
    con.print(
        "caveats: published numbers are on MiO100's 100 photos with per-image depth maps for haze and GPU restoration "
        "networks (super-resolution from the x1/4 image); this run uses crops of held-out bundled photos, a depth "
        "proxy for haze, and CPU classical operators restoring from the bicubic x4 up-sample. Compare the rows' "
        "relations (rnr vs identity vs oracle), not absolute dB across the two."
    )


def contact_sheet(cases: list[ProtocolCase], results: list[dict], path: Path, n: int = 8, tile: int = 192) -> None:
    """Rows of degraded | rnr | oracle | clean at 100% for the ``n`` cases where rnr gained least over the input."""
    from agent.run import restore_image
    from reasoner.imageio import save_image
    from restorer import load_restorer

    by_name = {c.name: c for c in cases}
    worst = sorted(results, key=lambda r: r["m"]["rnr"]["psnr"] - r["m"]["identity"]["psnr"])[:n]
    classical = load_restorer("classical")
    rows = []
    for r in worst:
        c = by_name[r["name"]]
        out, _ = restore_image(c.image)
        images = [c.image, quantise(out), quantise(oracle(c, classical)), c.clean]
        err = cv2.boxFilter(np.abs(images[1] - c.clean).mean(axis=2), -1, (tile // 2, tile // 2))
        cy, cx = np.unravel_index(int(np.argmax(err)), err.shape)  # where rnr is furthest from clean
        h, w = c.image.shape[:2]
        th, tw = min(tile, h), min(tile, w)
        y0, x0 = int(np.clip(cy - th // 2, 0, h - th)), int(np.clip(cx - tw // 2, 0, w - tw))
        tiles = []
        for img, label in zip(images, ("degraded", "rnr", "oracle", "clean"), strict=True):
            t = np.zeros((tile, tile, 3), np.uint8)
            t[:th, :tw] = np.rint(img[y0 : y0 + th, x0 : x0 + tw] * 255).astype(np.uint8)
            psnr = {"rnr": r["m"]["rnr"]["psnr"], "oracle": r["m"]["oracle"]["psnr"],
                    "degraded": r["m"]["identity"]["psnr"]}.get(label)  # fmt: skip
            text = label if psnr is None else f"{label} {psnr:.1f}dB"
            cv2.putText(t, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(t, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 80), 1, cv2.LINE_AA)
            tiles.append(t)
        caption = r["task"][:34]
        cv2.putText(tiles[0], caption, (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tiles[0], caption, (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(np.concatenate(tiles, axis=1))
    if rows:
        save_image(path, np.concatenate(rows, axis=0).astype(np.float32) / 255.0)


def code_version() -> dict[str, str | bool]:
    """The commit the run used and whether the restorer, reasoner, agent or rl had uncommitted edits."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "agent", "reasoner", "restorer", "rl"], cwd=root,
                               capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": True}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=[*PROTOCOLS, "all"], default="all")
    ap.add_argument("--per-group", type=int, default=None, help=f"images per task / sigma / group ({DEFAULT_N})")
    ap.add_argument("--size", type=int, default=256, help="crop side in px")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/out/protocols.json"))
    ap.add_argument("--harm-seeds", default="", help="further seeds (comma-separated) on which only rnr's harm is "
                    "measured, e.g. 1,2,3")  # fmt: skip
    ap.add_argument("--finish", choices=["none", "camera-jpeg"], default="none",
                    help="save every case without JPEG as a camera JPEG (quality 92-97) first")  # fmt: skip
    args = ap.parse_args(argv)
    if args.per_group is not None and args.per_group < 1 or args.size < 64:
        ap.error("--per-group must be >= 1 and --size >= 64")
    try:
        harm_seeds = [int(v) for v in args.harm_seeds.split(",") if v.strip()]
    except ValueError:
        ap.error(f"--harm-seeds: expected comma-separated integers, got {args.harm_seeds!r}")

    con = Console(width=None if sys.stdout.isatty() else 160)
    names = list(PROTOCOLS) if args.protocol == "all" else [args.protocol]
    t0 = time.perf_counter()
    built = {p: build(p, args.seed, args) for p in names}
    con.print(f"{sum(map(len, built.values()))} cases on {len(held_out_photos())} held-out photos "
              f"({', '.join(held_out_photos())}), built in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    everything = [c for p in names for c in built[p]]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_case, everything, chunksize=1))
    report: dict = {"settings": vars(args) | {"out": str(args.out)}, "code": code_version(), "protocols": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for p in names:
        rs = [r for r in results if r["protocol"] == p]
        groups, tasks = summarise(rs, "group"), summarise(rs, "task")
        title = {"mio": "MiO / AgenticIR groups", "promptir": "PromptIR Gaussian denoising",
                 "rnr": "reason-restore's own cases and clean negatives",
                 "heldout": "Held-out zoo models (" + ", ".join(f"{k}:{v}" for k, v in HELD_OUT_MODELS.items())
                 + f"), scorer {os.environ.get('RNR_QUALITY_MODEL') or 'shipped'}"}[p]  # fmt: skip
        print_table(con, f"{title}: mean PSNR dB / SSIM-Y (luma, 11x11 Gaussian window)", groups)
        if p == "mio":
            print_table(con, "MiO per combination: PSNR dB / SSIM-Y", tasks, harm=False)
            print_published(con, groups)
        decisions = {d: sum(r["decision"] == d for r in rs) for d in dict.fromkeys(r["decision"] for r in rs)}
        con.print(f"{p}: rnr decisions {decisions}, median {np.median([r['rnr_s'] for r in rs]):.2f} s per image")
        sheet = args.out.with_name(f"protocols_{p}_worst.png")
        contact_sheet(built[p], rs, sheet)
        report["protocols"][p] = {"groups": groups, "tasks": tasks, "cases": rs, "contact_sheet": str(sheet)}
    if harm_seeds:
        with ProcessPoolExecutor(args.workers) as pool:
            report["harm_by_seed"] = harm_by_seed(con, names, harm_seeds, args, pool)
    report["published_mio_psnr"] = PUBLISHED
    report["seconds"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(report, indent=1))
    con.print(f"written {args.out} in {report['seconds']:.0f} s (code {report['code']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
