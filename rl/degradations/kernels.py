"""Blur kernels of the synthesis models: defocus disks and linear motion strokes, anti-aliased by supersampling.

Both are :func:`restorer.operators.kernels.stroke_kernel` (the one home of the kernel shape, which the restorer
deconvolves with), in float32 and without the restorer's clamping and rounding of radius, length and direction:
synthesised parameters reach the kernel exactly as sampled.
"""

from __future__ import annotations

import math

import numpy as np

from restorer.operators.kernels import stroke_kernel


def disk_kernel(radius: float) -> np.ndarray:
    """Defocus disk of ``radius`` px, anti-aliased by supersampled coverage; float32, sums to 1, read-only.

    >>> k = disk_kernel(2.0)
    >>> k.shape, k.dtype.name, round(float(k.sum()), 6)
    ((5, 5), 'float32', 1.0)
    """
    return stroke_kernel(0.0, 0.0, float(radius), dtype=np.float32)


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Linear motion kernel ``length`` px end to end at ``angle`` deg counter-clockwise from +x (y down).

    A 1 px wide stroke with round ends, anti-aliased by supersampled coverage; float32, sums to 1, read-only.
    """
    half = max(length - 1.0, 0.0) / 2.0  # the round ends add the last 0.5 px at each end
    t = math.radians(angle)
    return stroke_kernel(half * math.cos(t), -half * math.sin(t), 0.5, dtype=np.float32)
