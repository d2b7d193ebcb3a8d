"""The chroma clean-ups: after non-local means, and of coarse colour blotches when brightening; PSNR with and without.

    python bench/chroma.py [--crops 3] [--seed 1] [--dim-crops 2]

Crops (256 px) of the calibration photos (where its two constants were chosen) and of the held-out photos (the
protocols' scenes, gradio's photos among them when installed) get noise from every zoo noise model and Gaussian
sigma 15 / 25 / 50, 8-bit quantised; :func:`restorer.operators.denoise` is given the true sigma and model, with the
clean-up (the default) and without it (``chroma=(0, 0)``: non-local means alone, as before session 18). Prints the
mean PSNR of each (8-bit outputs, ``restorer.metrics.psnr``), the mean, worst and best change per crop, then the
clean-up's share of the denoising time at 512 and 2048 px.

The second table: dim crops (384 px) under each zoo under-exposure model, camera or the project's own noise, then a
Pillow JPEG (4:2:0, quality 60-95), restored by the classical restorer with the ground truth's plan, with the coarse
colour clean-up of brightening after the denoising and deblocking (``restorer.operators.low_light.BLOTCH_SHARE``, the
default) and without it (share 0, as before session 19). Dim crops with nothing filtered first do not get it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = ("rnr", "poisson", "camera", "grey", "correlated", "sigma15", "sigma25", "sigma50")


def noisy_copy(clean: np.ndarray, model: str, rng: np.random.Generator) -> tuple[np.ndarray, float, str]:
    """``clean`` with noise of ``model`` (a zoo model or "sigmaN"), 8-bit; the true sigma and the denoiser's model."""
    from rl.degradations.registry import MODELS as ZOO

    if model.startswith("sigma"):
        sigma = float(model.removeprefix("sigma"))
        x, noise_model = clean + rng.normal(0, sigma / 255, clean.shape), "gaussian"
    else:
        m = ZOO["noise"][model]
        p = m.sample(rng)
        f = m.factors(p, clean.shape)
        x, sigma, noise_model = m.apply(clean, p), f["sigma"], f.get("model", "gaussian")
    return np.round(np.clip(x, 0, 1) * 255).astype(np.float32) / 255, float(sigma), noise_model


def rows(photos: dict[str, np.ndarray], crops: int, rng: np.random.Generator) -> dict[str, list[tuple]]:
    from reasoner.imageio import to_uint8
    from restorer.metrics import psnr
    from restorer.operators import denoise
    from rl.photos import random_crop

    def score(out: np.ndarray, clean: np.ndarray) -> float:
        return psnr(to_uint8(clean), to_uint8(out))  # on 8-bit images, as the protocols measure

    out: dict[str, list[tuple]] = {m: [] for m in MODELS}
    for img in photos.values():
        for _ in range(crops):
            clean = random_crop(img, rng, 256)
            for model in MODELS:
                x, sigma, noise_model = noisy_copy(clean, model, rng)
                before = score(denoise(x, sigma, noise_model, chroma=(0.0, 0.0)), clean)
                after = score(denoise(x, sigma, noise_model), clean)
                out[model].append((sigma, before, after))
    return out


def dim_rows(photos: dict[str, np.ndarray], crops: int, rng: np.random.Generator) -> dict[str, list[tuple]]:
    """Per under-exposure model: (PSNR without, PSNR with) the coarse colour clean-up, oracle plans, 8-bit."""
    from reasoner.imageio import to_uint8
    from restorer import load_restorer, plan_from_record
    from restorer.metrics import psnr
    from restorer.operators import low_light
    from rl.degradations.registry import MODELS as ZOO
    from rl.degradations.registry import apply
    from rl.ground_truth import ground_truth
    from rl.photos import random_crop

    classical, share = load_restorer("classical"), low_light.BLOTCH_SHARE
    out: dict[str, list[tuple]] = {m: [] for m in ZOO["low_light"]}
    for img in photos.values():
        for _ in range(crops):
            clean = random_crop(img, rng, 384)
            for model in out:
                noise = ("camera", "rnr")[int(rng.integers(2))]
                ops = [ZOO["low_light"][model].sample(rng), ZOO["noise"][noise].sample(rng),
                       ZOO["jpeg"]["rnr"].sample(rng, quality=(60, 95))]  # fmt: skip
                x = np.round(apply(clean, ops) * 255).astype(np.float32) / 255
                record = ground_truth(ops, x)
                plan = plan_from_record(record)
                scores = []
                for s in (0.0, share):
                    low_light.BLOTCH_SHARE = s
                    try:
                        scores.append(psnr(to_uint8(clean), to_uint8(classical.restore(x, record, [], plan).pixels)))
                    finally:
                        low_light.BLOTCH_SHARE = share
                out[model].append(tuple(scores))
    return out


