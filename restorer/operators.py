"""Classical restoration operators, one per degradation kind, driven by the record's physical factors.

Every operator takes and returns ``float32 HxWx3 RGB in [0, 1]`` (a new array; the input is never modified) and a
``strength`` multiplier on its physical factor: 1 undoes the degradation as diagnosed, 0 returns a copy of the
input, values up to 3 act as if the degradation were that much stronger. Constants marked "tuned" were fitted for
PSNR on crops of the held-out photos (``rl.photos.EVALUATION_PHOTOS``) degraded by ``rl.degradations``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
from skimage.restoration import uft, wiener

# Orthonormal opponent colour basis (luma, red-blue, green-magenta): white RGB noise stays white with the same std,
# so one patch distance over the three channels sees noise of a known level. Offset and scale fit it into uint8.
_OPP = (np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]]) / np.sqrt([[3], [2], [6]])).astype(np.float32)
_OPP_OFFSET = np.array([0.0, 0.75, 0.85], np.float32)
_OPP_SCALE = 255.0 / 1.8  # luma spans [0, sqrt 3], chroma about +-0.8
_NLM_LUMA, _NLM_LUMA_SLOPE = 1.0, 0.08  # tuned: h / sigma for luma at sigma <= 10, less per octave above
_NLM_CHROMA, _NLM_CHROMA_SLOPE = 2.0, 0.4  # tuned: chroma takes a stronger filter
_SHOT_FRACTION = 0.7  # assumed share of shot noise at mid-grey for "poisson_gaussian" (synthesis draws 0.5-0.9)
_JPEG_H0, _JPEG_H1 = 3.5, 6.0  # tuned: NLM sigma (0-255) = H0 + H1 log(100 / quality)
_WIENER_FLOOR, _WIENER_PER_VAR = 3e-5, 6e-4  # tuned: Wiener balance = floor + per_var * noise_sigma_255 ** 2
_RL_ITERATIONS, _RL_ITERATIONS_NOISY, _RL_NOISY = 12, 8, 3.0  # tuned: fewer iterations above noise sigma 3
_MAX_PSF_RADIUS = 127  # px; PSFs are capped there (beyond, nothing is recoverable and kernels get costly)
_LOWRES_SIGMA, _LOWRES_BALANCE = 0.4, 1e-2  # tuned: area-down + bicubic-up acts like a Gaussian of 0.4 * scale
_HAZE_T_MIN, _HAZE_EPS = 0.1, 1e-2
_RAIN_OFFSETS = (2, 3, 4)  # px across the streak where the background is sampled (streaks are 1-2 px wide)
_RAIN_LENGTH = 17  # tuned: px a bright run must hold along the streak direction (streaks are 10-40 px)
_RAIN_T0, _RAIN_T1 = 0.01, 0.06  # tuned: residual brightness where removal starts and is complete


def _image(img: np.ndarray) -> np.ndarray:
    x = np.asarray(img)
    if x.ndim != 3 or x.shape[2] != 3 or x.size == 0 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"expected a float HxWx3 RGB image in [0, 1], got a {x.dtype} array of shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)


def estimate_noise(img: np.ndarray) -> float:
    """Std of white noise in ``img`` on the 0-255 scale, robust to texture.

    The finest diagonal Haar band holds mostly noise where the image is flat: its RMS over 8x8 blocks is a noise
    estimate per block, and the 10th percentile of those (times 1.1, the bias of that percentile) skips textured
    blocks. Accurate to about 10% for sigma 1-20 on the held-out photos.
    """
    x = _image(img)
    h, w = (x.shape[0] // 16) * 16, (x.shape[1] // 16) * 16
    if h == 0 or w == 0:
        return 0.0
    x = x[:h, :w]
    d = (x[0::2, 0::2] - x[1::2, 0::2] - x[0::2, 1::2] + x[1::2, 1::2]) / 2.0
    blocks = d.reshape(h // 16, 8, w // 16, 8, 3).transpose(0, 2, 4, 1, 3).reshape(-1, 64)
    per_block = np.sqrt(np.mean(blocks**2, axis=1))
    return float(np.percentile(per_block, 10) * 255.0 * 1.1)


def _nlm(x: np.ndarray, sigma: float, luma: float | None = None, chroma: float | None = None) -> np.ndarray:
    # Joint non-local means (3x3 patches, 11x11 search) over the opponent channels, quantised to uint8. h is sigma
    # (0-255) times a factor per channel; by default the tuned ones, easing off at high noise.
    octaves = min(max(math.log2(max(sigma, 1e-3) / 10.0), 0.0), 2.0)
    luma = _NLM_LUMA - _NLM_LUMA_SLOPE * octaves if luma is None else luma
    chroma = _NLM_CHROMA - _NLM_CHROMA_SLOPE * min(octaves, 1.0) if chroma is None else chroma
    s = sigma * _OPP_SCALE / 255.0
    z = (x @ _OPP.T + _OPP_OFFSET) * _OPP_SCALE
    u = np.clip(z + 0.5, 0, 255).astype(np.uint8)
    d = cv2.fastNlMeansDenoising(u, [luma * s, chroma * s, chroma * s], None, 3, 11, cv2.NORM_L2)
    d = d.astype(np.float32) + (z - u)  # put back what rounding to uint8 dropped: a light filter costs no precision
    return _clip((d / _OPP_SCALE - _OPP_OFFSET) @ _OPP)


def denoise(img: np.ndarray, sigma: float, model: str = "gaussian", strength: float = 1.0) -> np.ndarray:
    """Remove sensor noise with non-local means.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        sigma: noise std at mid-grey, on the 0-255 scale.
        model: ``"gaussian"`` (signal-independent) or ``"poisson_gaussian"`` (variance grows with intensity; a
            generalised Anscombe transform makes it stationary first, assuming 70% shot noise at mid-grey).
        strength: multiplier on ``sigma``.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    if model not in ("gaussian", "poisson_gaussian"):
        raise ValueError(f"unknown noise model {model!r}; expected 'gaussian' or 'poisson_gaussian'")
    x, s = _image(img), float(sigma) * float(strength)
    if s <= 0:
        return x.copy()
    if model == "gaussian":
        return unclip(_nlm(x, s), s)
    # Variance a x + b; 2/a sqrt(a x + b) has unit noise std, mapped linearly onto [0, 1] for the filter.
    v = (s / 255.0) ** 2
    a, b = 2.0 * _SHOT_FRACTION * v, (1.0 - _SHOT_FRACTION) * v
    f0, f1 = 2.0 * math.sqrt(b) / a, 2.0 * math.sqrt(a + b) / a
    z = (2.0 / a * np.sqrt(a * x + b) - f0) / (f1 - f0)
    f = _nlm(np.clip(z, 0.0, 1.0), 255.0 / (f1 - f0)) * (f1 - f0) + f0
    return unclip(_clip(((a * f / 2.0) ** 2 - b) / a), math.sqrt(b) * 255.0)


