"""Statistics of the change from a source image to a restoration of it, measured without a clean reference.

A restoration is judged by what it changed and where: detail added in step with the source's edges (sharpening)
or out of step (ringing, false texture), detail taken from textured regions (over-smoothing, waxy skin) or from flat
ones (denoising), tone and colour moved in low-texture regions (casts, posterised skies), blocking, noise and
clipping amplified. Each statistic is a plain float; :mod:`reasoner.quality.model` maps them to an estimated
quality change and :mod:`reasoner.quality.artefacts` names what is visible.

Local statistics are measured at native resolution on a central crop whose origin is a multiple of 8 (fine-scale
artefacts vanish when down-scaled; the JPEG grid stays aligned); global ones (tone, colour, structure) on copies
down-scaled to at most 256 px. Both images must have the same shape, ``float32 HxWx3 RGB in [0, 1]``.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from reasoner.common import content_key, haar_sigma, remembered
from reasoner.measure.features import unclipped_noise_sigma

LOCAL_CROP = 512
GLOBAL_SIDE = 256
_EPS = 1e-7
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)

#: Names of the statistics, in the order the model reads them.
FEATURES: tuple[str, ...] = (
    "tone_abs", "tone_mean", "contrast_lr", "chroma_abs", "chroma_mean", "sat_lr", "flat_tone_abs",
    "flat_chroma_abs", "clip_lo", "clip_hi", "structure",
    "band0_lr", "band1_lr", "band2_lr", "band0_flat_lr", "band1_flat_lr", "band2_flat_lr", "band0_tex_lr",
    "band1_tex_lr", "band2_tex_lr", "hf_corr", "hf_gain", "ring_lr", "overshoot", "block_lr", "noise_lr",
    "poster_d", "flat_grad_lr",
    "src_mean", "src_p05", "src_p95", "src_dark", "src_noise", "src_block", "src_contrast", "src_hf", "src_sat",
    "src_edges",
)  # fmt: skip
#: Statistics only the artefact checks read (not the model): clipping where the source was not already at black or
#: white (see :func:`_black_white`), fine texture kept beyond what the source's noise explains (``tex_kept``), and
#: echoes of the detail at a distance (``echo``: ghost edges, rings; see :func:`_echo`). :func:`tone_gain` is measured
#: apart, only for the plans whose report reads it.
ARTEFACT_STATISTICS: tuple[str, ...] = ("crush_lo", "crush_hi", "tex_kept", "echo", "poster_steps")
#: Offsets (px) and directions over which :func:`_echo` looks for repeated detail: a line PSF's ghosts sit at its
#: length, a disk's rings at its radius; echoes of kernels longer than 24 px are not looked for.
ECHO_LAGS, ECHO_RAYS = 24, 24


def _luma(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x @ _LUMA)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigma)


def _lr(a: float, b: float) -> float:
    """Log ratio of two energies, bounded so near-empty regions cannot dominate."""
    return float(np.clip(np.log((a + _EPS) / (b + _EPS)), -8.0, 8.0))


def _small(x: np.ndarray, side: int = GLOBAL_SIDE) -> np.ndarray:
    h, w = x.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return x
    return cv2.resize(x, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _crop(x: np.ndarray, size: int = LOCAL_CROP) -> np.ndarray:
    h, w = x.shape[:2]
    y0 = max(0, (h - size) // 2) // 8 * 8
    x0 = max(0, (w - size) // 2) // 8 * 8
    return x[y0 : y0 + size, x0 : x0 + size]


def _local_std(y: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    m = _blur(y, sigma)
    return np.sqrt(np.maximum(_blur(y * y, sigma) - m * m, 0.0))


def _bands(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g1, g2, g4 = _blur(y, 0.8), _blur(y, 1.6), _blur(y, 3.2)
    return y - g1, g1 - g2, g2 - g4


def _blockiness(y: np.ndarray) -> float:
    """Mean horizontal + vertical step across 8x8 block boundaries relative to all steps (1 = no grid)."""
    if min(y.shape) < 17:
        return 1.0
    dh, dv = np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0))
    at = dh[:, 7::8].mean() + dv[7::8, :].mean()
    return float(at / (dh.mean() + dv.mean() + _EPS))


def _masked_mean(x: np.ndarray, mask: np.ndarray) -> float:
    return float(x[mask].mean()) if mask.any() else 0.0


def change_features(src: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Statistics (see :data:`FEATURES`) of the change from ``src`` to ``out``; both ``float32 HxWx3`` in [0, 1].

    Raises:
        ValueError: When the two images differ in shape.

    """
    if src.shape != out.shape:
        raise ValueError(f"source {src.shape} and restoration {out.shape} differ in shape")
    src, out = _unit(src), _unit(out)
    f: dict[str, float] = {}
    _local(f, _crop(src), _crop(out))  # first: the clipping checks of _global read the source's noise
    _global(f, _small(src), _small(out))
    return {k: float(np.nan_to_num(f[k])) for k in FEATURES + ARTEFACT_STATISTICS}


