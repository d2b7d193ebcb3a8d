"""Blur kernels (point-spread functions): the one home of the disk, Gaussian and linear-motion kernels.

Synthesis (``rl``) blurs with these and restoration deconvolves with them, so both sides share one angle convention
(degrees counter-clockwise from +x, image y axis down) and one anti-aliasing: a kernel is the coverage of a round-
ended stroke, sampled on a ``supersample x supersample`` grid per pixel (exact and symmetric, where ``cv2.line``
lands a sub-pixel off). Every kernel is odd-sized, centred and sums to 1; cached ones are read-only.

Coverage counts are exact in float32 and float64 alike, and division rounded to float64 and then to float32 equals
division rounded to float32 once, so ``dtype=np.float32`` is bit-identical to computing in float32 throughout.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

#: Largest PSF radius in px the restorer builds (beyond it nothing is recoverable and kernels get costly).
MAX_PSF_RADIUS = 127


@lru_cache(maxsize=128)
def _stroke(dx: float, dy: float, radius: float, supersample: int, dtype: str) -> np.ndarray:
    k = math.ceil(max(abs(dx), abs(dy)) + radius + 0.5) - 1  # last pixel the stroke reaches into
    n, s = 2 * k + 1, supersample
    c = (np.arange(n * s) + 0.5) / s - (k + 0.5)  # sub-sample positions in px from the kernel centre
    x, y = c[None, :], c[:, None]
    along = np.clip((x * dx + y * dy) / (dx * dx + dy * dy), -1.0, 1.0) if dx or dy else 0.0
    inside = ((x - along * dx) ** 2 + (y - along * dy) ** 2 <= radius**2).astype(np.float64)
    kernel = inside.reshape(n, s, n, s).mean(axis=(1, 3))
    kernel = (kernel / kernel.sum()).astype(dtype, copy=False)
    kernel.flags.writeable = False  # cached and shared between callers
    return kernel


def stroke_kernel(dx: float, dy: float, radius: float, supersample: int = 8, dtype=np.float64) -> np.ndarray:
    """Coverage of the points within ``radius`` px of the segment from ``-(dx, dy)`` to ``(dx, dy)``.

    The primitive behind :func:`line_kernel` and :func:`disk_kernel`, with no clamping or rounding of its inputs.

    Args:
        dx: Half the segment along +x, px.
        dy: Half the segment along +y (image rows, downwards), px.
        radius: Half the stroke's width, px (0.5 for a 1 px wide line).
        supersample: Sub-samples per pixel along each axis.
        dtype: Output dtype (computed in float64, then cast).

    Returns:
        Read-only ``(2k+1) x (2k+1)`` kernel summing to 1 (cached: never write to it).

    >>> stroke_kernel(0.0, 0.0, 0.5).shape, float(stroke_kernel(2.0, 0.0, 0.5).sum())
    ((1, 1), 1.0)

    """
    return _stroke(float(dx), float(dy), float(radius), int(supersample), np.dtype(dtype).name)


def line_kernel(length: float, angle: float, dtype=np.float64) -> np.ndarray:
    """Linear motion PSF ``length`` px end to end at ``angle`` degrees counter-clockwise from +x, image y down.

    A 1 px wide anti-aliased stroke with round ends, centred, at most ``2 * MAX_PSF_RADIUS + 1`` px long; sums to 1,
    read-only. The half-extent is rounded to 1e-9 px so that horizontal and vertical motion give exactly symmetric
    kernels (``cos 90`` is 6e-17, not 0).

    >>> k = line_kernel(5.0, 0.0)  # horizontal: all weight on the middle row
    >>> k.shape, float(k[2].sum())
    ((5, 5), 1.0)
    """
    half = min(max(float(length) - 1.0, 0.0) / 2.0, MAX_PSF_RADIUS - 1.0)  # round ends add the last half pixel
    t = math.radians(float(angle))
    return stroke_kernel(round(half * math.cos(t), 9), round(-half * math.sin(t), 9), 0.5, dtype=dtype)


def disk_kernel(radius: float, dtype=np.float64) -> np.ndarray:
    """Defocus PSF: an anti-aliased disk of ``radius`` px (clamped to [0.5, MAX_PSF_RADIUS]); sums to 1, read-only."""
    return stroke_kernel(0.0, 0.0, min(max(float(radius), 0.5), float(MAX_PSF_RADIUS)), dtype=dtype)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Isotropic Gaussian PSF of std ``sigma`` px, truncated at 4 sigma (and MAX_PSF_RADIUS); float64, sums to 1."""
    r = min(max(1, math.ceil(4.0 * sigma)), MAX_PSF_RADIUS)
    g = cv2.getGaussianKernel(2 * r + 1, sigma, cv2.CV_64F)
    return g @ g.T
