"""Pixel statistics the ``measure`` diagnoser reasons from.

Every function takes ``float32 HxWx3 RGB in [0, 1]`` (or the derived luma) and returns plain floats, so each
number can be cited as evidence in a record. Local statistics (noise, blur, compression, streaks, resampling) are
measured at native resolution on a central crop that starts on the JPEG grid (found wherever it starts, as in a
JPEG cropped since; on the top-left pixel's grid when there is none); global ones (haze, exposure, scene) on a copy
down-scaled to at most 256 px.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from reasoner.jpeg_cells import grid_origin, ijg_table, luma255, luma_coefficients

LOCAL_CROP = 512
GLOBAL_SIDE = 256
SPECTRUM_BINS = 12
ORIENT_BINS = 12

# Low-frequency AC positions whose quantisation steps are estimated (zig-zag order).
_QPOS = [(0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (2, 1), (1, 2), (0, 3), (3, 0)]
_IJG_BY_QUALITY = np.stack([ijg_table(q) for q in range(1, 101)])  # (100, 8, 8)


def local_crop(rgb: np.ndarray, size: int = LOCAL_CROP, grid: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Central ``size`` crop that starts on the 8x8 grid at ``grid`` (row, column): a JPEG's blocks stay blocks.

    >>> local_crop(np.zeros((600, 700, 3)), grid=(3, 5)).shape
    (512, 512, 3)
    >>> local_crop(np.zeros((100, 100, 3)), grid=(3, 5)).shape   # smaller than the crop: only the rows before it go
    (97, 95, 3)
    """
    h, w = rgb.shape[:2]
    y0 = grid[0] + max((h - size) // 2 - grid[0], 0) // 8 * 8
    x0 = grid[1] + max((w - size) // 2 - grid[1], 0) // 8 * 8
    return rgb[y0 : y0 + size, x0 : x0 + size]


def global_view(rgb: np.ndarray, side: int = GLOBAL_SIDE) -> np.ndarray:
    """Area-downscaled copy with the longer side at most ``side``."""
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    if s >= 1.0:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def box_mean_std(x: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of float32 HxW ``x`` over the square of side 2 ``radius`` + 1 around each pixel.

    Edges are reflected.

    >>> mean, std = box_mean_std(np.eye(3, dtype=np.float32), 1)
    >>> round(float(mean[1, 1]), 3), round(float(std[1, 1]), 3)
    (0.333, 0.471)
    """
    size = (2 * radius + 1,) * 2
    mean = cv2.boxFilter(x, -1, size, borderType=cv2.BORDER_REFLECT)
    return mean, np.sqrt(np.maximum(cv2.boxFilter(x * x, -1, size, borderType=cv2.BORDER_REFLECT) - mean * mean, 0.0))


# --- noise --------------------------------------------------------------------------------------------------

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def noise_stats(rgb255: np.ndarray) -> dict[str, float]:
    """Noise std (0-255) by the finest Haar wavelet (Donoho MAD) and by Immerkaer's operator on flat blocks.

    The flat-block estimate takes the quietest fifth of 16x16 blocks, which keeps texture out of the estimate;
    the slope of block variance against block brightness separates Poisson-Gaussian from Gaussian noise.
    """
    h, w = rgb255.shape[:2]
    h2, w2 = h // 2 * 2, w // 2 * 2
    g = rgb255[:h2, :w2]
    hh = (g[0::2, 0::2] - g[0::2, 1::2] - g[1::2, 0::2] + g[1::2, 1::2]) / 2.0
    sigma_haar = float(np.median(np.abs(hh)) / 0.6745)

    resp = np.abs(cv2.filter2D(rgb255, -1, _IMMERKAER, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1].mean(axis=2)
    b = 16
    hb, wb = resp.shape[0] // b, resp.shape[1] // b
    if hb * wb < 4:
        s = float(math.sqrt(math.pi / 2) / 6 * resp.mean())
        return {
            "noise_sigma_haar": sigma_haar,
            "noise_sigma_flat": s,
            "noise_sigma_median": s,
            "noise_slope": 0.0,
            "noise_sigma_mid": s,
        }
    blocks = resp[: hb * b, : wb * b].reshape(hb, b, wb, b).mean(axis=(1, 3)).ravel()
    bright = rgb255[1 : 1 + hb * b, 1 : 1 + wb * b].mean(axis=2).reshape(hb, b, wb, b).mean(axis=(1, 3)).ravel()
    k = math.sqrt(math.pi / 2) / 6
    sig = k * blocks
    order = np.argsort(sig)
    quiet = order[: max(2, len(order) // 5)]
    # Noise level as a function of brightness: in each brightness band the quietest quarter of blocks is free of
    # texture; a line through (brightness, variance) gives the std at mid-grey (how the schema defines sigma for
    # signal-dependent noise) and the relative slope that tells Poisson-Gaussian from Gaussian noise.
    edges = np.linspace(10, 245, 9)
    xs, vs, ws = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (bright >= lo) & (bright < hi)
        if m.sum() >= 3:
            xs.append((lo + hi) / 510.0)
            vs.append(np.quantile(sig[m], 0.25) ** 2)
            ws.append(math.sqrt(m.sum()))
    slope, sigma_mid = 0.0, float(np.median(sig[quiet]))
    if len(xs) >= 2 and max(xs) - min(xs) > 0.1:
        b1, b0 = np.polyfit(xs, vs, 1, w=ws)
        mid = b0 + 0.5 * b1
        sigma_mid = float(math.sqrt(max(mid, 0.0)))
        slope = float(b1 / max(mid, 1e-3))
    return {
        "noise_sigma_haar": sigma_haar,
        "noise_sigma_flat": float(np.median(sig[quiet])),
        "noise_sigma_median": float(np.median(sig)),
        "noise_slope": float(np.clip(slope, -10, 10)),
        "noise_sigma_mid": sigma_mid,
    }


#: The share of the quietest unclipped (block, channel) noise readings :func:`unclipped_noise_sigma` takes, and what
#: that quantile reads of white Gaussian noise on a flat grey (16 px blocks, Immerkaer's operator): 0.93 of its std
#: at std 5-50 (0.920-0.930 over five draws each), which the estimate is divided by.
UNCLIPPED_QUANTILE = 0.2
UNCLIPPED_QUANTILE_READS = 0.927
#: How many stds (the estimate's own) a block's mean must keep from 0 and 255 to be read: nearer, clipping has taken
#: part of its noise away. Clipped Gaussian noise on two 256 px crops of each bundled photo (40 crops a std): read /
#: true median 1.02 / 1.00 / 0.98 at std 15 / 30 / 50 (10th percentile 0.99 / 0.96 / 0.95; 90th 1.09 / 1.04 / 0.99,
#: texture); a margin of 2.5 left too few blocks on 9 of the 40 crops at std 50 and read 0.90 at the 10th percentile,
#: 1.5 read 0.89 there.
UNCLIPPED_MARGIN = 2.0


def unclipped_noise_sigma(rgb255: np.ndarray, sigma0: float, b: int = 16) -> float | None:
    """White noise std (0-255) read only where clipping left it whole: a lower bound where texture is everywhere.

    Strong noise clipped at black and white loses part of its std in the darkest and brightest blocks, and those are
    the quietest: :func:`noise_stats` (and the factor head that reads it) under-reads Gaussian noise of std 50 at
    about 40 on photos with dark or bright areas. Here each channel's 16 px blocks whose mean keeps
    :data:`UNCLIPPED_MARGIN` stds from 0 and 255 are read with Immerkaer's operator, the
    :data:`UNCLIPPED_QUANTILE` quietest reading is taken and divided by what that quantile reads of pure noise; the
    margin follows the estimate (three rounds from ``sigma0``). None when fewer than 8 readings are left. Noise that
    is correlated (demosaiced) or signal-dependent reads lower here than its std at mid-grey.

    >>> rng = np.random.default_rng(0)
    >>> grey = np.concatenate([np.full((256, 256, 3), 40.0), np.full((256, 256, 3), 128.0)])  # a dark and a mid half
    >>> noisy = np.clip(np.round(grey + rng.normal(0, 50, grey.shape)), 0, 255)
    >>> round(unclipped_noise_sigma(noisy, 30.0)), round(noise_stats(noisy)["noise_sigma_flat"])
    (50, 39)
    >>> unclipped_noise_sigma(np.full((64, 64, 3), 255.0), 10.0) is None
    True
    """
    x = np.ascontiguousarray(rgb255, dtype=np.float32)
    resp = np.abs(cv2.filter2D(x, -1, _IMMERKAER, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1]
    hb, wb = resp.shape[0] // b, resp.shape[1] // b
    if hb * wb == 0:
        return None
    k = math.sqrt(math.pi / 2) / 6

    def blocks(a: np.ndarray) -> np.ndarray:
        return a[: hb * b, : wb * b].reshape(hb, b, wb, b, 3).mean(axis=(1, 3)).ravel()

    noise, mean, s = k * blocks(resp), blocks(x[1:-1, 1:-1]), float(sigma0)
    for _ in range(3):
        read = noise[(mean > UNCLIPPED_MARGIN * s) & (mean < 255.0 - UNCLIPPED_MARGIN * s)]
        if read.size < 8:
            return None
        s = float(np.quantile(read, UNCLIPPED_QUANTILE)) / UNCLIPPED_QUANTILE_READS
    return s


# --- spectrum: blur, motion, low resolution ------------------------------------------------------------------


def spectrum_stats(y: np.ndarray, noise_sigma: float) -> dict[str, float]:
    """Welch radial power spectrum of luma (log10, relative to the lowest band) and its orientation profile.

    Also fits a Gaussian blur sigma to ``log(P f^2) = c - 4 pi^2 sigma^2 f^2`` over the bands above the
    white-noise floor implied by ``noise_sigma``, and reports the frequency orientation with least high-band
    energy (motion blur removes energy along the direction of motion).
    """
    t = 128
    h, w = y.shape
    if h < t or w < t:
        y = cv2.copyMakeBorder(y, 0, max(0, t - h), 0, max(0, t - w), cv2.BORDER_REFLECT)
        h, w = y.shape
    win = np.outer(np.hanning(t), np.hanning(t)).astype(np.float32)
    ys = np.linspace(0, h - t, max(1, min(4, h // t))).astype(int)
    xs = np.linspace(0, w - t, max(1, min(4, w // t))).astype(int)
    tiles = np.stack([y[a : a + t, b : b + t] for a in ys for b in xs])
    tiles = (tiles - tiles.mean(axis=(1, 2), keepdims=True)) * win
    power = (np.abs(np.fft.fft2(tiles)) ** 2).mean(axis=0) / (win**2).sum()
    power = np.fft.fftshift(power)
    f = np.fft.fftshift(np.fft.fftfreq(t))
    fx, fy = np.meshgrid(f, f)
    fr = np.hypot(fx, fy)
    edges = np.linspace(0.02, 0.5, SPECTRUM_BINS + 1)
    idx = np.digitize(fr, edges) - 1
    radial = np.array([power[idx == i].mean() for i in range(SPECTRUM_BINS)])
    logp = np.log10(radial + 1e-6)
    out = {f"spec_{i:02d}": float(logp[i] - logp[0]) for i in range(SPECTRUM_BINS)}

    floor = noise_sigma**2
    centres = 0.5 * (edges[:-1] + edges[1:])
    use = radial > 3.0 * floor + 1e-3
    use[0] = False
    sigma_fit = 0.0
    if use.sum() >= 3:
        yv = np.log(np.maximum(radial[use] - floor, 1e-6) * centres[use] ** 2)
        slope = np.polyfit(centres[use] ** 2, yv, 1)[0]
        sigma_fit = math.sqrt(max(-slope, 0.0)) / (2 * math.pi)
    out["blur_sigma_fit"] = float(min(sigma_fit, 20.0))
    out["spec_cutoff"] = float(centres[use].max()) if use.any() else 0.0

    # Orientation profile of the mid/high band (frequency angle, y axis pointing down).
    band = (fr > 0.1) & (fr < 0.4)
    ang = (np.degrees(np.arctan2(-fy, fx)) % 180.0)[band]
    pb = np.maximum(power[band] - floor, 1e-6)
    obin = (ang / (180.0 / ORIENT_BINS)).astype(int) % ORIENT_BINS
    prof = np.bincount(obin, weights=pb, minlength=ORIENT_BINS) / np.maximum(
        np.bincount(obin, minlength=ORIENT_BINS), 1
    )
    lp = np.log10(prof)
    i_min = int(np.argmin(lp))
    out["orient_aniso"] = float(lp.max() - lp.min())
    out["orient_min_vs_opposite"] = float(lp[(i_min + ORIENT_BINS // 2) % ORIENT_BINS] - lp[i_min])
    # Direction of least energy at 5-degree resolution: circular mean of the doubled angles weighted by how far
    # each direction falls below the strongest (not a model input, so finer than the profile above).
    fine = 36
    fbin = (ang / (180.0 / fine)).astype(int) % fine
    fprof = np.log10(np.bincount(fbin, weights=pb, minlength=fine) / np.maximum(np.bincount(fbin, minlength=fine), 1))
    deficit = fprof.max() - fprof
    theta = np.radians((np.arange(fine) + 0.5) * 2 * 180.0 / fine)
    out["orient_min_angle"] = float(
        np.degrees(np.arctan2((deficit * np.sin(theta)).sum(), (deficit * np.cos(theta)).sum())) / 2 % 180.0
    )
    return out


def edge_stats(y: np.ndarray) -> dict[str, float]:
    """Edge width (local contrast over peak gradient at the strongest edges, px) and gradient scale ratios."""
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    mag = np.hypot(gx, gy)
    k = np.ones((9, 9), np.uint8)
    contrast = cv2.dilate(y, k) - cv2.erode(y, k)
    thr = np.quantile(mag, 0.98)
    sel = mag >= max(thr, 1e-3)
    width = float(np.median(contrast[sel] / np.maximum(mag[sel], 1e-3))) if sel.any() else 0.0
    half = cv2.resize(y, (max(1, y.shape[1] // 2), max(1, y.shape[0] // 2)), interpolation=cv2.INTER_AREA)
    g2 = np.hypot(cv2.Sobel(half, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(half, cv2.CV_32F, 0, 1, ksize=3)) / 8.0
    lap = cv2.Laplacian(y, cv2.CV_32F, ksize=1)
    return {
        "edge_width": min(width, 30.0),
        "grad_scale_ratio": float(np.log((mag.mean() + 1e-3) / (g2.mean() / 2.0 + 1e-3))),
        "lap_to_grad": float(np.log((np.abs(lap).mean() + 1e-3) / (mag.mean() + 1e-3))),
        "grad_p98": float(thr),
    }


def resampling_stats(y: np.ndarray, grid_free: bool = False) -> dict[str, float]:
    """Periodicity of the second derivative left by interpolation (Popescu-Farid style): peak ratio and period.

    ``grid_free``: ``y`` starts on a JPEG's 8x8 grid, and each profile's own 8-px pattern (its mean at each of the
    8 offsets from the grid) is taken out first. A JPEG's blocks leave such a pattern in the second derivative of a
    smooth image, whose harmonics (periods 8/3, 4 and 2 px) read as interpolation: out of focus photos saved as JPEG
    were read as up-sampled (:meth:`reasoner.measure.backend.MeasureReasoner._low_resolution_of_the_grid`).
    """
    best, period = 0.0, 0.0
    for d2 in (np.abs(np.diff(y, 2, axis=1)).mean(axis=0), np.abs(np.diff(y, 2, axis=0)).mean(axis=1)):
        if d2.size < 16:
            continue
        if grid_free:
            d2 = d2[: d2.size // 8 * 8].reshape(-1, 8)
            d2 = (d2 - d2.mean(axis=0)).ravel()
        spec = np.abs(np.fft.rfft(d2 - d2.mean()))
        freqs = np.fft.rfftfreq(d2.size)
        band = (freqs > 0.18) & (freqs <= 0.5)
        if not band.any():
            continue
        ratio = float(spec[band].max() / (np.median(spec[1:]) + 1e-6))
        if ratio > best:
            best, period = ratio, float(1.0 / freqs[band][np.argmax(spec[band])])
    return {"resample_peak": float(np.log(best + 1.0)), "resample_period": period}


# --- JPEG ----------------------------------------------------------------------------------------------------


def jpeg_stats(y: np.ndarray) -> dict[str, float]:
    """Blocking at 8-px boundaries and the IJG quality implied by quantisation steps of low-frequency DCT terms.

    Coefficients of blocks on the 8x8 grid cluster at multiples of each quantisation step; the largest step whose
    periodicity score is high is taken, and the IJG quality whose table best matches the found steps is reported
    (100 when no step is found).
    """
    out = {}
    dh = np.abs(np.diff(y, axis=1)).mean(axis=0)
    dv = np.abs(np.diff(y, axis=0)).mean(axis=1)
    block = 0.0
    for d in (dh, dv):
        n = d.size // 8 * 8
        if n < 16:
            continue
        phase = d[:n].reshape(-1, 8).mean(axis=0)
        block += float(np.log((phase[7] + 1e-3) / (np.median(phase[:7]) + 1e-3)))
    out["jpeg_blockiness"] = block / 2.0

    h, w = y.shape
    hb, wb = h // 8, w // 8
    if hb * wb < 16:
        out.update(jpeg_quality_est=100.0, jpeg_q_score=0.0, jpeg_quality_read=100.0, jpeg_read_score=0.0,
                   jpeg_hf_zero=0.0)  # fmt: skip
        return out
    coef = luma_coefficients(y).reshape(-1, 8, 8)
    # Two readings of the same votes. "est" takes the largest step that scores high on at least 30 coefficients (a
    # calibration input, kept as fitted); "read" also requires the step to be supported by 30% of all coefficients,
    # because a multiple of the true step scores high on the few large ones a dark or flat frame has. The factor
    # reported for JPEG uses the second.
    cands = np.arange(2, 61, dtype=np.float64)
    found = {"est": ([], []), "read": ([], [])}
    for u, v in _QPOS:
        c = coef[:, u, v]
        c = c[np.abs(c) > 1.0][:2000]
        # Only coefficients beyond half a step can vote on that step: small ones sit near zero phase for any step.
        m = np.abs(c)[None, :] > 0.75 * cands[:, None]
        n = m.sum(axis=1)
        score = np.where(m, np.cos(2 * np.pi * c[None, :] / cands[:, None]), 0.0).sum(axis=1) / np.maximum(n, 1)
        for key, support in (("est", 30), ("read", max(30, 0.3 * c.size))):
            ok = np.nonzero((score > 0.6) & (n >= support))[0]
            found[key][0].append(float(cands[ok[-1]]) if ok.size else 1.0)
            found[key][1].append(float(score[ok[-1]]) if ok.size else 0.0)
    for key, (steps, weights) in found.items():
        quality, wts = 100.0, np.asarray(weights)
        if (wts > 0).sum() >= 2:
            tables = _IJG_BY_QUALITY[:, [p[0] for p in _QPOS], [p[1] for p in _QPOS]]
            err = (np.abs(np.log(tables) - np.log(np.asarray(steps))[None, :]) * wts[None, :]).sum(axis=1)
            quality = float(np.argmin(err) + 1)
        out[f"jpeg_quality_{key}"] = quality
        out["jpeg_q_score" if key == "est" else "jpeg_read_score"] = float(wts.mean())
    hf = np.abs(coef[:, 4:, 4:]).reshape(-1, 16)
    active = np.abs(coef[:, 0, 1]) + np.abs(coef[:, 1, 0]) > 8.0
    out["jpeg_hf_zero"] = float((hf[active] < 0.5).mean()) if active.any() else 0.0
    return out


# --- rain ----------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _line_bank(n: int = 12, half: int = 4) -> tuple[np.ndarray, ...]:
    """Normalised anti-aliased line kernels at ``n`` directions over 180 degrees (y axis down, CCW from +x)."""
    bank = []
    for i in range(n):
        a = math.radians(i * 180.0 / n)
        k = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
        dx, dy = half * math.cos(a), -half * math.sin(a)
        cv2.line(k, (round(half - dx), round(half - dy)), (round(half + dx), round(half + dy)), 1.0, 1, cv2.LINE_AA)
        bank.append(k / k.sum())
    return tuple(bank)


def rain_stats(y: np.ndarray) -> dict[str, float]:
    """Thin bright streaks: top-hat energy, its orientation coherence, and oriented line-filter contrast."""
    tophat = cv2.morphologyEx(y, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    gx = cv2.Sobel(tophat, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(tophat, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jyy, jxy = (gx * gx).mean(), (gy * gy).mean(), (gx * gy).mean()
    tr = jxx + jyy + 1e-6
    coherence = float(math.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / tr)
    # Gradient orientation is perpendicular to the streaks; report streak direction, y axis down, CCW from +x.
    grad_angle = 0.5 * math.degrees(math.atan2(2 * jxy, jxx - jyy))
    streak_angle = (-(grad_angle + 90.0)) % 180.0
    # Line filters at half resolution (streaks are long; this keeps the bank cheap), every 15 degrees.
    half = cv2.resize(
        tophat, (max(1, tophat.shape[1] // 2), max(1, tophat.shape[0] // 2)), interpolation=cv2.INTER_AREA
    )
    resp = np.stack([cv2.filter2D(half, -1, k) for k in _line_bank()])
    n_dir = resp.shape[0]
    med = np.median(resp, axis=0)
    best = resp.max(axis=0)
    line_contrast = float(np.log((best.mean() + 1e-2) / (med.mean() + 1e-2)))
    # Rain covers the frame evenly along one direction; thin scene structures are local and point every way.
    # (Each kernel sums to one, so plain mean responses are equal; compare what each direction adds over the median.)
    excess = np.maximum(resp - med[None], 0.0)
    means = excess.mean(axis=(1, 2))
    a_star = int(np.argmax(means))
    orth = (a_star + n_dir // 2) % n_dir
    dir_contrast = float(np.log((means[a_star] + 0.05) / (means[orth] + 0.05)))
    g = 4
    hh, ww = half.shape[0] // g * g, half.shape[1] // g * g
    cells = excess[:, :hh, :ww].reshape(n_dir, g, hh // g, g, ww // g).mean(axis=(2, 4)).reshape(n_dir, -1)
    off = np.abs((cells.argmax(axis=0) - a_star + n_dir // 2) % n_dir - n_dir // 2)
    cell_aniso = np.log((cells[a_star] + 0.05) / (cells[orth] + 0.05))
    # Over smooth background (sky, walls) a clean scene has no thin bright lines at all, while rain crosses it.
    background = cv2.resize(y - tophat, (half.shape[1], half.shape[0]), interpolation=cv2.INTER_AREA)
    bg_sd = np.sqrt(np.maximum(cv2.blur(background**2, (7, 7)) - cv2.blur(background, (7, 7)) ** 2, 0))
    flat = bg_sd < 4.0
    if flat.mean() > 0.05:
        ea, eo = excess[a_star][flat].mean(), excess[orth][flat].mean()
        flat_aniso, flat_energy = float(np.log((ea + 0.05) / (eo + 0.05))), float(np.log(ea + 0.05))
    else:
        flat_aniso, flat_energy = 0.0, float(np.log(0.05))
    return {
        "rain_tophat": float(np.log(tophat.mean() + 1e-2)),
        "rain_tophat_frac": float((tophat > 20.0).mean()),
        "rain_coherence": coherence,
        "rain_line_contrast": line_contrast,
        "rain_angle": float(streak_angle),
        "rain_vertical": float(math.cos(math.radians(2 * (streak_angle - 90.0)))),
        "rain_dir_contrast": dir_contrast,
        "rain_cell_agree": float((off <= 1).mean()),
        "rain_cell_aniso_floor": float(np.quantile(cell_aniso, 0.25)),
        "rain_flat_aniso": flat_aniso,
        "rain_flat_energy": flat_energy,
        "rain_flat_frac": float(flat.mean()),
    }


# --- global tone: haze, low light ------------------------------------------------------------------------------


def airlight_floor(small: np.ndarray, quantile: float = 0.999) -> float:
    """The least grey airlight under which the dark channel's transmission dehazes no pixel past white.

    With the dark-channel prior a pixel's transmission is ``1 - dark / A`` (its 7-pixel dark channel, grey airlight
    ``A``) and its dehazed luminance ``(lum - dark) / (1 - dark / A)``; that is at most 1 when
    ``A >= dark / (1 - lum + dark)``. This is that bound's ``quantile`` over the pixels of ``small``, box-smoothed
    over 3 pixels first so that noise does not raise it. The brightest pixels of the dark channel (the usual
    estimate) under-read a veil whose frame holds no dense haze or sky: a crop of grass under airlight 0.93 has no
    pixel above 0.8, and dehazing with 0.8 takes 2 to 8 dB off the result.

    >>> scene = np.kron(np.indices((64, 64)).sum(0) % 2, np.ones((4, 4)))[..., None].repeat(3, 2)  # black and white
    >>> veil = (scene * 0.4 + 0.9 * 0.6).astype(np.float32)  # under airlight 0.9 at transmission 0.4
    >>> round(airlight_floor(veil), 2), round(float(tone_stats(veil)["airlight_r"]), 2)
    (0.9, 0.76)
    """
    x = cv2.blur(small.astype(np.float32, copy=False), (3, 3))
    dark = cv2.erode(x.min(axis=2), np.ones((7, 7), np.uint8))
    lum = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return float(np.quantile(dark / np.maximum(1.0 - lum + dark, 1e-3), quantile))


def tone_stats(small: np.ndarray) -> dict[str, float]:
    """Dark channel, atmospheric light, transmission, contrast, saturation and luminance percentiles."""
    dark = cv2.erode(small.min(axis=2), np.ones((7, 7), np.uint8))
    n = max(1, dark.size // 1000)
    top = np.argpartition(dark.ravel(), -n)[-n:]
    airlight = small.reshape(-1, 3)[top].mean(axis=0)
    norm = small / np.maximum(airlight, 0.05)
    trans = 1.0 - 0.95 * cv2.erode(norm.min(axis=2), np.ones((7, 7), np.uint8))
    lum = small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    mx, mn = small.max(axis=2), small.min(axis=2)
    sat = (mx - mn) / np.maximum(mx, 1e-3)
    p = np.quantile(lum, [0.01, 0.05, 0.5, 0.95, 0.995])
    # The dark-channel prior fails on sky and other bright flat areas; measure it on textured pixels as well.
    sd = np.sqrt(np.maximum(cv2.blur(lum**2, (5, 5)) - cv2.blur(lum, (5, 5)) ** 2, 0))
    textured = sd > 0.02
    third = max(1, small.shape[0] // 3)
    return {
        "airlight_floor": airlight_floor(small),
        "dark_textured": float(dark[textured].mean()) if textured.mean() > 0.05 else float(dark.mean()),
        "dark_top_minus_bottom": float(dark[:third].mean() - dark[-third:].mean()),
        "texture_frac_global": float(textured.mean()),
        "dark_mean": float(dark.mean()),
        "dark_p10": float(np.quantile(dark, 0.1)),
        "airlight_r": float(airlight[0]),
        "airlight_g": float(airlight[1]),
        "airlight_b": float(airlight[2]),
        "airlight_lum": float(airlight @ np.array([0.299, 0.587, 0.114])),
        "transmission_dcp": float(np.clip(trans, 0.05, 1.0).mean()),
        "contrast_rms": float(lum.std() / max(lum.mean(), 1e-3)),
        "contrast_range": float(p[3] - p[1]),
        "saturation": float(sat.mean()),
        "lum_mean": float(lum.mean()),
        "lum_p01": float(p[0]),
        "lum_p05": float(p[1]),
        "lum_p50": float(p[2]),
        "lum_p95": float(p[3]),
        "lum_p995": float(p[4]),
        "frac_dark": float((lum < 0.06).mean()),
        "frac_bright": float((lum > 0.94).mean()),
    }


def denoised_view(x: np.ndarray, sigma: float) -> np.ndarray:
    """``x`` (float32 HxWx3 RGB in [0, 1]) through OpenCV's colour non-local means at filter strength ``sigma``.

    ``sigma``: the noise std on the 0-255 scale; below 1 the view is returned as it is. 5x5 patches, 15x15 search: a
    quick proxy of a denoised image for reading what the noise masks, not a restoration.

    >>> rng = np.random.default_rng(0)
    >>> noisy = np.clip(0.5 + rng.normal(0, 0.08, (64, 64, 3)), 0, 1).astype(np.float32)
    >>> round(float(noisy.std()), 3), bool(denoised_view(noisy, 20.0).std() < 0.02)
    (0.08, True)
    """
    if sigma < 1.0:
        return x
    u8 = np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)
    h = float(sigma)
    return cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(u8), None, h, h, 5, 15).astype(np.float32) / 255.0


def denoised_global_view(rgb: np.ndarray, sigma: float, small: np.ndarray | None = None) -> np.ndarray:
    """The global view of ``rgb`` (``small`` when already made) through :func:`denoised_view`.

    At the noise std its area down-scaling leaves: ``sigma`` (0-255, on ``rgb``) times its scale.
    """
    small = global_view(rgb) if small is None else small
    return denoised_view(small, sigma * small.shape[0] / rgb.shape[0])


def measure_all(
    rgb: np.ndarray, origin: tuple[int, int] | None = None, denoise_sigma: float | None = None
) -> dict[str, float]:
    """Every statistic above for one image (``float32 HxWx3 RGB in [0, 1]``), by name.

    ``origin``: where its JPEG grid starts (:func:`reasoner.jpeg_cells.grid_origin`), when the caller has it already.
    ``denoise_sigma``: measure the local crop and the global view through :func:`denoised_view` at this noise std
    (0-255; the global view's at the std its area down-scaling leaves, ``sigma`` times its scale).
    """
    origin = grid_origin(rgb) if origin is None else origin
    crop = np.ascontiguousarray(local_crop(rgb, grid=origin), dtype=np.float32)
    small = global_view(rgb)
    if denoise_sigma is not None:
        crop = denoised_view(crop, denoise_sigma)
        small = denoised_global_view(rgb, denoise_sigma, small)
    y = luma255(crop)
    feats = noise_stats(crop * 255.0)
    feats.update(spectrum_stats(y, feats["noise_sigma_flat"] * 0.67))
    feats.update(edge_stats(y))
    feats.update(resampling_stats(y))
    feats.update(jpeg_stats(y))
    feats.update(rain_stats(y))
    feats.update(tone_stats(small))
    return feats