def texture_change(clean: np.ndarray, out: np.ndarray) -> float:
    """Full-reference: log ratio of ``out``'s fine texture to ``clean``'s, in the clean image's textured regions.

    The label the over-smoothing check is fitted on (:mod:`rl.calibrate_quality`): denoising that keeps the texture
    reads about 0, one that halves its energy (fur turned to watercolour) ``log 0.5``. Same central crop, bands and
    textured quarter as ``tex_kept``, the no-reference statistic that estimates it from the source.

    >>> rng = np.random.default_rng(1)
    >>> fur = cv2.GaussianBlur(rng.normal(0.5, 0.2, (96, 96, 3)).astype(np.float32), (0, 0), 1.0)
    >>> round(texture_change(fur, fur), 3), texture_change(fur, cv2.GaussianBlur(fur, (0, 0), 1.5)) < -1.0
    (0.0, True)
    """
    yc, yo = _luma(_crop(_unit(clean))), _luma(_crop(_unit(out)))
    loc = _local_std(yc)
    tex = loc >= np.percentile(loc, 75)
    bc, bo = _bands(yc), _bands(yo)
    return _lr(_masked_mean(bo[0] ** 2 + bo[1] ** 2, tex), _masked_mean(bc[0] ** 2 + bc[1] ** 2, tex))


