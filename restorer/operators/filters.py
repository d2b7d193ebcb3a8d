"""What several operators share: the image check, clipping, the noise estimate and opponent-colour non-local means.

Images are ``float32 HxWx3 RGB in [0, 1]``; noise levels are stds on the 0-255 scale.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from reasoner.common import as_rgb_float, haar_sigma
from reasoner.jpeg_cells import DCT8

# Orthonormal opponent colour basis (luma, red-blue, green-magenta): white RGB noise stays white with the same std,
# so one patch distance over the three channels sees noise of a known level. Offset and scale fit it into uint8.
OPPONENT = (np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]]) / np.sqrt([[3], [2], [6]])).astype(np.float32)
_OPP = OPPONENT
_OPP_OFFSET = np.array([0.0, 0.75, 0.85], np.float32)
_OPP_SCALE = 255.0 / 1.8  # luma spans [0, sqrt 3], chroma about +-0.8
_NLM_LUMA, _NLM_LUMA_SLOPE = 1.0, 0.08  # tuned: h / sigma for luma at sigma <= 10, less per octave above
_NLM_CHROMA, _NLM_CHROMA_SLOPE = 2.0, 0.4  # tuned: chroma takes a stronger filter


def as_image(img: np.ndarray) -> np.ndarray:
    """``img`` checked (:func:`reasoner.common.as_rgb_float`) as a new C-contiguous float32 array in [0, 1]."""
    return np.ascontiguousarray(as_rgb_float(img))


def clip01(x: np.ndarray) -> np.ndarray:
    """``x`` clipped to [0, 1] as float32 (a new array)."""
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)


def channel_min(x: np.ndarray) -> np.ndarray:
    """Per-pixel minimum over the channels of ``x`` (HxWxC -> HxW)."""
    return np.minimum.reduce([x[..., c] for c in range(x.shape[2])])


def estimate_noise(img: np.ndarray) -> float:
    """Std of white noise in ``img`` on the 0-255 scale, robust to texture.

    The finest diagonal Haar band holds mostly noise where the image is flat: its RMS over 8x8 blocks is a noise
    estimate per block, and the 10th percentile of those (times 1.1, the bias of that percentile) skips textured
    blocks. Accurate to about 10% for sigma 1-20 on the held-out photos.

    >>> estimate_noise(np.full((32, 32, 3), 0.5, np.float32))
    0.0
    """
    x = as_image(img)
    h, w = (x.shape[0] // 16) * 16, (x.shape[1] // 16) * 16
    if h == 0 or w == 0:
        return 0.0
    x = x[:h, :w]
    d = (x[0::2, 0::2] - x[1::2, 0::2] - x[0::2, 1::2] + x[1::2, 1::2]) / 2.0
    blocks = d.reshape(h // 16, 8, w // 16, 8, 3).transpose(0, 2, 4, 1, 3).reshape(-1, 64)
    per_block = np.sqrt(np.mean(blocks**2, axis=1))
    return float(np.percentile(per_block, 10) * 255.0 * 1.1)


def nlm_ratios(sigma: float) -> tuple[float, float]:
    """The tuned filter strengths ``h / sigma`` of :func:`nlm` for luma and chroma at noise ``sigma`` (0-255)."""
    octaves = min(max(math.log2(max(sigma, 1e-3) / 10.0), 0.0), 2.0)
    return _NLM_LUMA - _NLM_LUMA_SLOPE * octaves, _NLM_CHROMA - _NLM_CHROMA_SLOPE * min(octaves, 1.0)


def nlm(x: np.ndarray, sigma: float, luma: float | None = None, chroma: float | None = None) -> np.ndarray:
    """Joint non-local means (3x3 patches, 11x11 search) over the opponent channels, quantised to uint8.

    Args:
        x: float32 HxWx3 RGB in [0, 1] (not checked: callers pass checked images).
        sigma: noise std to remove, 0-255 scale.
        luma: filter strength ``h / sigma`` for luma; default the tuned one, easing off above sigma 10.
        chroma: the same for the two chroma channels.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    default_luma, default_chroma = nlm_ratios(sigma)
    luma = default_luma if luma is None else luma
    chroma = default_chroma if chroma is None else chroma
    s = sigma * _OPP_SCALE / 255.0
    z = (x @ _OPP.T + _OPP_OFFSET) * _OPP_SCALE
    u = np.clip(z + 0.5, 0, 255).astype(np.uint8)
    d = cv2.fastNlMeansDenoising(u, [luma * s, chroma * s, chroma * s], None, 3, 11, cv2.NORM_L2)
    d = d.astype(np.float32) + (z - u)  # put back what rounding to uint8 dropped: a light filter costs no precision
    return clip01((d / _OPP_SCALE - _OPP_OFFSET) @ _OPP)