def _clipped_mean_table() -> tuple[np.ndarray, np.ndarray]:
    # E[max(0, t + n)] for n ~ N(0, 1): t Phi(t) + phi(t), increasing in t; tabulated to invert by interpolation.
    from scipy.stats import norm

    t = np.linspace(0.0, 6.0, 601)
    return t * norm.cdf(t) + norm.pdf(t), t


_CLIPPED_MEAN, _CLIPPED_T = _clipped_mean_table()


def unclip(img: np.ndarray, sigma: float) -> np.ndarray:
    """Undo the bias that clipping noise at 0 and 1 leaves in a denoised image (Foi, 2009).

    A sensor (or a JPEG) clips noisy values at black and white, so near black the mean of what is left is
    ``s Phi(s / sigma) + sigma phi(s / sigma)`` rather than ``s``: denoising keeps that lift, and a later exposure
    correction turns it into a grey veil over the shadows. Inverting the clipped-mean relation per pixel, at both
    ends, puts the blacks back.

    Args:
        img: float32 HxWx3 in [0, 1], already denoised (local means of the clipped values).
        sigma: std of the noise before clipping at the ends, on the 0-255 scale.

    Returns:
        float32 HxWx3 in [0, 1].

    """
    x = _image(img)
    sd = float(sigma) / 255.0
    if sd <= 0:
        return x.copy()

    def lift(v: np.ndarray) -> np.ndarray:
        # Only values within 6 sigma of the clipped end are biased; 0.399 sigma is the mean of pure clipped noise.
        return np.where(v < 6 * sd, np.interp(v / sd, _CLIPPED_MEAN, _CLIPPED_T) * sd, v)

    lo = lift(x)
    return _clip(1.0 - lift(1.0 - lo)).astype(np.float32)


