"""Image quality metrics shared by the agent (do-no-harm checks), the rewards and the benchmarks.

Below both ``agent`` and ``rl`` in the layering, so neither has to import the other for a metric.
"""

from __future__ import annotations

import cv2
import numpy as np


def structure_score(a: np.ndarray, b: np.ndarray, noise: float = 0.0) -> float:
    """Local structural correlation of two images' low-passed luma: 1 = same structure, whatever the tone.

    SSIM's structure term (local correlation in Gaussian windows), averaged with weights on the first image's
    local contrast, at <= 128 px after area down-scaling. Local correlation ignores any tone change that is locally
    affine (exposure, gamma, dehazing's depth-varying contrast stretch), and the scale and low-pass make noise,
    compression and sharpening barely move it, while warps, hallucinated content and heavy smearing do.

    ``noise``: the std (0-255) of white noise in ``a`` that ``b`` set out to remove. What of it survives the
    down-scaling and low-pass is variance no denoising can correlate with, so each window's correlation is taken
    against the most a perfect denoising could reach there, ``sqrt(1 - noise variance / variance)`` (clipped to 1):
    heavy noise under haze leaves little contrast in the low-passed input besides the noise, and removing it there
    read as content that moved (MiO and zoo haze + noise crops: 104 of 114 attempts called drifted were truly better
    than the input by more than 0.5 dB).

    >>> rng = np.random.default_rng(0)
    >>> ramp = np.tile(np.linspace(0.4, 0.6, 128, dtype=np.float32), (128, 1))[..., None].repeat(3, axis=2)
    >>> noisy = np.clip(ramp + rng.normal(0, 40 / 255, ramp.shape), 0, 1).astype(np.float32)
    >>> flat = np.full_like(ramp, 0.5)
    >>> round(structure_score(noisy, ramp), 2), round(structure_score(noisy, ramp, noise=40.0), 2)
    (0.22, 1.0)
    >>> round(structure_score(noisy, flat, noise=40.0), 2)  # the ramp wiped out: no correlation left
    0.0
    """

    def low(x: np.ndarray) -> tuple[np.ndarray, float]:
        y = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        s = min(1.0, 128 / max(y.shape))
        if s < 1:
            y = cv2.resize(
                y, (max(8, round(y.shape[1] * s)), max(8, round(y.shape[0] * s))), interpolation=cv2.INTER_AREA
            )
        return cv2.GaussianBlur(y, (0, 0), 1.0).astype(np.float64), s

    (la, scale), (lb, _) = low(a), low(b)
    g = lambda x: cv2.GaussianBlur(x, (0, 0), 4.0)  # noqa: E731
    ma, mb = g(la), g(lb)
    va, vb = np.maximum(g(la * la) - ma * ma, 0), np.maximum(g(lb * lb) - mb * mb, 0)
    corr = (g(la * lb) - ma * mb) / np.sqrt(va * vb + 1e-10)
    w = np.sqrt(va)
    # white noise keeps ``scale`` of its std through the area down-scaling and 1 / (2 sqrt(pi)) through the Gaussian
    # blur of sigma 1; a window's reachable correlation times its weight is then the std of what is not noise
    left = (noise / 255.0 * scale / (2.0 * np.sqrt(np.pi))) ** 2
    reach = np.sqrt(np.maximum(va - left, 0.0))  # w itself without noise
    if reach.sum() < 1e-6:  # a flat input, or nothing but noise: no structure to lose
        return 1.0
    return float(np.clip((corr * w).sum() / reach.sum(), -1.0, 1.0))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two 8-bit RGB images (channels averaged)."""
    from skimage.metrics import structural_similarity

    win = min(7, *a.shape[:2]) // 2 * 2 + 1 if min(a.shape[:2]) < 7 else 7
    return float(structural_similarity(a, b, channel_axis=2, data_range=255, win_size=win))


def psnr(a: np.ndarray, b: np.ndarray, cap: float = 60.0) -> float:
    """PSNR in dB of two 8-bit images, capped (identical images give ``cap``)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return cap if mse <= 0 else min(cap, 10 * np.log10(255.0**2 / mse))