def removed_noise(src: np.ndarray, out: np.ndarray, sigma: float) -> tuple[float, float]:
    """What a denoising took away (``src - out``, a central crop) against white noise of the diagnosed ``sigma``.

    Returns the removed layer's standard deviation over ``sigma`` (0-255 scale; the median of the three channels,
    about 0.6-1.0 when a denoiser removed noise of that strength) and the mean lag-1 correlation, across and down,
    of its luma (BT.601; about 0 for white noise; removed texture and edges are correlated). Luma, because a JPEG's
    4:2:0 chroma is stored at half resolution: noise saved so, as a camera does at quality 92-97, keeps white luma but
    correlated chroma (lag-1 over RGB 0.13-0.16, so the denoising of every noisy camera JPEG failed the check).
    Non-local means told a false noise diagnosis on a clean photo removes almost nothing (0.06-0.14 of the sigma it
    was told).

    >>> rng = np.random.default_rng(0)
    >>> clean = np.full((64, 64, 3), 0.5, np.float32)
    >>> noisy = clean + rng.normal(0, 10 / 255, clean.shape).astype(np.float32)
    >>> [abs(round(v, 1)) for v in removed_noise(noisy, clean, 10.0)]
    [1.0, 0.0]
    """
    res = (_crop(np.asarray(src, np.float32)) - _crop(np.asarray(out, np.float32))).astype(np.float64)
    ratio = float(np.median(res.reshape(-1, 3).std(axis=0))) * 255.0 / max(float(sigma), 1e-3)
    y = _luma(res)
    g = y - y.mean()
    lags = []
    for a, b in ((g[:, :-1], g[:, 1:]), (g[:-1], g[1:])):
        den = float(np.sqrt((a * a).sum() * (b * b).sum()))
        lags.append(float((a * b).sum()) / den if den > 0 else 0.0)
    return ratio, float(np.mean(lags))


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 in [0, 1]; the array itself when it already is (no whole-image copy of a large photo)."""
    x = np.asarray(x)
    if x.dtype == np.float32 and x.size and x.min() >= 0.0 and x.max() <= 1.0:
        return x
    return np.clip(np.asarray(x, np.float32), 0.0, 1.0)


def _global(f: dict, src: np.ndarray, out: np.ndarray) -> None:
    """Tone, colour and structure on the down-scaled view, plus what the source is like there."""
    ys, yo = _luma(src), _luma(out)
    ls, lo = _blur(ys, 2.0), _blur(yo, 2.0)
    f["tone_abs"] = float(np.mean(np.abs(lo - ls)))
    f["tone_mean"] = float(yo.mean() - ys.mean())
    f["contrast_lr"] = _lr(float(lo.std()), float(ls.std()))
    lab_s, lab_o = cv2.cvtColor(src, cv2.COLOR_RGB2Lab), cv2.cvtColor(out, cv2.COLOR_RGB2Lab)
    da = _blur(lab_o[..., 1] - lab_s[..., 1], 2.0)
    db = _blur(lab_o[..., 2] - lab_s[..., 2], 2.0)
    shift = np.hypot(da, db)
    f["chroma_abs"] = float(shift.mean())
    f["chroma_mean"] = float(np.hypot(da.mean(), db.mean()))
    sat_s = float(np.hypot(lab_s[..., 1], lab_s[..., 2]).mean())
    f["sat_lr"] = _lr(float(np.hypot(lab_o[..., 1], lab_o[..., 2]).mean()), sat_s)
    loc = _local_std(ys, 1.5)
    flat = loc <= np.percentile(loc, 30)
    f["flat_tone_abs"] = _masked_mean(np.abs(lo - ls), flat)
    f["flat_chroma_abs"] = _masked_mean(shift, flat)
    lo_s, lo_o, hi_s, hi_o = ys <= 1.5 / 255, yo <= 1.5 / 255, ys >= 253.5 / 255, yo >= 253.5 / 255
    f["clip_lo"] = float(np.mean(lo_o) - np.mean(lo_s))
    f["clip_hi"] = float(np.mean(hi_o) - np.mean(hi_s))
    black, white = _black_white(ys, f["src_noise"])
    f["crush_lo"] = float(np.mean(lo_o & ~black) - np.mean(lo_s & ~black))
    f["crush_hi"] = float(np.mean(hi_o & ~white) - np.mean(hi_s & ~white))
    f["structure"] = _structure(src, out)
    f["src_mean"] = float(ys.mean())
    f["src_p05"], f["src_p95"] = (float(v) for v in np.percentile(ys, [5, 95]))
    dark = cv2.erode(src.min(axis=2), np.ones((7, 7), np.uint8))
    f["src_dark"] = float(np.median(dark))
    f["src_contrast"] = float(ls.std())
    f["src_sat"] = sat_s


def _black_white(y: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Where a source luma ``y`` is black, and where white, allowing for its noise ``sigma`` (native resolution).

    Noise lifts a black background off 0 (clipped noise averages about 0.4 sigma) and a denoiser puts it back,
    where the clean image has it: that is restoration, not crushed shadows. ``crush_lo``/``crush_hi`` count new
    clipping only outside these masks (``clip_lo``/``clip_hi`` count it all). A pixel is black when its 3x3 median
    is within ``1.2 sigma + 3/255`` of 0 (sigma of the luma: independent noise in the channels reads about a third
    lower there); white likewise.

    >>> rng = np.random.default_rng(0)
    >>> clean = np.zeros((64, 64), np.float32); clean[:, 32:] = 0.5
    >>> noisy = np.clip(clean + rng.normal(0, 12 / 255, clean.shape), 0, 1).astype(np.float32)
    >>> black, white = _black_white(noisy, haar_sigma(noisy))
    >>> float(black[:, :32].mean()) > 0.95, bool(black[:, 33:].any()), bool(white.any())
    (True, False, False)
    """
    tau = 1.2 * sigma + 3 / 255
    med = cv2.medianBlur(y, 3)
    return med <= tau, med >= 1 - tau


@cache
def _noise_band_energy() -> tuple[float, float]:
    """Energy per pixel of unit white noise in the two finest bands of :func:`_bands`."""
    unit = np.random.default_rng(0).normal(0.0, 1.0, (256, 256)).astype(np.float32)
    b0, b1, _ = _bands(unit)
    return float(np.mean(b0 * b0)), float(np.mean(b1 * b1))