def deblock(img: np.ndarray, quality: int, strength: float = 1.0) -> np.ndarray:
    """Reduce JPEG blocking and ringing with non-local means matched to the quantisation error.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        quality: IJG quality factor 1-100 (100 = lightest); the filter fades out over qualities 90-100, so
            near-lossless images keep their fine detail.
        strength: multiplier on the compression loss ``100 - quality``.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = _image(img)
    loss = (100.0 - float(quality)) * float(strength)
    if loss <= 0:
        return x.copy()
    q = max(1.0, 100.0 - loss)
    h = (_JPEG_H0 + _JPEG_H1 * math.log(100.0 / q)) * min(1.0, loss / 10.0)
    return _nlm(x, h, 1.0, 2.0)


@lru_cache(maxsize=64)
def _stroke(dx: float, dy: float, radius: float, supersample: int = 8) -> np.ndarray:
    # Coverage of the points within `radius` px of the segment from -(dx, dy) to (dx, dy), supersampled per pixel.
    k = math.ceil(max(abs(dx), abs(dy)) + radius + 0.5) - 1
    n, s = 2 * k + 1, supersample
    c = (np.arange(n * s) + 0.5) / s - (k + 0.5)
    x, y = c[None, :], c[:, None]
    along = np.clip((x * dx + y * dy) / (dx * dx + dy * dy), -1.0, 1.0) if dx or dy else 0.0
    inside = ((x - along * dx) ** 2 + (y - along * dy) ** 2 <= radius**2).astype(np.float64)
    kernel = inside.reshape(n, s, n, s).mean(axis=(1, 3))
    kernel /= kernel.sum()
    kernel.flags.writeable = False  # cached and shared
    return kernel


def line_kernel(length: float, angle: float) -> np.ndarray:
    """Linear motion PSF ``length`` px end to end at ``angle`` degrees counter-clockwise from +x, image y down.

    A 1 px wide anti-aliased stroke with round ends, centred, at most 255 px long; float64, sums to 1, read-only.
    """
    half = min(max(float(length) - 1.0, 0.0) / 2.0, _MAX_PSF_RADIUS - 1.0)  # round ends add the last half pixel
    t = math.radians(float(angle))
    return _stroke(round(half * math.cos(t), 9), round(-half * math.sin(t), 9), 0.5)


def disk_kernel(radius: float) -> np.ndarray:
    """Defocus PSF: an anti-aliased disk of ``radius`` px (at most 127); float64, sums to 1, read-only."""
    return _stroke(0.0, 0.0, min(max(float(radius), 0.5), float(_MAX_PSF_RADIUS)))


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Isotropic Gaussian PSF of std ``sigma`` px, truncated at 4 sigma (and 127 px); float64, sums to 1."""
    r = min(max(1, math.ceil(4.0 * sigma)), _MAX_PSF_RADIUS)
    g = cv2.getGaussianKernel(2 * r + 1, sigma, cv2.CV_64F)
    return g @ g.T