def timing() -> list[tuple[int, float, float]]:
    from restorer.operators import denoise
    from restorer.operators.filters import chroma_noise, clean_chroma

    rng = np.random.default_rng(0)
    out = []
    for side in (512, 2048):
        x = np.clip(0.5 + rng.normal(0, 0.1, (side, side, 3)), 0, 1).astype(np.float32)
        whole, part = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            d = denoise(x, 25.0)
            whole.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            clean_chroma(d, chroma_noise(x))
            part.append(time.perf_counter() - t0)
        out.append((side, float(np.median(whole)), float(np.median(part))))
    return out


def table(title: str, kind: str, *measured: str) -> Table:
    """A table of per-model rows: photos, ``kind``, crops, the ``measured`` means, then the change per crop."""
    t = Table(title=title)
    for col in ("photos", kind, "crops", *measured, "mean change", "worst crop", "best"):
        t.add_column(col, justify="left" if col in ("photos", kind) else "right")
    return t


def add_split(t: Table, split: str, per: dict[str, list[tuple]]) -> None:
    """One row per model of ``per`` (tuples ending in the PSNR without and with the clean-up), then the split's."""

    def change(d: np.ndarray) -> tuple[str, str, str]:
        return f"{d.mean():+.3f}", f"{d.min():+.2f}", f"{d.max():+.2f}"

    every = []
    for model, rs in per.items():
        a = np.array(rs)
        d = a[:, -1] - a[:, -2]
        every.append(d)
        lead = [f"{v:.1f}" for v in a[:, :-2].mean(axis=0)]  # e.g. the mean sigma
        t.add_row(split, model, str(len(a)), *lead, f"{a[:, -2].mean():.2f}", f"{a[:, -1].mean():.2f}", *change(d))
    d = np.concatenate(every)
    blanks = [""] * (len(t.columns) - 6)
    t.add_row(split, "all", str(len(d)), *blanks, *change(d), end_section=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", type=int, default=3, help="crops per photo for the denoising table (0: skip it)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dim-crops", type=int, default=2, help="crops per photo for the dim table (0: skip it)")
    args = ap.parse_args(argv)
    from protocols import held_out_photos

    from rl.photos import CALIBRATION_PHOTOS, load_photo

    con = Console(width=120)
    splits = {"calibration": {n: load_photo(n) for n in CALIBRATION_PHOTOS}, "held-out": held_out_photos()}
    if args.crops > 0:
        t = table("Denoising with the true sigma: non-local means alone vs with the chroma clean-up (PSNR dB)",
                  "noise", "sigma", "NLM alone", "with clean-up")  # fmt: skip
        for split, photos in splits.items():
            add_split(t, split, rows(photos, args.crops, np.random.default_rng(args.seed)))
        con.print(t)
    if args.dim_crops > 0:
        t = table("Dim + noise + JPEG 4:2:0, oracle plans: brightening without vs with the blotch clean-up",
                  "under-exposure", "without", "with")  # fmt: skip
        for split, photos in splits.items():
            add_split(t, split, dim_rows(photos, args.dim_crops, np.random.default_rng(args.seed + 10)))
        con.print(t)
    s = Table(title="Denoising time (median of 3 runs, sigma 25)")
    for col in ("side px", "denoise s", "of which clean-up s", "share"):
        s.add_column(col, justify="right")
    for side, whole, part in timing():
        s.add_row(str(side), f"{whole:.3f}", f"{part:.3f}", f"{part / whole:.0%}")
    con.print(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