#: :func:`dct_wiener`'s patch side and the step between patches (tuned on crops of the calibration photos under white
#: noise sigma 5-50, checked on the held-out ones: a step of 2 gained 0.05-0.1 dB more at 3x the time, 4 lost 0.1-0.2).
WIENER_PATCH, WIENER_STEP = 8, 3
#: Patch rows transformed at once (bounds the memory of a large tile: about 80 MB per band at 2048 px wide), and the
#: most patches the noise spectrum is read on (a regular subsample of a larger image).
_WIENER_BAND, _WIENER_SAMPLE = 96, 4096
#: The orthonormal 2-D DCT of a row-major flattened 8x8 patch: ``vec(C P C^T) = _DCT64 @ vec(P)`` (JPEG's transform).
_DCT64 = np.kron(DCT8, DCT8).astype(np.float32)
#: The finest DCT frequencies (u + v >= 10 of 14), where a patch holds mostly noise: the noise level is read there.
_FINEST = np.array([k for k in range(64) if k // 8 + k % 8 >= 10])
#: The median of a chi-square with one degree of freedom: a median of squared Gaussian coefficients over it is their
#: variance.
_CHI2_MEDIAN = 0.4549
#: A patch whose AC energy is below this is flat (clipped to black or white, a synthetic fill): it holds no noise, so
#: the noise spectrum is read without it, unless fewer than :data:`_LIVE_PATCHES` patches vary. A night photo more
#: than half black read a noise spectrum of zeros off its black, and the Wiener gain was 0 / 0 there: the denoiser
#: raised on NaN.
_FLAT_ENERGY, _LIVE_PATCHES = 1e-10, 16


def _patches(img: np.ndarray, rows: slice) -> np.ndarray:
    """The DCT coefficients of ``img``'s patches in patch rows ``rows``, one flattened patch per row.

    Patches of :data:`WIENER_PATCH` px, every :data:`WIENER_STEP` px.
    """
    n, step = WIENER_PATCH, WIENER_STEP
    win = np.lib.stride_tricks.sliding_window_view(img, (n, n))[::step, ::step][rows]
    return np.ascontiguousarray(win).reshape(-1, n * n) @ _DCT64.T


def _channel_spectrum(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The noise variance of each DCT coefficient of ``y``'s patches (one channel), read against the pilot ``p``.

    The larger of two robust readings (medians over patches, so that textured ones do not decide): the level at the
    finest frequencies, where a patch holds mostly noise, and each coefficient's own difference from the pilot. The
    first is the white noise's level; the second its shape where the noise is not white (a camera's demosaiced
    noise is coarser than its finest frequencies say).
    """
    n, step = WIENER_PATCH, WIENER_STEP
    rows = max(1, round(((y.shape[0] - n) // step + 1) * ((y.shape[1] - n) // step + 1) / _WIENER_SAMPLE))
    coef, pilot = _patches(y, slice(None, None, rows)), _patches(p, slice(None, None, rows))
    live = np.square(coef[:, 1:]).sum(axis=1) > _FLAT_ENERGY
    if live.sum() >= _LIVE_PATCHES:
        coef, pilot = coef[live], pilot[live]
    level = np.median(np.square(coef[:, _FINEST])) / _CHI2_MEDIAN
    return np.maximum(np.median(np.square(coef - pilot), axis=0) / _CHI2_MEDIAN, level).astype(np.float32)


def noise_spectrum(x: np.ndarray, pilot: np.ndarray) -> np.ndarray | None:
    """The noise variance of each 8x8 DCT coefficient per opponent channel of ``x`` (3 x 64), read against ``pilot``.

    What :func:`dct_wiener` filters with (see :func:`_channel_spectrum`); None for an image smaller than a patch.
    Read once on a large image's proxy crops, it is given to every tile.
    """
    if min(x.shape[:2]) < WIENER_PATCH:
        return None
    return np.stack([_channel_spectrum(y, p) for y, p in zip(_opponent(x), _opponent(pilot), strict=True)])


def _opponent(x: np.ndarray) -> np.ndarray:
    """``x``'s opponent channels, channel first (3 x H x W)."""
    return np.moveaxis(x @ _OPP.T, 2, 0)


def dct_wiener(
    x: np.ndarray,
    pilot: np.ndarray,
    dose: float = 1.0,
    *,
    spectrum: np.ndarray | None = None,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Empirical Wiener filtering of ``x`` in the DCT of overlapping patches, its spectrum read off ``pilot``.

    The second step of BM3D without the block matching (Dabov et al., 2007): a first estimate (the pilot, here
    non-local means) tells each patch's DCT coefficient how much of it is signal, ``P^2 / (P^2 + N)``, and that share
    of the *noisy* coefficient is kept. Non-local means averages away the fine texture it cannot match across its
    search window; the Wiener step gives it back from the noisy image where the pilot says there is some, and keeps
    smoothing flat areas. Patches overlap (:data:`WIENER_STEP`), and their estimates are averaged with BM3D's
    weights (the inverse of the kept energy: flat patches count more). Done in the opponent colour space, where
    white RGB noise stays white with the same std in each channel.

    The noise variance ``N`` is read from the image, per channel and coefficient (:func:`noise_spectrum`), not taken
    from the diagnosed sigma: noise the same in R, G and B (grey noise) lies in luma alone at sqrt(3) times its
    per-channel std, and a camera's demosaiced noise is not white. Over crops of the calibration photos with every
    zoo noise model at the true plan (held-out photos in brackets), it gained over non-local means alone: white
    Gaussian +0.91 (+0.74) dB, Poisson +0.73 (+0.48), grey +1.07 (+0.92), channel-correlated +0.62 (+0.84), camera
    -0.08 (-0.12).

    Args:
        x: the noisy image, float32 HxWx3 in [0, 1].
        pilot: a first estimate of the clean image, same shape.
        dose: multiplies the noise std read (the plan's strength: a gentler dose keeps more).
        spectrum: :func:`noise_spectrum` of the whole image (a tile of a large one); default read on ``x``.
        origin: ``x``'s top-left corner in the whole image: patches sit every :data:`WIENER_STEP` px from the whole
            image's corner, so a tile's core is filtered as the whole image's is.

    Returns:
        float32 HxWx3, not clipped; ``pilot`` itself for an image smaller than a patch or a dose of 0.

    >>> rng = np.random.default_rng(0)
    >>> clean = np.tile(np.linspace(0, 1, 48, dtype=np.float32), (48, 1))[..., None].repeat(3, axis=2)
    >>> noisy = clean + rng.normal(0, 0.1, clean.shape).astype(np.float32)
    >>> err = lambda a: float(np.sqrt(np.mean((a - clean) ** 2)))
    >>> err(noisy) > 0.09 and err(dct_wiener(noisy, clean)) < 0.04
    True

    """
    n, step = WIENER_PATCH, WIENER_STEP
    h, w = x.shape[:2]
    if min(h, w) < n or dose <= 0:
        return pilot.astype(np.float32, copy=True)
    top, left = origin[0] % step, origin[1] % step  # rows and columns before the whole image's grid
    pad = ((top, (-(top + h - n)) % step), (left, (-(left + w - n)) % step))
    out = np.empty_like(x)
    for c, (yc, pc) in enumerate(zip(_opponent(x), _opponent(pilot), strict=True)):
        noise = (_channel_spectrum(yc, pc) if spectrum is None else spectrum[c]) * np.float32(dose * dose)
        yp, pp = np.pad(yc, pad, mode="reflect"), np.pad(pc, pad, mode="reflect")
        na_all, nb = (yp.shape[0] - n) // step + 1, (yp.shape[1] - n) // step + 1
        acc, weight = np.zeros_like(yp), np.zeros_like(yp)
        for a0 in range(0, na_all, _WIENER_BAND):
            band = slice(a0, a0 + _WIENER_BAND)
            coef, power = _patches(yp, band), np.square(_patches(pp, band))
            total = power + noise  # 0 only where neither noise nor signal was read: nothing to remove, gain 1
            gain = np.divide(power, total, out=np.ones_like(total), where=total > 0)
            wt = 1.0 / np.maximum(np.einsum("ki,ki->k", gain, gain), 1e-3)
            na = len(wt) // nb
            est = (((gain * coef) @ _DCT64) * wt[:, None]).reshape(na, nb, n, n)
            wt = wt.reshape(na, nb).astype(np.float32)
            y0 = a0 * step
            for i in range(n):
                rows = slice(y0 + i, y0 + i + step * na, step)
                for j in range(n):
                    cols = slice(j, j + step * nb, step)
                    acc[rows, cols] += est[:, :, i, j]
                    weight[rows, cols] += wt
        out[..., c] = (acc / np.maximum(weight, 1e-12))[top : top + h, left : left + w]
    return (out @ _OPP).astype(np.float32, copy=False)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter: ``src`` (float32 HxW) smoothed edge-aware along ``guide`` (float32 HxW).

    Args:
        guide: the guidance image, float32 HxW.
        src: the image to filter, float32 HxW (or HxWxC with a single-channel guide: each channel alike).
        radius: box window radius in px.
        eps: regularisation on the guide's local variance (units of ``guide`` squared).

    Returns:
        float32 of ``src``'s shape.

    """
    size = (2 * radius + 1, 2 * radius + 1)

    def box(a):
        return cv2.boxFilter(a, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    g = guide if src.ndim == guide.ndim else guide[..., None]
    mean_i, mean_p = box(guide), box(src)
    if src.ndim != guide.ndim:
        mean_i = mean_i[..., None]
    cov = box(g * src) - mean_i * mean_p
    var = box(guide * guide) - box(guide) ** 2
    a = cov / ((var if src.ndim == guide.ndim else var[..., None]) + eps)
    b = mean_p - a * mean_i
    return box(a) * g + box(b)


#: :func:`clean_chroma`'s window radius (px) and the share of the source's chroma noise std taken for what non-local
#: means leaves as blotches (tuned on crops of the calibration photos under every zoo noise model and Gaussian sigma
#: 15 / 25 / 50: radius 8 or 16 and share 0.15 or 0.2 all gained 0.26-0.30 dB there, 0.10-0.12 on held-out photos;
#: a share of 0.3-0.5 gained more on average and lost up to 0.8 dB on saturated colour detail). The operators that
#: call it reach ``3 * CHROMA_RADIUS`` px further (nested windows), which the tiling overlap must cover.
CHROMA_RADIUS, CHROMA_SHARE = 8, 0.15


def chroma_noise(img: np.ndarray) -> tuple[float, float]:
    """Std (0-1 scale) of white noise in each chroma channel of the opponent basis, robust to texture.

    The finest diagonal Haar detail's median absolute deviation. Grey noise (the same in R, G and B) has none.

    >>> rng = np.random.default_rng(0)
    >>> grey = np.clip(0.5 + rng.normal(0, 0.05, (64, 64, 1)), 0, 1).repeat(3, axis=2).astype(np.float32)
    >>> chroma_noise(grey)
    (0.0, 0.0)

    """
    z = img @ OPPONENT.T
    sds = [haar_sigma(z[..., c]) for c in (1, 2)]
    return tuple(sd if sd > 1e-6 else 0.0 for sd in sds)  # below 1e-6: the basis's float rounding, not noise


def coarse_chroma_noise(img: np.ndarray, scale: int) -> tuple[float, float]:
    """:func:`chroma_noise` of ``img`` area-averaged ``scale`` times down, times ``scale``: colour noise at that scale.

    ``img``: float32 HxWx3 RGB (not checked, like :func:`chroma_noise`'s: callers pass checked images).

    White noise reads the same as at full size (averaging ``scale``² pixels divides its std by ``scale``); noise
    correlated over blocks of about ``scale`` px (JPEG's subsampled chroma, a camera's own noise reduction) reads
    up to ``scale`` times stronger than :func:`chroma_noise` finds it.

    >>> rng = np.random.default_rng(0)
    >>> fine = np.clip(0.5 + rng.normal(0, 0.04, (256, 256, 3)), 0, 1).astype(np.float32)
    >>> blocks = np.kron(rng.normal(0, 0.04, (64, 64, 3)), np.ones((4, 4, 1)))  # noise in 4 px blocks
    >>> coarse = np.clip(0.5 + blocks, 0, 1).astype(np.float32)
    >>> [round(v, 2) for v in coarse_chroma_noise(fine, 4)], [round(v, 2) for v in chroma_noise(coarse)]
    ([0.04, 0.04], [0.0, 0.0])
    >>> [round(v, 2) for v in coarse_chroma_noise(coarse, 4)]  # the blocks read as noise of std 4 x 0.04
    [0.15, 0.16]
    """
    small = cv2.resize(img, None, fx=1.0 / scale, fy=1.0 / scale, interpolation=cv2.INTER_AREA)
    c1, c2 = chroma_noise(small)
    return c1 * scale, c2 * scale


def clean_chroma(
    denoised: np.ndarray,
    noise: tuple[float, float],
    radius: int = CHROMA_RADIUS,
    share: float = CHROMA_SHARE,
    *,
    clip: bool = True,
) -> np.ndarray:
    """Remove the colour blotches non-local means leaves in ``denoised`` of a source whose chroma noise was ``noise``.

    Non-local means averages within an 11x11 search window, so strong colour noise comes back as pastel blotches of
    about that size (pink and green on a grey sky). Each chroma channel of the opponent basis is smoothed by a
    guided filter steered by the denoised luma (colour edges that follow luma edges stay), and the layer that
    smoothing would take away is removed only where it is as weak as the blotches can be, ``share`` of the source's
    chroma noise std (:func:`chroma_noise`): a per-pixel shrinkage, ``min(1, noise energy / layer energy)`` over
    the window, so stronger colour detail is kept, and grey noise leaves nothing to take. On crops of held-out
    photos under every zoo noise model, denoised with the true sigma: +0.12 dB on average, the worst crop -0.06.

    Args:
        denoised: float32 HxWx3 RGB in [0, 1], the non-local-means output.
        noise: the source's chroma noise stds (:func:`chroma_noise`, 0-1 scale).
        radius: guided filter window radius (px).
        share: the blotches' assumed std as a share of the source's chroma noise std.
        clip: clip the result to [0, 1]; False keeps values above 1 (a linear image before a tone curve's shoulder).

    Returns:
        float32 HxWx3 RGB, in [0, 1] when ``clip`` (a copy of ``denoised`` when there was no chroma noise).

    >>> flat = np.full((64, 64, 3), 0.5, np.float32)
    >>> bool(np.array_equal(clean_chroma(flat, (0.0, 0.0)), flat))
    True

    """
    energy = (share * np.asarray(noise, np.float32)) ** 2
    if not energy.any():
        return clip01(denoised) if clip else np.array(denoised, np.float32)
    z = denoised @ OPPONENT.T
    luma = np.ascontiguousarray(z[..., 0])
    size = (2 * radius + 1, 2 * radius + 1)
    # Channel by channel: guided_filter's two-channel form is slower (0.40 s against 0.23 s at 2048 px).
    for c in np.flatnonzero(energy):
        p = np.ascontiguousarray(z[..., 1 + c])
        layer = p - guided_filter(luma, p, radius, 1e-4)
        local = cv2.boxFilter(layer * layer, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)
        z[..., 1 + c] = p - np.minimum(1.0, energy[c] / (local + 1e-12)) * layer
    out = z @ OPPONENT  # a new array
    return clip01(out) if clip else out