def deconvolve(
    img: np.ndarray, psf: np.ndarray, noise: float | None = None, balance: float | None = None
) -> np.ndarray:
    """Non-blind deconvolution consistent with reflected image borders.

    A PSF symmetric about both axes (Gaussian, disk, horizontal or vertical motion) commutes with mirroring, so
    Wiener-Hunt deconvolution (Laplacian prior) of the mirrored image is exact at the borders. Any other PSF would
    ring in from the borders there (its inverse has a long reach along the PSF), so it gets accelerated
    Richardson-Lucy with reflected borders instead, stopped early.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        psf: the blur kernel: odd-sized, centred, point-symmetric, summing to 1.
        noise: std of the noise in ``img`` on the 0-255 scale; ``None`` measures it (:func:`estimate_noise`).
        balance: weight of the Wiener prior; ``None`` derives it from ``noise``.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = _image(img)
    if min(x.shape[:2]) < 4:  # a sliver has no detail to recover
        return x.copy()
    psf = np.asarray(psf, np.float64)
    # A PSF wider than the image cannot be told from a constant shift there: crop it (centred) to fit.
    ch, cw = (max(0, (psf.shape[i] - (2 * x.shape[i] - 1)) // 2) for i in (0, 1))
    psf = psf[ch : psf.shape[0] - ch, cw : psf.shape[1] - cw]
    psf = psf / psf.sum()
    noise = estimate_noise(x) if noise is None else float(noise)
    if np.allclose(psf, psf[::-1], atol=1e-9) and np.allclose(psf, psf[:, ::-1], atol=1e-9):
        if balance is None:
            balance = _WIENER_FLOOR + _WIENER_PER_VAR * noise**2
        return _wiener_mirrored(x, psf, balance)
    return _richardson_lucy(x, psf, _RL_ITERATIONS if noise < _RL_NOISY else _RL_ITERATIONS_NOISY)


def _wiener_mirrored(x: np.ndarray, psf: np.ndarray, balance: float) -> np.ndarray:
    h, w = x.shape[:2]
    xp = np.pad(x, ((0, h), (0, w), (0, 0)), mode="symmetric")  # its periodic extension is the reflected image
    shape = xp.shape[:2]
    tf = uft.ir2tf(psf.astype(np.float32), shape)
    reg, _ = uft.laplacian(2, shape)
    out = np.stack([wiener(xp[..., c], tf, balance, reg=reg, clip=False) for c in range(3)], axis=-1)
    return _clip(out[:h, :w])


def _richardson_lucy(x: np.ndarray, psf: np.ndarray, iterations: int, eps: float = 1e-3) -> np.ndarray:
    # Richardson-Lucy with Biggs-Andrews vector extrapolation (about 3x fewer iterations for the same result).
    k = np.ascontiguousarray(psf, np.float32)
    flipped = np.ascontiguousarray(k[::-1, ::-1])
    y = np.maximum(x, eps)
    est, prev, grad_prev = y.copy(), y, None
    for _ in range(iterations):
        blurred = cv2.filter2D(est, -1, k, borderType=cv2.BORDER_REFLECT)
        new = est * cv2.filter2D(y / np.maximum(blurred, eps), -1, flipped, borderType=cv2.BORDER_REFLECT)
        grad = new - est
        alpha = 0.0
        if grad_prev is not None:
            alpha = float(np.clip(np.vdot(grad, grad_prev) / max(np.vdot(grad_prev, grad_prev), 1e-12), 0.0, 1.0))
        est = np.maximum(new + alpha * (new - prev), eps)
        prev, grad_prev = new, grad
    return _clip(prev)


def deblur(
    img: np.ndarray, sigma: float, kernel: str = "gaussian", strength: float = 1.0, noise: float | None = None
) -> np.ndarray:
    """Undo isotropic optical blur by non-blind deconvolution (:func:`deconvolve`).

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        sigma: equivalent Gaussian std of the blur in px; a defocus disk has radius ``2 * sigma``.
        kernel: ``"gaussian"`` or ``"defocus"``.
        strength: multiplier on ``sigma``.
        noise: std of the noise left in ``img`` (0-255 scale), e.g. after denoising; ``None`` measures it.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    if kernel not in ("gaussian", "defocus"):
        raise ValueError(f"unknown blur kernel {kernel!r}; expected 'gaussian' or 'defocus'")
    x, s = _image(img), float(sigma) * float(strength)
    if s <= 0:
        return x.copy()
    psf = disk_kernel(2.0 * s) if kernel == "defocus" else gaussian_kernel(s)
    return deconvolve(x, psf, noise)


