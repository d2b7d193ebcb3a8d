"""Non-blind deconvolution with reflected borders: what the deblur, motion-deblur and super-resolution operators share.

Constants marked "tuned" were fitted for PSNR on crops of the held-out photos (``rl.photos.EVALUATION_PHOTOS``)
degraded by ``rl.degradations``.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.restoration import uft, wiener

from restorer.operators.filters import as_image, clip01, estimate_noise

#: Wiener balance = WIENER_FLOOR + WIENER_PER_VAR * noise_sigma_255 ** 2 (tuned).
WIENER_FLOOR, WIENER_PER_VAR = 3e-5, 6e-4
_RL_ITERATIONS, _RL_ITERATIONS_NOISY, _RL_NOISY = 12, 8, 3.0  # tuned: fewer iterations above noise sigma 3


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
    x = as_image(img)
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
            balance = WIENER_FLOOR + WIENER_PER_VAR * noise**2
        return _wiener_mirrored(x, psf, balance)
    return _richardson_lucy(x, psf, _RL_ITERATIONS if noise < _RL_NOISY else _RL_ITERATIONS_NOISY)


def _wiener_mirrored(x: np.ndarray, psf: np.ndarray, balance: float) -> np.ndarray:
    h, w = x.shape[:2]
    xp = np.pad(x, ((0, h), (0, w), (0, 0)), mode="symmetric")  # its periodic extension is the reflected image
    shape = xp.shape[:2]
    tf = uft.ir2tf(psf.astype(np.float32), shape)
    reg, _ = uft.laplacian(2, shape)
    out = np.stack([wiener(xp[..., c], tf, balance, reg=reg, clip=False) for c in range(3)], axis=-1)
    return clip01(out[:h, :w])


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
