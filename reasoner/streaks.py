"""Thin bright lines along one direction: the map the deraining removes and the diagnosis checks rain against.

A streak is excess brightness over the background sampled 2-4 px to either side across the direction that
persists along it (a morphological opening of the excess with a 17 px line). Rain is a population of such lines,
similar to one another; a few lines that carry most of the excess are structures (a tripod's legs, a mast, cables,
window frames), which the same map finds just as well. :func:`streak_parts` splits the map into connected lines
with the excess each carries, so the diagnosis can refuse a "rain" that is a handful of lines
(:func:`few_lines_share`) and the deraining can leave alone the lines far stronger than the population's typical
one (:func:`structure_lines`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

OFFSETS = (2, 3, 4)  # px across the streak where the background is sampled (streaks are 1-2 px wide)
LENGTH = 17  # tuned: px a bright run must hold along the streak direction (streaks are 10-40 px)
T0, T1 = 0.01, 0.06  # tuned: residual brightness where removal starts and is complete
#: A line carrying more than this many times the median line's excess is a structure, not a streak. Chosen on the
#: protocols' rain diagnoses (MiO, held-out zoo models, own cases, 256 px crops): seeds 1-7 to choose among 30, 40,
#: 60 and 80, seeds 0 and 8-12 held back. With the :data:`FEW_LINES_SHARE` check before it, the deraining of the
#: diagnosed rain lost 2.4 / 0.8 dB summed over 254 / 226 true rains (of +263 / +249) and false rains went from
#: -3.9 / -15.4 dB summed (2 / 3 crops harmed by more than 0.5 dB) to -1.0 / -1.4 (none).
STRUCTURE_TIMES_MEDIAN = 40.0
#: Share of the excess that the three strongest lines may carry in a rain layer. True rains: 5th-95th percentile
#: 0.08-0.26, at most 0.63 (seeds 1-7, 254 crops); false rains (thin bright structures, highlights): median 0.44.
#: 0.4 and 0.5 gave the same results on both splits; 0.5 keeps the margin on the true side.
FEW_LINES_SHARE = 0.5
FEW_LINES = 3


#: A sorting network for 6 values (12 compare-exchanges; checked on every 0/1 input by the tests): the median of the
#: six across-streak samples as the mean of the 3rd and 4th, without ``np.median``'s partition over a stacked array
#: (4.0 s for a 12 MP photo, against 0.76 s; the whole deraining 3.8 -> 2.5 s, medians of 3 in one run).
SORT6 = ((0, 5), (1, 3), (2, 4), (1, 2), (3, 4), (0, 3), (2, 5), (0, 1), (2, 3), (4, 5), (1, 2), (3, 4))


def median6(values: list[np.ndarray], rows: int = 16) -> np.ndarray:
    """Elementwise median of six equally shaped arrays (the mean of the two middle values, as ``np.median``).

    Worked in strips of ``rows`` rows, so each strip's six slices stay in cache through the 12 compare-exchanges.
    """
    out = np.empty_like(values[0])
    for y in range(0, out.shape[0], rows):
        v = [a[y : y + rows] for a in values]
        for i, j in SORT6:
            v[i], v[j] = np.minimum(v[i], v[j]), np.maximum(v[i], v[j])
        np.add(v[2], v[3], out=out[y : y + rows])
    out *= np.float32(0.5)
    return out


def line_element(length: int, angle: float) -> np.ndarray:
    """A 1 px line structuring element of ``length`` px at ``angle`` degrees (counter-clockwise, y down)."""
    r = length // 2
    se = np.zeros((2 * r + 1, 2 * r + 1), np.uint8)
    t = math.radians(angle)
    dx, dy = r * math.cos(t), -r * math.sin(t)
    cv2.line(se, (round(r - dx), round(r - dy)), (round(r + dx), round(r + dy)), 1, 1)
    return se


def streak_map(img: np.ndarray, angle: float, strength: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The excess over the across-streak background (HxWx3) and the weight (HxW, 0-1) of streaks along ``angle``.

    ``strength`` divides the detection thresholds (higher takes in fainter lines). ``img`` is float32 HxWx3 in
    [0, 1].
    """
    s = float(strength)
    t = math.radians(float(angle) + 90.0)
    ux, uy = math.cos(t), -math.sin(t)
    h, w = img.shape[:2]
    shifted = [
        cv2.warpAffine(img, np.float32([[1, 0, d * ux], [0, 1, d * uy]]), (w, h), borderMode=cv2.BORDER_REFLECT)
        for k in OFFSETS
        for d in (k, -k)
    ]
    excess = np.maximum(img - median6(shifted), 0.0)  # 3 offsets, both ways: six samples
    along = cv2.morphologyEx(excess.mean(axis=2), cv2.MORPH_OPEN, line_element(LENGTH, angle))
    weight = np.clip((along - T0 / s) / ((T1 - T0) / s), 0.0, 1.0)
    return excess, weight


def streak_parts(weight: np.ndarray, carried: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected lines of ``weight`` (8-connected labels, 0 = none) and the excess each carries (index 0 is 0).

    ``carried`` is each pixel's weighted excess (:func:`carried_excess`).
    """
    n, labels = cv2.connectedComponents((weight > 0).astype(np.uint8), connectivity=8)
    energy = np.bincount(labels.ravel(), weights=carried.ravel(), minlength=n)
    energy[0] = 0.0
    return labels, energy


def carried_excess(excess: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """HxW: the excess brightness (mean over channels) each pixel of a line carries, at its weight."""
    return weight * excess.mean(axis=2)


def few_lines_share(img: np.ndarray, angle: float) -> float:
    """Share of the streak excess along ``angle`` carried by the :data:`FEW_LINES` strongest lines (0 when none).

    >>> img = np.zeros((64, 64, 3), np.float32); img[:, 30:32] = 0.8   # one bright pole
    >>> round(few_lines_share(img, 90.0), 2)
    1.0
    """
    excess, weight = streak_map(img, angle)
    _, energy = streak_parts(weight, carried_excess(excess, weight))
    total = float(energy.sum())
    return float(np.sort(energy)[::-1][:FEW_LINES].sum() / total) if total > 0 else 0.0


def structure_lines(labels: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """HxW mask of the lines carrying over :data:`STRUCTURE_TIMES_MEDIAN` times the median line's excess."""
    if len(energy) < 2:
        return np.zeros(labels.shape, bool)
    strong = energy > STRUCTURE_TIMES_MEDIAN * float(np.median(energy[1:]))
    strong[0] = False
    return strong[labels]
