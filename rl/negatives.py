"""Clean negatives: undegraded images built to look like degradations, for measuring false alarms.

A diagnoser that only ever saw clean photos next to degraded ones learns shortcuts: thin bright lines mean rain,
fine texture means noise, a dark frame means under-exposure, a flat one means blur. Each family here is clean (no
synthesised degradation, 8-bit exact like a PNG a user hands over) and aims at one or more such shortcuts:

======== ==================================================================== =====================================
family   what it is                                                           stresses
======== ==================================================================== =====================================
photo    a crop of a held-out bundled photo (the plain baseline)              every detector's base rate
wires    thin cables over a sky gradient, some bright and near vertical       rain, motion_blur
stars    a night sky: black with sharp point stars and a faint glow band      noise, low_light, rain
spokes   thin radial lines (wheel spokes, rays) over a mid-tone disc          motion_blur, rain, blur
text     crisp dark type on paper                                             jpeg, low_resolution, blur
fabric   a woven texture of fine threads with a period near 8 px              noise, jpeg, low_resolution
foliage  a 1/f-spectrum random texture in leaf colours, full of fine detail   noise, blur
wall     a flat plaster wall: soft shading, barely any texture, no edges      blur, low_resolution, haze, noise
sky      a smooth sky gradient with soft clouds, no edges                     haze, blur, jpeg
night    a dark street: correctly exposed lamps and windows, glows, deep dark low_light, noise, haze, blur
======== ==================================================================== =====================================

:func:`clean_negatives` draws them deterministically from a generator; :data:`FAMILIES` documents each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from reasoner.schema import DiagnosisRecord
from rl.cases import Case
from rl.ground_truth import ground_truth
from rl.photos import EVALUATION_PHOTOS, load_photo, random_crop


@dataclass(frozen=True)
class Family:
    """A family of clean negatives: the detectors it stresses and why."""

    stresses: tuple[str, ...]
    why: str


#: family -> the kinds whose detectors it stresses, and why.
FAMILIES: dict[str, Family] = {
    "photo": Family((), "a plain held-out photo: the base rate every detector should keep low"),
    "wires": Family(("rain", "motion_blur"), "thin bright lines at a shared slant look like rain streaks, and their "
                    "one dominant direction like a motion kernel's"),
    "stars": Family(("noise", "low_light", "rain"), "isolated bright pixels on black read as impulse noise or "
                    "specks, and a mostly black frame as under-exposure although the stars are at full brightness"),
    "spokes": Family(("motion_blur", "rain", "blur"), "thin lines radiating from a hub: strongly directional "
                     "gradients locally, and flat sectors between them"),
    "text": Family(("jpeg", "low_resolution", "blur"), "hard black-on-white edges that an 8x8 block detector or an "
                   "edge-width estimator can mistake for compression edges, aliasing or softness"),
    "fabric": Family(("noise", "jpeg", "low_resolution"), "a regular weave of period near 8 px: high-frequency "
                     "energy everywhere (noise) that also lines up with the JPEG grid and resamples into moire"),
    "foliage": Family(("noise", "blur"), "random fine detail with a natural 1/f spectrum: high-frequency energy a "
                      "noise estimator sees as noise, and out-of-focus patches between leaves"),
    "wall": Family(("blur", "low_resolution", "haze", "noise"), "almost no edges or texture: no high frequencies "
                   "(blur, low resolution), low contrast (haze), and a flat area where any estimate must read ~0"),
    "sky": Family(("haze", "blur", "jpeg"), "bright, bluish, low-contrast and edgeless like haze; smooth 8-bit "
                  "gradients band slightly as compression does"),
    "night": Family(("low_light", "noise", "haze", "blur"), "a dark frame correctly exposed (lamps clip at white), "
                    "glows around lights that look like scattering or blur, deep shadows"),
}  # fmt: skip


@dataclass(frozen=True, eq=False)
class Negative:
    """One clean negative: ``image`` is ``float32 HxWx3 in [0, 1]`` on exact 8-bit levels."""

    name: str
    family: str
    image: np.ndarray

    @property
    def stresses(self) -> tuple[str, ...]:
        """The kinds whose detectors this negative stresses."""
        return FAMILIES[self.family].stresses

    @property
    def record(self) -> DiagnosisRecord:
        """The ground truth: a record with no degradations."""
        return ground_truth([], self.image)

    def as_case(self) -> Case:
        """The negative as a benchmark :class:`~rl.cases.Case` of group "negative" (clean = image)."""
        return Case(self.name, "negative", self.image, self.image, self.record)


def _eight_bit(x: np.ndarray) -> np.ndarray:
    return (np.rint(np.clip(x, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return (x + 0.5) / size, (y + 0.5) / size


def _pink(rng: np.random.Generator, size: int, exponent: float) -> np.ndarray:
    """A random field with amplitude spectrum ``1 / f**exponent``, scaled to [0, 1]."""
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
    f[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.standard_normal((size, size))) / f**exponent
    spectrum[0, 0] = 0.0
    field = np.real(np.fft.ifft2(spectrum))
    return ((field - field.min()) / max(float(np.ptp(field)), 1e-9)).astype(np.float32)


def _sky_gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    _, y = _grid(size)
    top = np.array([rng.uniform(0.25, 0.45), rng.uniform(0.45, 0.6), rng.uniform(0.75, 0.95)], np.float32)
    horizon = np.array([rng.uniform(0.75, 0.9), rng.uniform(0.82, 0.92), rng.uniform(0.9, 1.0)], np.float32)
    t = (y**1.3)[..., None]
    return top * (1 - t) + horizon * t


def _photo(rng: np.random.Generator, size: int) -> np.ndarray:
    name = EVALUATION_PHOTOS[int(rng.integers(len(EVALUATION_PHOTOS)))]
    crop = random_crop(load_photo(name), rng, size)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) if crop.shape[:2] != (size, size) else crop


def _wires(rng: np.random.Generator, size: int) -> np.ndarray:
    img = (_sky_gradient(rng, size) * 255).astype(np.uint8)
    steep = rng.random() < 0.5  # half the time the cables share a near-vertical slant, as rain does
    base = rng.uniform(60, 120) if steep else rng.uniform(-20, 20)
    for _ in range(int(rng.integers(3, 9))):
        angle = math.radians(base + rng.uniform(-6, 6))
        cx, cy = rng.uniform(0, size), rng.uniform(0, size)
        sag = rng.uniform(0, 0.08) * size
        t = np.linspace(-1.5, 1.5, 64)
        xs = cx + t * size * math.cos(angle)
        ys = cy - t * size * math.sin(angle) + sag * (t**2 - 1)  # a catenary-like sag
        pts = np.rint(np.stack([xs, ys], 1) * 16).astype(np.int32)
        bright = rng.random() < 0.5
        colour = tuple(int(v) for v in (rng.uniform(215, 255, 3) if bright else rng.uniform(15, 60, 3)))
        cv2.polylines(img, [pts], False, colour, int(rng.integers(1, 3)), cv2.LINE_AA, shift=4)
    return img.astype(np.float32) / 255.0


def _stars(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    sky = np.stack([0.01 + 0.03 * y, 0.015 + 0.03 * y, 0.04 + 0.05 * y], -1)
    band = np.exp(-(((x - y) * rng.uniform(2, 5) + rng.uniform(-0.3, 0.3)) ** 2))[..., None] * 0.06
    img = sky + band * _pink(rng, size, 1.5)[..., None]
    n = int(rng.integers(size * size // 600, size * size // 150))
    py, px = rng.integers(0, size, n), rng.integers(0, size, n)
    brightness = rng.pareto(1.5, n) * 0.15 + 0.2  # a few bright stars, many faint ones
    stars = np.zeros((size, size), np.float32)
    np.add.at(stars, (py, px), brightness.astype(np.float32))
    stars = cv2.GaussianBlur(stars, (0, 0), 0.6) * 4.0  # a diffraction-limited point: sharp, not noise
    tint = np.array([1.0, 0.97, 0.9], np.float32)
    return img + stars[..., None] * tint


def _spokes(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    bg = np.array(rng.uniform(0.3, 0.6, 3), np.float32)
    img = (np.broadcast_to(bg, (size, size, 3)) * (0.9 + 0.1 * _pink(rng, size, 2.0)[..., None]) * 255).astype(
        np.uint8
    )
    cx, cy = rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size
    n = int(rng.integers(16, 48))
    light = rng.random() < 0.5
    colour = tuple(int(v) for v in (rng.uniform(200, 250, 3) if light else rng.uniform(10, 50, 3)))
    for a in np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, math.pi):
        end = (int((cx + 2 * size * math.cos(a)) * 16), int((cy - 2 * size * math.sin(a)) * 16))
        cv2.line(img, (int(cx * 16), int(cy * 16)), end, colour, 1, cv2.LINE_AA, shift=4)
    cv2.circle(img, (int(cx), int(cy)), int(size * 0.05), colour, -1, cv2.LINE_AA)
    return img.astype(np.float32) / 255.0


def _text(rng: np.random.Generator, size: int) -> np.ndarray:
    paper = int(rng.uniform(225, 250))
    img = np.full((size, size, 3), paper, np.uint8)
    fonts = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX)
    words = "the quick brown fox jumps over a lazy dog 0123456789 RESTORE reason PSNR".split()
    y, scale = int(rng.uniform(14, 30)), float(rng.uniform(0.35, 0.8))
    while y < size:
        line = " ".join(words[int(i)] for i in rng.integers(0, len(words), 6))
        font = fonts[int(rng.integers(len(fonts)))]
        ink = int(rng.uniform(0, 40))
        cv2.putText(img, line, (4, y), font, scale, (ink, ink, ink), 1, cv2.LINE_AA)
        y += int(30 * scale + rng.uniform(4, 10))
    return img.astype(np.float32) / 255.0


def _fabric(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    period = rng.uniform(6.0, 10.0) / size  # near the 8 px JPEG block
    angle = rng.uniform(0, math.pi / 2)
    u = x * math.cos(angle) - y * math.sin(angle)
    v = x * math.sin(angle) + y * math.cos(angle)
    warp = 0.15 * period * (_pink(rng, size, 2.0) - 0.5)  # threads are not ruler-straight
    over = np.sin(2 * np.pi * (u + warp) / period) * np.sin(2 * np.pi * (v + warp) / period)
    threads = 0.5 + 0.35 * over + 0.08 * (_pink(rng, size, 0.8) - 0.5)  # plus fibre texture
    colour = np.array(rng.uniform(0.25, 0.85, 3), np.float32)
    return threads[..., None] * colour + 0.05


def _foliage(rng: np.random.Generator, size: int) -> np.ndarray:
    leaves = _pink(rng, size, rng.uniform(0.9, 1.3))
    gaps = _pink(rng, size, 1.8)
    green = np.array([rng.uniform(0.15, 0.4), rng.uniform(0.35, 0.6), rng.uniform(0.05, 0.2)], np.float32)
    img = leaves[..., None] * green * 1.6
    return img * (0.35 + 0.65 * (gaps > np.quantile(gaps, 0.25)))[..., None]


def _wall(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    colour = np.array(rng.uniform(0.55, 0.9, 3), np.float32)
    light = 1.0 - 0.15 * (rng.uniform(0.5, 1.5) * x + rng.uniform(0, 0.5) * y) / 2.0
    plaster = 1.0 + 0.015 * (_pink(rng, size, 1.2) - 0.5)  # faint, below a noise estimator's floor
    return colour * (light * plaster)[..., None]


def _sky(rng: np.random.Generator, size: int) -> np.ndarray:
    clouds = _pink(rng, size, 2.2)
    cover = np.clip((clouds - rng.uniform(0.45, 0.7)) * 3.0, 0.0, 1.0)[..., None]
    return _sky_gradient(rng, size) * (1 - cover) + np.float32(rng.uniform(0.85, 0.97)) * cover


def _night(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    img = np.stack([0.02 + 0.02 * (1 - y), 0.02 + 0.02 * (1 - y), 0.04 + 0.04 * (1 - y)], -1)
    canvas = (img * 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 6))):  # dark building blocks with lit windows
        x0, w = int(rng.uniform(-0.1, 0.9) * size), int(rng.uniform(0.15, 0.35) * size)
        top = int(rng.uniform(0.2, 0.6) * size)
        cv2.rectangle(canvas, (x0, top), (x0 + w, size), tuple(int(v) for v in rng.uniform(8, 25, 3)), -1)
        for wy in range(top + 6, size - 6, 14):
            for wx in range(x0 + 4, x0 + w - 8, 12):
                if rng.random() < 0.35:
                    warm = tuple(int(v) for v in (rng.uniform(200, 255), rng.uniform(160, 220), rng.uniform(60, 130)))
                    cv2.rectangle(canvas, (wx, wy), (wx + 5, wy + 7), warm, -1)
    img = canvas.astype(np.float32) / 255.0
    lamps = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(2, 6))):
        lamps[int(rng.uniform(0.3, 0.8) * size), int(rng.uniform(0, 1) * size)] = 1.0
    glow = cv2.GaussianBlur(lamps, (0, 0), size * 0.04) * (size * 0.04) ** 2 * 2.0
    core = cv2.GaussianBlur(lamps, (0, 0), 1.2) * 20.0
    light = np.clip(glow * 0.5 + core, 0, None)[..., None] * np.array([1.0, 0.85, 0.6], np.float32)
    return img + light  # lamp cores clip at white: exposed for the lights


_BUILDERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "photo": _photo, "wires": _wires, "stars": _stars, "spokes": _spokes, "text": _text, "fabric": _fabric,
    "foliage": _foliage, "wall": _wall, "sky": _sky, "night": _night,
}  # fmt: skip
if set(_BUILDERS) != set(FAMILIES):  # pragma: no cover
    raise ImportError("rl.negatives: every family needs a builder and a description")


def clean_negatives(
    rng: np.random.Generator, n: int, size: int = 256, families: tuple[str, ...] | None = None
) -> list[Negative]:
    """``n`` clean negatives of ``size`` x ``size`` px, cycling through ``families`` (all of :data:`FAMILIES`).

    Args:
        rng: The random generator (the only source of randomness: same generator state, same images).
        n: How many.
        size: Side in px (at least 32).
        families: Which families, in cycling order; ``None`` for all.

    Returns:
        Negatives whose images are ``float32 size x size x 3`` in [0, 1], on exact 8-bit levels, undegraded.

    Raises:
        ValueError: For an unknown family, ``n < 0`` or ``size < 32``.

    """
    names = tuple(families or FAMILIES)
    unknown = [f for f in names if f not in FAMILIES]
    if unknown or n < 0 or size < 32:
        raise ValueError(f"clean_negatives: families must be among {list(FAMILIES)} (got {unknown}), n >= 0 and "
                         f"size >= 32 (got n={n}, size={size})")  # fmt: skip
    out = []
    for i in range(n):
        family = names[i % len(names)]
        out.append(Negative(f"{i:03d}_{family}", family, _eight_bit(_BUILDERS[family](rng, size))))
    return out
