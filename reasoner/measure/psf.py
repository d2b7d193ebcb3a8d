"""Blur kernels read off the spectrum: a defocus disk's radius and a linear motion's length from spectral zeros.

A defocus disk of radius R multiplies the spectrum by ``2 J1(2 pi R f) / (2 pi R f)``, which vanishes on rings at
``f = j_k / (2 pi R)`` (``j_k`` the zeros of J1); a linear motion of length L multiplies it, along the motion, by
``sinc(L f)``, which vanishes at ``f = k / L``. Where the image was sharp enough and noise is low, those zeros are
dips of the averaged log power spectrum (a Gaussian kernel has none), so the kernel is *measured* instead of
inferred from a severity. The dips are only trusted when they line up with a candidate kernel at several zeros.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy.ndimage import map_coordinates, median_filter

from reasoner.common import content_key, remembered

#: First zeros of the Bessel function J1 (the defocus disk's spectral zeros in units of 2 pi R f).
_J1_ZEROS = np.array([3.8317, 7.0156, 10.1735, 13.3237, 16.4706, 19.6159])
#: Frequencies above this (cycles/px) are ignored: aliasing, demosaicing and JPEG live there.
_F_MAX = 0.42
#: Mean log-power depth (nats) of the dips at the predicted zeros, relative to the lobes between them, above which a
#: kernel counts as measured. On the evaluation photos (8-bit, as users' photos are) images without a disk score at
#: most 0.22 for disks and disks 0.7-2 (quantisation fills the deepest dips of low-contrast images); motion profiles
#: along a line are noisier: up to 1.0 without motion, 1.4-3 with it.
MIN_DIP_DISK, MIN_DIP_MOTION = 0.5, 1.3
#: The motion threshold once motion is reported (:func:`reasoner.measure.entries` writes the length): presence is
#: settled, and the dips only have to say where the zeros are. A sharp photo's profile can dip this deep at some
#: angle, so it says nothing about presence. First chosen for JPEGs, whose quantisation fills the dips (a linear shake
#: scoring 3.5 uncompressed scores 1.2 at quality 80 and 0.5 at 30) while the zeros stay where the length puts them:
#: on crops of the calibration photos with a linear motion and JPEG at quality 30-90, the median length error fell
#: from 28% (the factor head's, which reads block edges as a longer blur) to 15%; on the imagecorruptions trail,
#: whose kernel has no clean zeros, it stayed at 14%; held-out photos 30% -> 7%, the trail's 35% -> 37%. Uncompressed,
#: the dips of a 256 px crop's profile (128 px tiles) are as shallow: with :data:`MIN_DIP_MOTION` the length of a
#: reported linear motion was within 15% on 11 of 28 calibration crops (held-out photos 13 of 29), mostly the factor
#: head's reading; at this threshold 20 of 28 (28 of 29), and over 40% off 5 -> 1 (5 -> 1). At 512 px: 12 -> 16 of 16
#: (14 -> 15 of 15). Camera-shake trajectories, with no clean zeros: within 15% 13 -> 12 of 23 and 7 -> 9 of 19 at
#: 256 px, 7 -> 9 of 16 and 6 -> 9 of 13 at 512, over 40% off 9 -> 10, 7 -> 7, 8 -> 5, 5 -> 3; the trail within 15%
#: 10 -> 9 of 25, 11 -> 10 of 27 and 8 -> 8 of 16 twice, over 40% off 3 -> 4, 3 -> 5, 2 -> 2, 2 -> 5. Protocols,
#: seeds 1-7: four own-model motion crops moved (+0.1, +2.3, +3.8; a rainy shaken motorcycle -0.8), nothing else.
MIN_DIP_MOTION_REPORTED = 0.6
#: A disk's second and third zero rings lie where a disk 1.83 and 2.66 times smaller has its first and second: on a
#: 256 px crop a disk of radius 4.4 has three rings below :data:`_F_MAX`, and the smaller disk, matched on its two
#: deepest, scored a little better, so every such crop of the bundled photos was read at 2.4 (a protocols crop
#: deconvolved with it came back 1.1 dB below its input). The larger disk is taken when it scores at least this share
#: of the best and its own first ring, inside the smaller disk's main lobe, is itself a dip of :data:`MIN_DIP_DISK`.
#: On 540 crops of the calibration and held-out photos (the own model's disks and imagecorruptions' soft disks, as PNG
#: and JPEG q92 and q75, and clean ones): 12 readings moved, each from about half the true radius to within 3% of it;
#: none moved away from it, and a disk is reported exactly where it was before (the share alone, without the first
#: ring's dip, read a soft disk of 6.1 as 16.2 and a disk of 7.5 as 13.9). The same share takes a longer motion
#: whose zeros include a shorter one's (:func:`motion_length`).
HARMONIC_SHARE = 0.8


def _log_power(luma: np.ndarray) -> np.ndarray:
    """Welch-averaged, Hann-windowed log power spectrum of ``luma`` (fftshifted, square tiles)."""
    h, w = luma.shape
    tile = 256 if min(h, w) >= 384 else 128 if min(h, w) >= 160 else 0
    if tile == 0:
        return np.zeros((0, 0))
    win = np.outer(np.hanning(tile), np.hanning(tile))
    acc = np.zeros((tile, tile))
    n = 0
    for y in range(0, h - tile + 1, tile // 2):
        for x in range(0, w - tile + 1, tile // 2):
            t = luma[y : y + tile, x : x + tile]
            acc += np.abs(np.fft.fft2((t - t.mean()) * win)) ** 2
            n += 1
    return np.fft.fftshift(np.log(acc / n + 1e-12))


def _residual(profile: np.ndarray) -> np.ndarray:
    """The profile minus its running median: dips stand out, the 1/f^2 slope does not."""
    return profile - median_filter(profile, size=max(5, len(profile) // 8) | 1, mode="nearest")


def _dip_score(res: np.ndarray, freqs: np.ndarray, zeros: np.ndarray, min_zeros: int) -> float:
    """Mean residual at ``zeros`` minus the mean over the lobes (more negative = clearer dips at exactly those zeros).

    Lobes are the midpoints between zeros plus points spread below the first zero, so a kernel whose first zero
    lands on a later zero of the true one (a harmonic) is penalised by the true zeros inside its main lobe. At
    least ``min_zeros`` zeros must fall below :data:`_F_MAX`.
    """
    zeros = zeros[zeros < _F_MAX]
    if len(zeros) < min_zeros or zeros[0] < 3 * freqs[1]:
        return 0.0
    lobes = np.concatenate([zeros[0] * np.linspace(0.3, 0.8, 10), (zeros[:-1] + zeros[1:]) / 2])
    return float(np.interp(zeros, freqs, res).mean() - np.interp(lobes, freqs, res).mean())


def defocus_radius(luma: np.ndarray, lo: float = 1.0, hi: float = 16.0) -> tuple[float, float] | None:
    """Radius (px) of a defocus disk measured from the spectrum's zero rings, and its dip depth; None if not seen.

    A best fit at ``hi`` itself is not a measurement: the residual spectrum of a small disk, a clean photo's or a
    JPEG's, can keep falling to the edge of the search. Over crops of the held-out and calibration photos (disks and
    soft disks of radius 2-15, as PNG and JPEG q92, and clean ones; 468) every radius read at 16 was wrong, 11 of 11
    (true radii 2 and 6, a clean crop; a true 15 reads 14.9), and deconvolving such a disk harmed: a held-out
    motorcycle crop defocused by a radius of about 6, read as 16, was deblurred to 0.9 dB below its input and
    returned (camera JPEG, held-out models, seed 3).

    Args:
        luma: float HxW luminance in [0, 1].
        lo: smallest radius considered (px).
        hi: largest radius considered (px).

    """
    lp = _log_power(np.asarray(luma, np.float64))
    if lp.size == 0:
        return None
    n = lp.shape[0]
    f = np.fft.fftshift(np.fft.fftfreq(n))
    r = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    edges = np.arange(0, 0.5 + 1e-9, 1.0 / n)
    idx = np.clip(np.digitize(r.ravel(), edges) - 1, 0, len(edges) - 2)
    counts = np.bincount(idx, minlength=len(edges) - 1)
    prof = np.bincount(idx, weights=lp.ravel(), minlength=len(edges) - 1) / np.maximum(counts, 1)
    centres = (edges[:-1] + edges[1:]) / 2
    res = _residual(prof)
    radii = np.exp(np.linspace(np.log(lo), np.log(hi), 200))

    def depth(rad: float) -> float:
        return -_dip_score(res, centres, _J1_ZEROS / (2 * np.pi * rad), 1)

    scores = np.array([depth(rad) for rad in radii])
    best = int(np.argmax(scores))
    if best == len(radii) - 1:  # the search's edge is no minimum found (see below)
        return None
    top = float(scores[best])
    if top < MIN_DIP_DISK:
        return None

    # A larger disk's second and third rings fall where this one's first and second do (see HARMONIC_SHARE); its own
    # first ring, inside this disk's main lobe, must be a dip too.
    def first_ring_dips(rad: float) -> bool:
        return np.interp(_J1_ZEROS[0] / (2 * np.pi * rad), centres, res) <= -MIN_DIP_DISK

    larger = _sharing_zeros(float(radii[best]), _J1_ZEROS[2:0:-1] / _J1_ZEROS[0], depth, top, hi, 0.04, 17,
                            first_ring_dips)  # fmt: skip
    return (larger, depth(larger)) if larger is not None else (float(radii[best]), top)


#: The last few :func:`motion_length` readings, by the luma's content and the arguments: the diagnosis reads a
#: reported motion's length and the agent asks again whether its input shows it (:func:`confirms_motion`).
_READINGS: dict[tuple, tuple[float, float] | None] = {}


def motion_length(
    luma: np.ndarray, angle: float, lo: float = 3.0, hi: float = 60.0, min_dip: float = MIN_DIP_MOTION
) -> tuple[float, float] | None:
    """Length (px) of a linear motion along ``angle`` measured from the spectrum's zero lines; None if not seen.

    Args:
        luma: float HxW luminance in [0, 1].
        angle: motion direction in degrees counter-clockwise from +x (image y axis down).
        lo: shortest length considered (px).
        hi: longest length considered (px).
        min_dip: dip depth below which nothing is reported (:data:`MIN_DIP_MOTION_REPORTED` where motion is already
            reported).

    """
    key = content_key(luma, float(angle), float(lo), float(hi), float(min_dip))
    return remembered(_READINGS, key, lambda: _motion_length(luma, angle, lo, hi, min_dip), kept=16)


def _motion_length(luma: np.ndarray, angle: float, lo: float, hi: float, min_dip: float) -> tuple[float, float] | None:
    lp = _log_power(np.asarray(luma, np.float64))
    if lp.size == 0:
        return None
    n = lp.shape[0]
    c = n // 2
    a = np.deg2rad(angle)
    along = np.arange(0, n // 2 - 1)
    across = np.arange(-2, 3)  # average a 5-px band across the line: the zeros are straight lines
    rows = c - np.sin(a) * along[None, :] + np.cos(a) * across[:, None]
    cols = c + np.cos(a) * along[None, :] + np.sin(a) * across[:, None]
    prof = map_coordinates(lp, [rows, cols], order=1, mode="nearest").mean(axis=0)
    res = _residual(prof)
    freqs = along / n
    lengths = np.exp(np.linspace(np.log(lo), np.log(hi), 200))

    # Two zeros at least: a single dip on a noisy line profile matches short lengths on sharp photos.
    def score(length: float) -> float:
        return -_dip_score(res, freqs, np.arange(1, 13) / length, 2)

    scores = np.array([score(length) for length in lengths])
    best = float(lengths[int(np.argmax(scores))])
    top = float(scores.max())
    if top < min_dip:
        return None
    # Every zero of L/m is a zero of L: a long motion can look like a short one whose zeros it shares. Take the
    # longest multiple that explains the dips nearly as well (a true short motion's multiples put half their zeros
    # on lobes and score far lower).
    longer = _sharing_zeros(best, range(6, 1, -1), score, top, hi, 0.03, 13)
    return (longer, score(longer)) if longer is not None else (best, top)


#: How near (share of the length) a reading of the spectrum's zeros must come to a motion's length to confirm it.
CONFIRM_SHARE = 0.1


def confirms_motion(luma: np.ndarray, length: float, angle: float) -> bool:
    """Whether the spectrum of ``luma`` shows a linear motion's zero lines where ``length`` along ``angle`` puts them.

    Read as for a reported motion (:data:`MIN_DIP_MOTION_REPORTED`): the measured length within
    :data:`CONFIRM_SHARE` of ``length``. A straight stroke's zeros are sharp; a one-sided fading trail or a curled
    camera shake has none to read, so its kernel, whatever its length, is not confirmed.

    >>> from scipy.ndimage import gaussian_filter, uniform_filter1d
    >>> sharp = gaussian_filter(np.random.default_rng(0).random((256, 256)), 1.0)
    >>> stroke = uniform_filter1d(sharp, 12, axis=1, mode="wrap")  # a 12 px horizontal stroke
    >>> confirms_motion(stroke, 12.0, 0.0), confirms_motion(stroke, 20.0, 0.0), confirms_motion(sharp, 12.0, 0.0)
    (True, False, False)
    """
    seen = motion_length(luma, angle, min_dip=MIN_DIP_MOTION_REPORTED)
    return seen is not None and abs(seen[0] - float(length)) <= CONFIRM_SHARE * float(length)


def _sharing_zeros(
    best: float,
    ratios: Iterable[float],
    depth: Callable[[float], float],
    top: float,
    hi: float,
    spread: float,
    points: int,
    also: Callable[[float], bool] = lambda size: True,
) -> float | None:
    """The largest kernel ``best * ratio`` (``ratios`` largest first, up to ``hi``) whose zeros include ``best``'s.

    Each is refined over ``points`` sizes within ``spread`` of it, and taken when its ``depth`` is at least
    :data:`HARMONIC_SHARE` of ``top`` (``best``'s) and ``also`` holds for it; None when none is.
    """
    for ratio in ratios:
        if best * ratio <= hi:
            near = max((best * ratio * k for k in np.linspace(1 - spread, 1 + spread, points)), key=depth)
            if depth(near) >= HARMONIC_SHARE * top and also(near):
                return float(near)
    return None