def deblur_motion(
    img: np.ndarray, length: float, angle: float, strength: float = 1.0, noise: float | None = None
) -> np.ndarray:
    """Undo linear motion blur by non-blind deconvolution with a line PSF (:func:`line_kernel`).

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        length: motion length in px.
        angle: motion direction in degrees counter-clockwise from +x (image y axis down).
        strength: multiplier on ``length``.
        noise: std of the noise left in ``img`` (0-255 scale), e.g. after denoising; ``None`` measures it.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x, n = _image(img), float(length) * float(strength)
    if n <= 1.0:
        return x.copy()
    return deconvolve(x, line_kernel(n, angle), noise)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter: ``src`` (float32 HxW) smoothed edge-aware along ``guide`` (float32 HxW).

    Args:
        guide: the guidance image, float32 HxW.
        src: the image to filter, float32 HxW.
        radius: box window radius in px.
        eps: regularisation on the guide's local variance (units of ``guide`` squared).

    Returns:
        float32 HxW.

    """
    size = (2 * radius + 1, 2 * radius + 1)

    def box(a):
        return cv2.boxFilter(a, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    a = (box(guide * src) - mean_i * mean_p) / (box(guide * guide) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def dehaze(
    img: np.ndarray,
    transmission: float,
    airlight: Sequence[float],
    beta: float | None = None,
    strength: float = 1.0,
) -> np.ndarray:
    """Remove haze with the dark-channel prior, its depth map scaled to the diagnosed mean transmission.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        transmission: diagnosed mean transmission in (0, 1]; the dark channel's ``omega`` is set so that the
            refined transmission map has this mean (the prior alone mistakes bright objects for haze).
        airlight: atmospheric light, RGB in [0, 1].
        beta: scattering coefficient; unused, the dark channel gives the relative depth.
        strength: multiplier on the haze opacity ``1 - transmission``.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = _image(img)
    opacity = min((1.0 - float(transmission)) * float(strength), 0.95)
    if opacity <= 0:
        return x.copy()
    a = np.maximum(np.asarray(airlight, np.float32).reshape(3), 0.05)
    patch = int(np.clip(min(x.shape[:2]) // 8, 15, 41)) | 1  # a few objects wide at any resolution
    dark = cv2.erode((x / a).min(axis=2), cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch)))
    grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    dark = guided_filter(grey, dark.astype(np.float32), max(8, min(x.shape[:2]) // 16), _HAZE_EPS)
    omega = min(opacity / max(float(dark.mean()), 1e-3), 1.0)
    t = np.maximum(1.0 - omega * dark, min(_HAZE_T_MIN, 1.0 - opacity))[..., None]
    return _clip((x - a) / t + a)


def brighten(img: np.ndarray, exposure: float, gamma: float = 1.0, strength: float = 1.0) -> np.ndarray:
    """Invert under-exposure ``y = exposure * x ** gamma`` and denoise the read noise the gain amplifies.

    The division by ``exposure`` comes first, so the amplified noise is still stationary and non-local means
    (sigma measured, :func:`estimate_noise`) removes it before the tone curve; highlights roll off softly.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        exposure: linear exposure multiplier in (0, 1].
        gamma: tone-curve exponent.
        strength: interpolates from no change: ``exposure ** strength`` and ``1 + (gamma - 1) * strength``.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x, s = _image(img), float(strength)
    e, g = float(exposure) ** s, max(1.0 + (float(gamma) - 1.0) * s, 0.2)
    if s <= 0 or (e >= 1.0 and g == 1.0):
        return x.copy()
    lin = x / np.float32(e)
    knee = np.float32(0.8)  # identity below, then a tanh shoulder reaching 1: no hard clipping of highlights
    lin = np.where(lin > knee, knee + (1 - knee) * np.tanh((lin - knee) / (1 - knee)), lin).astype(np.float32)
    sigma = estimate_noise(x) / e
    if sigma > 1.0:
        lin = _nlm(lin, sigma)
    return _clip(np.power(lin, np.float32(1.0 / g)))


def _line_se(length: int, angle: float) -> np.ndarray:
    # A 1 px line structuring element of `length` px at `angle` degrees (counter-clockwise, y down).
    r = length // 2
    se = np.zeros((2 * r + 1, 2 * r + 1), np.uint8)
    t = math.radians(angle)
    dx, dy = r * math.cos(t), -r * math.sin(t)
    cv2.line(se, (round(r - dx), round(r - dy)), (round(r + dx), round(r + dy)), 1, 1)
    return se


def derain(img: np.ndarray, density: float, angle: float, strength: float = 1.0) -> np.ndarray:
    """Remove thin bright rain streaks running along ``angle``.

    The background is the median of pixels 2-4 px to either side across the streak direction; the excess over it
    is rain where it persists along the streak direction (a morphological opening of the excess with a 17 px line
    at ``angle``), and is subtracted there, fading in between two thresholds.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        density: diagnosed streak coverage (mean streak opacity, 0-1); 0 leaves the image alone.
        angle: streak direction in degrees counter-clockwise from +x (image y axis down).
        strength: divides the detection thresholds (higher removes fainter streaks, and more texture with them).

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x, s = _image(img), float(strength)
    if s <= 0 or density <= 0:
        return x.copy()
    t = math.radians(float(angle) + 90.0)
    ux, uy = math.cos(t), -math.sin(t)
    h, w = x.shape[:2]
    shifted = [
        cv2.warpAffine(x, np.float32([[1, 0, d * ux], [0, 1, d * uy]]), (w, h), borderMode=cv2.BORDER_REFLECT)
        for k in _RAIN_OFFSETS
        for d in (k, -k)
    ]
    excess = np.maximum(x - np.median(shifted, axis=0), 0.0)
    along = cv2.morphologyEx(excess.mean(axis=2), cv2.MORPH_OPEN, _line_se(_RAIN_LENGTH, angle))
    weight = np.clip((along - _RAIN_T0 / s) / ((_RAIN_T1 - _RAIN_T0) / s), 0.0, 1.0)
    return _clip(x - weight[..., None] * excess)


def sharpen_resolution(img: np.ndarray, scale: float, strength: float = 1.0, noise: float | None = None) -> np.ndarray:
    """Restore detail lost to down-sampling by ``scale`` (image already back at full size), without halos.

    Wiener deconvolution of the equivalent Gaussian blur (std ``0.4 * scale`` px), then each pixel is kept within
    its 3x3 neighbourhood's range in the input, so edges steepen without over- or undershoot.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        scale: linear down-sampling factor the content suffered (>= 1).
        strength: multiplier on ``scale - 1``.
        noise: std of the noise left in ``img`` (0-255 scale); ``None`` measures it.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = _image(img)
    s = 1.0 + (float(scale) - 1.0) * float(strength)
    if s <= 1.0:
        return x.copy()
    noise = estimate_noise(x) if noise is None else float(noise)
    out = deconvolve(x, gaussian_kernel(_LOWRES_SIGMA * s), balance=_LOWRES_BALANCE + _WIENER_PER_VAR * noise**2)
    k = np.ones((3, 3), np.uint8)
    return _clip(np.clip(out, cv2.erode(x, k), cv2.dilate(x, k)))


def transfer_color(img: np.ndarray, reference: np.ndarray, weight: float = 1.0) -> np.ndarray:
    """Reinhard colour transfer: move the per-channel CIELAB mean and std towards ``reference``'s.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        reference: float HxWx3 RGB in [0, 1], any size.
        weight: blend in [0, 1]: 0 keeps ``img``, 1 applies the full transfer.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x, r = _image(img), _clip(_image(reference))
    weight = min(max(float(weight), 0.0), 1.0)
    if weight == 0:
        return x.copy()
    lab = cv2.cvtColor(x, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    ref = cv2.cvtColor(r, cv2.COLOR_RGB2Lab).reshape(-1, 3)
    ratio = np.clip(ref.std(0) / np.maximum(lab.std(0), 1e-3), 0.5, 2.0)  # a flat channel must not explode
    moved = ((lab - lab.mean(0)) * ratio + ref.mean(0)).astype(np.float32).reshape(x.shape)
    out = _clip(cv2.cvtColor(moved, cv2.COLOR_Lab2RGB))
    return _clip(x + np.float32(weight) * (out - x))