#: Blur (px) of the local means :func:`_tone_slope` reads the tone curve from, and the radius (px) of the windows it
#: fits the curve's slope in: a denoising or a smoothing of fine texture hardly moves means at this scale (a tenth of
#: white noise's std is left), a brightening or a dehazing moves them by its curve.
TONE_SLOPE_BLUR, TONE_SLOPE_RADIUS = 6.0, 16
#: Where the local means barely vary (variance below this), the slope falls back on the whole crop's.
TONE_SLOPE_EPS = 1e-5
#: Bounds of the tone curve's slope.
TONE_SLOPE_RANGE = (0.25, 8.0)


def _tone_slope(ys: np.ndarray, yo: np.ndarray) -> np.ndarray:
    """Per pixel, the slope of the tone curve that takes source luma ``ys`` to the restoration's ``yo``.

    A brightening or a dehazing multiplies fine detail by the curve's slope. The slope is the local linear
    regression of the restoration's local means on the source's (a guided filter's gain: windows of
    :data:`TONE_SLOPE_RADIUS` on means blurred by :data:`TONE_SLOPE_BLUR`), shrunk towards the whole crop's
    regression where the means barely vary (:data:`TONE_SLOPE_EPS`), so a dehazing's gain is read where its
    transmission is. About 1 where the restoration left the tone alone.

    >>> rng = np.random.default_rng(0)
    >>> y = cv2.GaussianBlur(rng.uniform(0.05, 0.3, (96, 96)).astype(np.float32), (0, 0), 4.0)
    >>> round(float(np.median(_tone_slope(y, y))), 2), round(float(np.median(_tone_slope(y, 3 * y))), 2)
    (1.0, 3.0)
    """
    from reasoner.measure.features import box_mean_std

    ms, mo = _blur(ys, TONE_SLOPE_BLUR), _blur(yo, TONE_SLOPE_BLUR)
    var_all = float(ms.var())
    whole = float(np.mean((ms - ms.mean()) * (mo - mo.mean())) / var_all) if var_all > 1e-6 else 1.0
    mean_s, std_s = box_mean_std(ms, TONE_SLOPE_RADIUS)
    mean_o, _ = box_mean_std(mo, TONE_SLOPE_RADIUS)
    cov = box_mean_std(ms * mo, TONE_SLOPE_RADIUS)[0] - mean_s * mean_o
    slope = (cov + TONE_SLOPE_EPS * whole) / (std_s * std_s + TONE_SLOPE_EPS)
    return np.clip(slope, *TONE_SLOPE_RANGE).astype(np.float32)


def tone_gain(src: np.ndarray, out: np.ndarray) -> float:
    """How many times the change of tone multiplied fine detail (both images ``float32 HxWx3`` in [0, 1]).

    The root-mean-square of :func:`_tone_slope` over the textured quarter of the central crop, where ``tex_kept``
    reads texture.

    >>> rng = np.random.default_rng(0)
    >>> dim = cv2.GaussianBlur(rng.uniform(0.0, 0.3, (128, 128, 3)).astype(np.float32), (0, 0), 2.0)
    >>> round(tone_gain(dim, dim), 2), round(tone_gain(dim, 3 * dim), 1)
    (1.0, 3.0)
    """
    ys, yo = _luma(_crop(_unit(src))), _luma(_crop(_unit(out)))
    loc = _local_std(ys)
    return float(np.sqrt(_masked_mean(_tone_slope(ys, yo) ** 2, loc >= np.percentile(loc, 75))))


#: How much stronger than read the source's noise may be where :func:`_texture_kept` still judges texture: where the
#: noise explains nearly all of the textured quarter's fine detail, what is left is a small difference of two large
#: energies, and a std read 5% low (clipped noise of std 50 on a cheetah crop, read 31.7 of 33.4 in luma) made its
#: clean image itself "waxy" (-2.2, the limit -0.5) and held back its denoising, 12 dB better than the input.
TEXTURE_SIGMA_SLACK = 1.1


def _unclipped_sigma(y: np.ndarray, sigma: float) -> float:
    """White noise std of luma ``y`` (0-1) read where clipping left it whole (0 where too little is left).

    Strong noise clipped at black and white is thinner in the darkest and brightest parts, and the finest Haar
    detail's median (:func:`~reasoner.common.haar_sigma`) reads it low: of Gaussian noise of std 50 (0-255) on a
    cheetah crop, 0.8 of the luma's. :func:`reasoner.measure.features.unclipped_noise_sigma` reads only blocks away
    from 0 and 1.
    """
    seen = unclipped_noise_sigma(np.repeat(y[..., None] * 255.0, 3, axis=2), sigma * 255.0)
    return 0.0 if seen is None else seen / 255.0


