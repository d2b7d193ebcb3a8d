"""Non-blind deconvolution regularised by the error in the image: what the low-pass operators share.

Constants marked "tuned" were fitted for PSNR on crops of the calibration photos (``rl.photos.CALIBRATION_PHOTOS``)
degraded by ``rl.degradations`` and by AgenticIR-style mixtures (noise, JPEG, low resolution after the blur).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import cv2
import numpy as np
from scipy import fft, signal

from restorer.operators.filters import OPPONENT, as_image, clip01, estimate_noise

#: Wiener balance = WIENER_FLOOR + WIENER_PER_VAR * error_sigma_255 ** 2 (tuned).
WIENER_FLOOR, WIENER_PER_VAR = 3e-5, 6e-4
#: The chroma channels take this many times the luma balance (tuned): JPEG keeps chroma at half resolution, and
#: colour detail is coarse in photos, so deconvolving chroma mostly amplifies blocks and noise.
CHROMA_BALANCE = 4.0
#: Richardson-Lucy (PSFs that are not mirror-symmetric) runs RL_ITERATIONS / (1 + (error / RL_SIGMA) ** 2) (tuned:
#: 12 iterations gain 1 dB more with the exact kernel, 8 lose 1.5 dB less with one 50% too long and 0.4 dB less on
#: AgenticIR's one-sided trails, which a line PSF does not model).
RL_ITERATIONS, RL_SIGMA = 8, 16.0
#: Stability guard: a correction whose std exceeds GUARD_RATIO times the input's is scaled down to that, and one
#: that pushes more than GUARD_SHARE of the pixels GUARD_OVER beyond [0, 1] is scaled down in proportion (correct
#: kernels stay within both on the calibration crops; a kernel several times too wide breaks one or both).
GUARD_RATIO, GUARD_SHARE, GUARD_OVER = 2.0, 0.02, 0.1
#: JPEG error std (0-255) a deblocked image still holds at quality q: JPEG_ERR0 + JPEG_ERR1 * ln(100 / q) (tuned).
JPEG_ERR0, JPEG_ERR1 = 2.2, 2.7


class GuardTally:
    """The stability guard's statistics over a whole image, gathered from tiles, so every tile is guarded alike.

    Inside :func:`image_wide_guard`, :func:`deconvolve` first adds each tile's correction to the tally (and guards
    nothing); once :meth:`freeze` has fixed the scale, it applies that one scale to every tile instead of judging
    each tile alone (a per-tile guard would scale neighbouring tiles differently: a seam). Tiles may overlap; the
    overlap counts twice, which a guard threshold tolerates.
    """

    def __init__(self) -> None:
        self.n = 0
        self.sums = np.zeros(5)  # sum d, sum d^2, sum x, sum x^2, count beyond the over-range margin
        self.scale: float | None = None

    def add(self, out: np.ndarray, x: np.ndarray) -> None:
        """Count one tile's unguarded result ``out`` of input ``x``."""
        d = (out - x).astype(np.float64)
        over = (out < -GUARD_OVER) | (out > 1.0 + GUARD_OVER)
        self.sums += [d.sum(), np.square(d).sum(), x.sum(dtype=np.float64), np.square(x, dtype=np.float64).sum(),
                      over.sum()]  # fmt: skip
        self.n += d.size

    def freeze(self) -> float:
        """Fix and return the guard scale (1: no scaling) from what was added."""
        if self.n == 0:
            self.scale = 1.0
            return self.scale
        sd, sd2, sx, sx2, over = self.sums / self.n
        ratio = math.sqrt(max(sd2 - sd * sd, 0.0)) / (math.sqrt(max(sx2 - sx * sx, 0.0)) + 1e-3)
        self.scale = min(1.0, GUARD_RATIO / max(ratio, 1e-6), GUARD_SHARE / max(over, 1e-6))
        return self.scale


_TALLY: ContextVar[GuardTally | None] = ContextVar("deconvolution_guard_tally", default=None)


@contextmanager
def image_wide_guard(tally: GuardTally) -> Iterator[GuardTally]:
    """Within this block :func:`deconvolve` feeds or applies ``tally`` (see :class:`GuardTally`)."""
    token = _TALLY.set(tally)
    try:
        yield tally
    finally:
        _TALLY.reset(token)


