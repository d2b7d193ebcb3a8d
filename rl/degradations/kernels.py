"""Blur kernels of the synthesis models: defocus disks and linear motion strokes, anti-aliased by supersampling.

Both are :func:`restorer.operators.kernels.stroke_kernel` (the one home of the kernel shape, which the restorer
deconvolves with), in float32 and without the restorer's clamping and rounding of radius, length and direction:
synthesised parameters reach the kernel exactly as sampled. :func:`equivalent_sigma` and :func:`equivalent_motion`
read the schema's blur and motion factors off any kernel by its second moments.
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


def _moments(kernel: np.ndarray) -> tuple[float, float, float]:
    # Weighted second central moments (xx, yy, xy) of a non-negative kernel, x along columns, y down the rows.
    k = np.asarray(kernel, np.float64)
    k = k / k.sum()
    h, w = k.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    mx, my = float((k * x).sum()), float((k * y).sum())
    dx, dy = x - mx, y - my
    return float((k * dx * dx).sum()), float((k * dy * dy).sum()), float((k * dx * dy).sum())


def equivalent_sigma(kernel: np.ndarray) -> float:
    """Std in px of the isotropic Gaussian with the kernel's mean second moment per axis, ``sqrt((vxx + vyy) / 2)``.

    How the schema's blur ``sigma`` is read off a kernel that is not an isotropic Gaussian (anisotropic, plateau,
    a softened disk): the same spread of energy, averaged over the two axes. A disk of radius ``r`` gives about
    ``r / 2`` (pixel sampling adds 1/12 px^2 per axis).

    >>> round(equivalent_sigma(disk_kernel(8.0)), 1)
    4.0
    """
    vxx, vyy, _ = _moments(kernel)
    return math.sqrt((vxx + vyy) / 2.0)


def equivalent_motion(kernel: np.ndarray) -> tuple[float, float]:
    """Length in px and angle in degrees [0, 180) of the linear motion with the kernel's spread along its main axis.

    The main axis is the principal direction of the kernel's second moment; the length is ``sqrt(12 v)`` for the
    variance ``v`` along it (a uniform stroke of length ``L`` has ``L**2 / 12``), so a trail that fades (a Gaussian
    weight profile) or a curled shake trajectory counts by the spread it actually has, not its nominal end points.
    The angle is counter-clockwise from +x with image y down, as :func:`motion_kernel`'s.

    >>> length, angle = equivalent_motion(motion_kernel(21.0, 30.0))
    >>> round(length), round(angle)
    (21, 30)
    """
    vxx, vyy, vxy = _moments(kernel)
    half_trace, det = (vxx + vyy) / 2.0, vxx * vyy - vxy * vxy
    major = half_trace + math.sqrt(max(half_trace * half_trace - det, 0.0))
    angle = math.degrees(0.5 * math.atan2(-2.0 * vxy, vxx - vyy)) % 180.0  # -vxy: y points down
    return math.sqrt(12.0 * major), 0.0 if angle >= 180.0 - 1e-9 else angle