def _texture_kept(bs, bo, tex: np.ndarray, sigma: float) -> float:
    """Log ratio of the restoration's fine texture to the source's fine texture less its noise, in textured regions.

    Denoising rightly removes the noise's share of the two finest bands (``band0_tex_lr`` falls with it); what it
    removes beyond that is texture (fur, skin pores, foliage turned waxy). The noise's share is that of white noise
    at the source's noise level ``sigma``; 0 (no evidence) where noise of :data:`TEXTURE_SIGMA_SLACK` times that
    level would explain over three quarters of the source's texture energy. About 0 for the clean image of a noisy
    source; below it for an over-smoothed one.

    >>> rng = np.random.default_rng(1)
    >>> texture = cv2.GaussianBlur(rng.normal(0.5, 0.3, (128, 128)).astype(np.float32), (0, 0), 1.2)
    >>> noisy = texture + rng.normal(0, 0.02, texture.shape).astype(np.float32)
    >>> tex = np.ones(texture.shape, bool)
    >>> def kept(out): return _texture_kept(_bands(noisy), _bands(out), tex, haar_sigma(noisy))
    >>> abs(kept(texture)) < 0.2, kept(cv2.GaussianBlur(noisy, (0, 0), 1.5)) < -1.0
    (True, True)
    """
    n0, n1 = _noise_band_energy()
    es = _masked_mean(bs[0] ** 2 + bs[1] ** 2, tex)
    eo = _masked_mean(bo[0] ** 2 + bo[1] ** 2, tex)
    clean = es - (n0 + n1) * sigma * sigma
    if es - (n0 + n1) * (TEXTURE_SIGMA_SLACK * sigma) ** 2 < 0.25 * es:
        return 0.0
    return _lr(eo, clean)