def combine_psfs(parts: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """The PSF of blurs applied one after the other: ``(psf, weight)`` pairs, a weight below 1 mixing in identity.

    A weight ``w < 1`` (a detection not certain enough to act on in full) stands for the expected PSF
    ``w * psf + (1 - w) * delta``, which keeps the combined inverse gentle where that blur may not exist.

    >>> k = combine_psfs([(np.ones((3, 3)) / 9, 1.0), (np.ones((1, 3)) / 3, 1.0)])
    >>> k.shape, round(float(k.sum()), 6)
    ((5, 5), 1.0)
    """
    out = np.ones((1, 1))
    for psf, weight in parts:
        k = np.asarray(psf, np.float64)
        k = k / k.sum()
        w = min(max(float(weight), 0.0), 1.0)
        if w < 1.0:
            k = w * k
            k[k.shape[0] // 2, k.shape[1] // 2] += 1.0 - w
        out = _trim(signal.convolve2d(_square(out), _square(k), mode="full"))
    return out / out.sum()


def _square(k: np.ndarray) -> np.ndarray:
    # Pad a kernel with zeros to an odd square, centred (so full convolutions stay centred).
    n = max(k.shape) | 1
    ph, pw = (n - k.shape[0]) // 2, (n - k.shape[1]) // 2
    return np.pad(k, ((ph, n - k.shape[0] - ph), (pw, n - k.shape[1] - pw)))


def _trim(k: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    # Drop border rings that hold (almost) nothing, keeping the kernel odd-sized and centred.
    while k.shape[0] > 1 and k[[0, -1], :].sum() + k[:, [0, -1]].sum() < tol * k.sum():
        k = k[1:-1, 1:-1]
    return k


def compression_error(quality: float | None) -> float:
    """Std (0-255) of the JPEG error left at IJG ``quality`` (None or 100: none), as white noise for the regulariser.

    >>> compression_error(None), round(compression_error(10), 1)
    (0.0, 8.4)
    """
    if quality is None or quality >= 100:
        return 0.0
    return JPEG_ERR0 + JPEG_ERR1 * math.log(100.0 / max(float(quality), 1.0))


def error_sigma(noise: float | None, quality: float | None, img: np.ndarray | None = None) -> float:
    """Std (0-255) of the error a deconvolution must not amplify: noise left in the image and JPEG error combined.

    ``noise`` None measures it on ``img`` (:func:`~restorer.operators.filters.estimate_noise`).
    """
    if noise is None:
        noise = estimate_noise(img) if img is not None else 0.0
    return math.hypot(float(noise), compression_error(quality))


def deconvolve(
    img: np.ndarray,
    psf: np.ndarray,
    noise: float | None = None,
    balance: float | None = None,
    *,
    quality: float | None = None,
    strength: float = 1.0,
    keep: np.ndarray | None = None,
) -> np.ndarray:
    """Non-blind deconvolution regularised by the error in the image (noise, JPEG), consistent with reflected borders.

    A PSF symmetric about both axes (Gaussian, disk, horizontal or vertical motion) commutes with mirroring, so
    Wiener-Hunt deconvolution (Laplacian prior, weight from :func:`error_sigma`) of the mirrored image is exact at
    the borders; it runs in an opponent colour space with chroma regularised :data:`CHROMA_BALANCE` times harder.
    Any other PSF would ring in from the borders there (its inverse has a long reach along the PSF), so it gets
    accelerated Richardson-Lucy with reflected borders instead, stopped the earlier the more error there is.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        psf: the blur kernel: odd-sized, centred, summing to 1.
        noise: std of the noise in ``img`` on the 0-255 scale; ``None`` measures it (:func:`estimate_noise`).
        balance: weight of the prior; ``None`` derives it from ``noise`` and ``quality``.
        quality: JPEG quality the image went through (None: not compressed); its error regularises too.
        strength: up to 1 a blend of the deconvolution with the input (0 returns a copy); above 1 the prior's
            weight is divided by ``strength ** 2``. The kernel is never changed.
        keep: float32 HxW in [0, 1], the share of the correction kept at each pixel (a blend with the input there,
            with ``strength``'s; :func:`restorer.operators.deblur.deblur` keeps little of it in plain areas).

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x = as_image(img)
    s = float(strength)
    if min(x.shape[:2]) < 4 or s <= 0:  # a sliver has no detail to recover
        return x.copy()
    psf = np.asarray(psf, np.float64)
    # A PSF wider than the image cannot be told from a constant shift there: crop it (centred) to fit.
    ch, cw = (max(0, (psf.shape[i] - (2 * x.shape[i] - 1)) // 2) for i in (0, 1))
    psf = psf[ch : psf.shape[0] - ch, cw : psf.shape[1] - cw]
    psf = psf / psf.sum()
    sigma = error_sigma(noise, quality, x)
    if np.allclose(psf, psf[::-1], atol=1e-9) and np.allclose(psf, psf[:, ::-1], atol=1e-9):
        if balance is None:
            balance = WIENER_FLOOR + WIENER_PER_VAR * sigma**2
        out = _wiener_mirrored(x, psf, float(balance) / max(s, 1.0) ** 2)
    else:
        n = RL_ITERATIONS * max(s, 1.0) / (1.0 + (sigma / RL_SIGMA) ** 2)
        out = _richardson_lucy(x, psf, max(1, round(n)))
    # A kernel far wider than the real blur inverts into a pattern many times stronger than the image itself, never
    # an image the input could have been blurred from: such a correction is scaled back (a blend, as for strength).
    tally = _TALLY.get()
    if tally is None:
        ratio = float(np.std(out - x)) / (float(np.std(x)) + 1e-3)
        over = float(np.mean((out < -GUARD_OVER) | (out > 1.0 + GUARD_OVER)))
        s = min(s, 1.0, GUARD_RATIO / max(ratio, 1e-6), GUARD_SHARE / max(over, 1e-6))
    elif tally.scale is None:  # gathering the whole image's statistics: this tile's result is not kept
        tally.add(out, x)
        s = min(s, 1.0)
    else:
        s = min(s, 1.0, tally.scale)
    if s < 1.0 or keep is not None:
        share = np.float32(s) if keep is None else np.float32(s) * np.asarray(keep, np.float32)[..., None]
        out = x + share * (out - x)
    return clip01(out)


def clamp_overshoot(out: np.ndarray, ref: np.ndarray, radius: int = 1) -> np.ndarray:
    """``out`` kept within ``ref``'s range over a ``(2 radius + 1)^2`` window: no over- or undershoot at edges.

    Ringing beside an edge overshoots the local range, a steepened edge does not; fine texture that a wide blur
    flattened completely does, so this suits mild low-pass (down-sampling), not wide PSFs.
    """
    if radius <= 0:
        return out
    return _clamp_to_range(out, ref, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))


def _clamp_to_range(out: np.ndarray, ref: np.ndarray, window: np.ndarray, slack: float = 0.0) -> np.ndarray:
    # ``out`` within ``ref``'s min and max over ``window`` (a uint8 mask), widened by ``slack`` on either side.
    lo, hi = cv2.erode(ref, window), cv2.dilate(ref, window)
    if slack:
        lo, hi = lo - np.float32(slack), hi + np.float32(slack)
    return np.clip(out, lo, hi)


#: Share of a PSF's peak from which a tap belongs to its footprint (:func:`clamp_to_footprint`).
FOOTPRINT_SHARE = 0.02


def clamp_to_footprint(out: np.ndarray, ref: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """``out`` kept within ``ref``'s range over ``psf``'s footprint (plus one 8-bit level): no overshoot there.

    A blurred pixel mixes the sharp pixels under the PSF, so the flat sides of an edge keep their values in the
    blurred image within the footprint's reach: a deconvolution that lands outside that range is ringing or the
    overshoot of a kernel wrong in size or shape (a uniform line PSF on a decaying trail or a shaken path). Chosen
    on the calibration photos for motion PSFs, where it halved the deblurrings worse than the input under a
    wrong length or a held-out motion model, at a loss of 0.1 dB or less with the exact kernel (fine texture that the
    blur flattened below its footprint's range is the cost); a disk or Gaussian with the exact size lost 1 dB.
    """
    k = np.asarray(psf) >= FOOTPRINT_SHARE * float(np.max(psf))
    if k.sum() <= 1:
        return out
    return _clamp_to_range(out, ref, k.astype(np.uint8), 1.0 / 255.0)


def _transfer(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    # Real-FFT transfer function of a centred kernel on a periodic grid of ``shape``.
    k = np.zeros(shape, np.float32)
    kh, kw = kernel.shape
    k[:kh, :kw] = kernel
    k = np.roll(k, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return fft.rfft2(k, workers=1)


def _laplacian_power(shape: tuple[int, int]) -> np.ndarray:
    # |FFT of the 5-point Laplacian|^2 on the real-FFT grid of ``shape``, in closed form.
    wy = 2.0 - 2.0 * np.cos(2.0 * np.pi * np.fft.fftfreq(shape[0]))[:, None]
    wx = 2.0 - 2.0 * np.cos(2.0 * np.pi * np.fft.rfftfreq(shape[1]))[None, :]
    return ((wy + wx) ** 2).astype(np.float32)


def _wiener_mirrored(x: np.ndarray, psf: np.ndarray, balance: float) -> np.ndarray:
    h, w = x.shape[:2]
    z = x @ OPPONENT.T  # orthonormal: luma and two chroma channels, noise stays white with the same std
    zp = np.pad(z, ((0, h), (0, w), (0, 0)), mode="symmetric")  # its periodic extension is the reflected image
    shape = zp.shape[:2]
    tf = _transfer(psf, shape)
    reg = _laplacian_power(shape)
    power = (tf.real**2 + tf.imag**2).astype(np.float32)
    spec = fft.rfft2(zp, axes=(0, 1), workers=1)
    luma = np.conj(tf) / (power + np.float32(balance) * reg)
    chroma = np.conj(tf) / (power + np.float32(balance * CHROMA_BALANCE) * reg)
    out = np.empty_like(z)
    for c, filt in enumerate((luma, chroma, chroma)):
        out[..., c] = fft.irfft2(spec[..., c] * filt, s=shape, workers=1)[:h, :w]
    return (out @ OPPONENT).astype(np.float32)


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
    return clip01(prev)