def _autocorrelation(h: np.ndarray, lags: int) -> np.ndarray:
    """Normalised autocorrelation of ``h`` at offsets ``-lags..lags`` (rows: dy, columns: dx), 1 at the centre.

    Each offset is divided by its overlap (zero-padded DFT: no wrap-around), so far offsets are not shrunk.
    """
    rows, cols = h.shape
    padded = np.zeros((cv2.getOptimalDFTSize(rows + lags), cv2.getOptimalDFTSize(cols + lags)), np.float32)
    padded[:rows, :cols] = h - h.mean()
    spectrum = cv2.dft(padded, flags=cv2.DFT_COMPLEX_OUTPUT)
    a = cv2.idft(cv2.mulSpectrums(spectrum, spectrum, 0, conjB=True), flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    idx = np.r_[padded.shape[0] - lags : padded.shape[0], 0 : lags + 1]
    jdx = np.r_[padded.shape[1] - lags : padded.shape[1], 0 : lags + 1]
    off = np.abs(np.arange(-lags, lags + 1))
    a = a[np.ix_(idx, jdx)].astype(np.float64) * (rows * cols) / np.outer(rows - off, cols - off)
    return a / (a[lags, lags] + _EPS)


def _echo_rise(h: np.ndarray, lags: int = ECHO_LAGS, rays: int = ECHO_RAYS) -> np.ndarray:
    """Per direction, how far the autocorrelation of ``h`` climbs again after falling, going out from offset 0."""
    a = _autocorrelation(h, lags).astype(np.float32)
    ang = np.arange(rays) * np.pi / rays
    r = np.arange(1, lags + 1, dtype=np.float32)
    mx = (lags + np.cos(ang)[:, None] * r[None]).astype(np.float32)
    my = (lags + np.sin(ang)[:, None] * r[None]).astype(np.float32)
    profile = cv2.remap(a, mx, my, cv2.INTER_LINEAR)
    return (profile - np.minimum.accumulate(profile, axis=1)).max(axis=1)


def _echo(hs: np.ndarray, ho: np.ndarray) -> float:
    """Detail repeated at a distance where the source's detail does not repeat (ghost edges, rings); about 0 if none.

    The fine detail of a photo is correlated with itself only nearby: going out from offset 0 in any direction its
    autocorrelation falls and stays low (a periodic texture climbs again, in the source as well). A deconvolution
    with the wrong kernel copies every edge at the kernel's length (a line PSF too long: ghosts along the motion) or
    rings around it (a disk or Gaussian too wide), so the restoration's autocorrelation dips and climbs again at that
    offset. The statistic is the largest climb of the restoration's over the source's, along the same direction.
    Tone changes scale the detail and leave it unchanged; denoising and sharpening in step with the edges keep it low.

    >>> rng = np.random.default_rng(0)
    >>> y = cv2.GaussianBlur(rng.random((128, 128)).astype(np.float32), (0, 0), 2.0)
    >>> h = _bands(y)[0] + _bands(y)[1]
    >>> ghost = h + 0.8 * np.roll(h, 9, axis=1) + 0.6 * np.roll(h, 18, axis=1)
    >>> round(_echo(h, 2.0 * h), 3), _echo(h, ghost) > 0.3
    (0.0, True)
    """
    if min(hs.shape) < 2 * ECHO_LAGS + 8:
        return 0.0
    return float(np.max(_echo_rise(ho) - _source_rise(hs)))


#: The last few sources' :func:`_echo_rise`, by content: every attempt at an image is compared with the same source.
_SOURCE_RISE: dict[tuple, np.ndarray] = {}


def _source_rise(hs: np.ndarray) -> np.ndarray:
    return remembered(_SOURCE_RISE, content_key(hs), lambda: _echo_rise(hs))


#: A step of a posterised gradient: a jump of at least this many 8-bit levels between two flat runs (:func:`_steps`).
STEP_LEVELS = 2
#: The fewest changes between flat runs :func:`_steps` reads a share from (fewer: 0, nothing to read).
STEP_MIN_CHANGES = 24


def _steps(d: np.ndarray, mask: np.ndarray) -> float:
    """Of the changes between two flat runs, the share that jump :data:`STEP_LEVELS` 8-bit levels or more.

    ``d``: an 8-bit image's differences between horizontal neighbours, read within ``mask``: the staircase of a
    posterised gradient reads near 1. An 8-bit gradient climbs a level at a time, noise leaves no flat runs, and a
    plain area has few changes at all: none reads high.
    """
    between = np.zeros_like(mask)
    between[:, 1:-1] = (d[:, 1:-1] != 0) & (d[:, :-2] == 0) & (d[:, 2:] == 0)
    changes = between & mask
    n = int(changes.sum())
    if n < STEP_MIN_CHANGES:
        return 0.0
    big = np.zeros_like(mask)
    big[:, 1:-1] = np.abs(d[:, 1:-1]) >= STEP_LEVELS
    return float((big & changes).sum() / n)


def _local(f: dict, src: np.ndarray, out: np.ndarray) -> None:
    """Detail, ringing, blocking, noise and banding at native resolution on the central crop."""
    ys, yo = _luma(src), _luma(out)
    loc = _local_std(ys)
    flat = loc <= np.percentile(loc, 25)
    tex = loc >= np.percentile(loc, 75)
    bs, bo = _bands(ys), _bands(yo)
    for i, (a, b) in enumerate(zip(bs, bo, strict=True)):
        ea, eb = a * a, b * b
        f[f"band{i}_lr"] = _lr(float(eb.mean()), float(ea.mean()))
        f[f"band{i}_flat_lr"] = _lr(_masked_mean(eb, flat), _masked_mean(ea, flat))
        f[f"band{i}_tex_lr"] = _lr(_masked_mean(eb, tex), _masked_mean(ea, tex))
    f["src_noise"] = sigma = haar_sigma(ys)
    f["tex_kept"] = _texture_kept(bs, bo, tex, max(sigma, _unclipped_sigma(ys, sigma)))
    hs, ho = bs[0] + bs[1], bo[0] + bo[1]
    d = ho - hs
    # In step with the source's detail (sharpening, > 0) or not (noise removed, false texture: near 0 or < 0).
    f["hf_corr"] = float(np.sum(d * hs) / (np.sqrt(np.sum(d * d) * np.sum(hs * hs)) + _EPS))
    f["hf_gain"] = _lr(float(np.sum(ho * hs) ** 2), float(np.sum(hs * hs) ** 2)) / 2
    f["echo"] = _echo(hs, ho)
    # Ringing and halos: detail appearing a few pixels off strong edges, where the source is not textured.
    gx, gy = cv2.Sobel(ys, cv2.CV_32F, 1, 0), cv2.Sobel(ys, cv2.CV_32F, 0, 1)
    mag = np.hypot(gx, gy)
    edges = (mag >= max(np.percentile(mag, 95), 1e-3)).astype(np.uint8)
    dist = cv2.distanceTransform(1 - edges, cv2.DIST_L2, 3)
    near = (dist >= 2) & (dist <= 7) & ~tex
    f["ring_lr"] = _lr(_masked_mean(ho * ho, near), _masked_mean(hs * hs, near)) if near.sum() > 16 else 0.0
    k = np.ones((5, 5), np.uint8)
    over = np.maximum(yo - cv2.dilate(ys, k), 0) + np.maximum(cv2.erode(ys, k) - yo, 0)
    f["overshoot"] = float(over.mean())
    f["block_lr"] = _lr(_blockiness(yo), _blockiness(ys))
    f["noise_lr"] = _lr(haar_sigma(yo) ** 2, sigma**2)
    # Banding: smooth gradients of the source turned into flat steps (8-bit levels repeated along a row).
    smooth = (loc < np.percentile(loc, 40)) & (loc > 0.4 / 255)
    qs, qo = np.round(ys * 255), np.round(yo * 255)
    m = smooth[:, 1:]
    if m.sum() > 16:
        do = np.diff(qo, axis=1)
        zs = np.mean((np.diff(qs, axis=1) == 0)[m])
        zo = np.mean((do == 0)[m])
        f["poster_d"] = float(zo - zs)
        f["poster_steps"] = _steps(do, m)
    else:
        f["poster_d"] = f["poster_steps"] = 0.0
    gs = np.hypot(*np.gradient(_blur(ys, 1.0)))
    go = np.hypot(*np.gradient(_blur(yo, 1.0)))
    f["flat_grad_lr"] = _lr(_masked_mean(go * go, flat), _masked_mean(gs * gs, flat))
    f["src_block"] = _blockiness(ys)
    f["src_hf"] = float(np.log(float(np.mean(bs[0] ** 2)) + _EPS))
    f["src_edges"] = float(np.mean(mag > 0.1))


@cache
def measured_names() -> tuple[str, ...]:
    """The ``measure`` statistics the quality model also reads (of the source, and their change), in order."""
    from reasoner.measure.calibration import EXCLUDED
    from reasoner.measure.features import measure_all

    probe = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    return tuple(k for k in measure_all(probe) if k not in EXCLUDED)


def measured(image: np.ndarray) -> dict[str, float]:
    """The ``measure`` statistics of :func:`measured_names` for one image (what ``measure`` diagnoses from)."""
    from reasoner.measure.features import measure_all

    stats = measure_all(image)
    return {k: float(stats[k]) for k in measured_names()}


def statistic_names() -> tuple[str, ...]:
    """Every statistic the quality model reads: :data:`FEATURES`, then the source's and the change's measurements."""
    names = measured_names()
    return FEATURES + tuple(f"m_src_{k}" for k in names) + tuple(f"m_d_{k}" for k in names)


def quality_statistics(
    src: np.ndarray,
    out: np.ndarray,
    src_measured: dict[str, float] | None = None,
    out_measured: dict[str, float] | None = None,
) -> dict[str, float]:
    """All of :func:`statistic_names` for a restoration; pass the measurements when already made (saves time)."""
    stats = change_features(src, out)
    ms = src_measured if src_measured is not None else measured(src)
    mo = out_measured if out_measured is not None else measured(out)
    for k in measured_names():
        stats[f"m_src_{k}"] = float(np.nan_to_num(ms[k]))
        stats[f"m_d_{k}"] = float(np.nan_to_num(mo[k] - ms[k]))
    return stats


def _structure(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM's structure term of two low-passed lumas (local correlation, weighted by the first one's contrast)."""
    la, lb = _blur(_luma(a).astype(np.float64), 1.0), _blur(_luma(b).astype(np.float64), 1.0)
    ma, mb = _blur(la, 4.0), _blur(lb, 4.0)
    va = np.maximum(_blur(la * la, 4.0) - ma * ma, 0)
    vb = np.maximum(_blur(lb * lb, 4.0) - mb * mb, 0)
    corr = (_blur(la * lb, 4.0) - ma * mb) / np.sqrt(va * vb + 1e-10)
    w = np.sqrt(va)
    return 1.0 if w.sum() < 1e-6 else float(np.clip((corr * w).sum() / w.sum(), -1.0, 1.0))
