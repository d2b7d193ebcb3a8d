"""A CPU embedder with no weights whose vectors stay close under degradation: the default of reference retrieval.

The descriptor reads what survives noise, blur, JPEG, haze, low light, rain and down-sampling: the coarse layout of
tone and colour, the colour palette, and the orientation, scale and local pattern of structure, all at 64x64 after
light normalisation (thin rain streaks taken out first). Every step is a fixed formula, so vectors are
deterministic, need no fitting data, and change only with :data:`VERSION`. Block choice and weights were tuned with
``bench/retrieval.py`` on seeds 10-25, not on its default seeds (see the benchmark for the numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

#: Bump whenever the descriptor changes: libraries record it and refuse vectors from another version.
VERSION = "4"

_RAIN_MAX_SIDE = 320  # rain streaks are looked for at native resolution, or with the long side shrunk to this
_RAIN_WIDTH = 5  # px: bright structures narrower than this across (streaks are 1-3 px wide where they are drawn)...
_RAIN_LENGTH = 9  # px: ...and at least this long along one of _RAIN_ANGLES count as rain
_RAIN_ANGLES = (65.0, 77.5, 90.0, 102.5, 115.0)  # deg from +x; rain falls within about 25 deg of vertical
_MID = 128  # first area-resize target; a 3x3 median there removes what is left of streaks and impulse noise
_SIZE = 64  # working resolution of every feature
_EQ_BINS = 64
_EQ_CLIP = 2.5  # contrast limit of the luma equalisation, in multiples of a uniform histogram bin
_CHROMA_FLOOR = 4.0  # Lab units: below this spread an image counts as grey and its chroma is not amplified
_ROW_SIGMA = 2.0  # px at 64x64: vertical extent of the row bands the luma is normalised over (see _row_normalise)
_LBP_TOL = 0.05  # a neighbour counts as brighter in the local binary patterns only by this much (z is in [-1, 1])
_THUMB = 8  # side of the thumbnail of the row-normalised luma
_POOL_SIZE = 16  # spatial cells are pooled from this resolution
_Z_SMOOTH = 1.2  # px at 64x64: pre-smoothing of that luma, so residual noise is not normalised up to structure
_STRETCH_SIZE, _STRETCH_SIGMA, _STRETCH_FLOOR = 9, 4.0, 0.15  # local min/max colour stretch
_ORIENT_BINS = 6
_HUE_BINS = 8
_DCT_SIZE, _DCT_MAX_ORDER = 32, 7  # luma layout keeps DCT coefficients with 1 <= u + v <= 7
_GABOR_WAVELENGTHS, _GABOR_ORIENTATIONS = (4.0, 8.0, 16.0), 6  # px at 64x64
_SPEC_RADII, _SPEC_ORIENTATIONS, _SPEC_RANGE = 6, 8, (1.0, 24.0)  # cycles per 64 px, log-spaced
_EPS = 1e-6
#: Relative weight of each block in the cosine (blocks are unit vectors; the cosine is their weighted mean).
_WEIGHTS = {
    "tone_layout": 1.2,  # 2x2 + 4x4 cells: equalised luma, its local contrast, chroma
    "contrast_layout": 0.4,  # the local-contrast part of tone_layout alone (it survives haze and colour shifts best)
    "local_colour": 0.7,  # 2x2 + 4x4 cells of the locally stretched colour (cancels haze and shading)
    "palette": 2.0,  # hue histogram weighted by saturation, plus an achromatic bin; 1x1 + 2x2
    "bands": 0.2,  # share of detail energy in three scale bands; 1x1 + 2x2 + 4x4
    "spectrum": 8.4,  # orientation anisotropy of the power spectrum per frequency band (translation-invariant)
    "gradients": 1.25,  # orientation histograms of the row-normalised luma; 1x1 + 2x2 + 4x4
    "gist": 4.0,  # Gabor energies, 3 scales x 6 orientations, of the row-normalised luma; 4x4
    "patterns": 1.0,  # rotation-invariant local binary patterns of the row-normalised luma; 1x1 + 2x2
    "thumbnail": 0.5,  # the row-normalised luma itself at 8x8
    "dct_layout": 0.5,  # low-frequency DCT of the equalised luma
}


class GlobalDescriptorEmbedder:
    """Multi-scale colour, layout and structure descriptor; deterministic, no weights, mirror-invariant.

    Steps for each ``float32 HxWx3 RGB in [0, 1]`` image: rain streaks (thin, bright, near-vertical, elongated)
    are subtracted at native resolution (long side at most 320), then area-resize to 128x128 (the aspect ratio is
    not kept, so crops of another shape still compare), 3x3 median, area-resize to 64x64. From there, three
    normalised views: CIE Lab luma stretched by a contrast-limited histogram equalisation (exposure, gamma and a
    uniform veil cancel; flat regions are not blown up into noise) with chroma centred on its median and scaled by
    its spread (white balance and desaturation cancel); the luma normalised by its mean and deviation over thin
    bands of rows (haze that thickens towards the horizon cancels row by row); and the RGB stretched between local
    minimum and maximum envelopes.
    The blocks of :data:`_WEIGHTS` are read from those, on the image and on its mirror; with ``f`` and ``m``
    the two, each block becomes ``[f + m, |f - m|]`` (equal for an image and its mirror), is power-normalised
    (signed square root), L2-normalised and weighted, and the whole vector is L2-normalised, so an inner
    product is a weighted mean of per-block cosines. Spatial cells are pooled with Gaussian-weighted windows,
    so a shifted crop moves features smoothly.

    Attributes:
        name: Registry name, ``"global"``.
        version: :data:`VERSION`.
        dim: Length of each vector.
        default_threshold: Cosine below which a match is too weak to use as a reference. Cosines of this
            descriptor run high (unrelated images often score 0.8); on bench/retrieval.py (seeds 10-25) 0.865
            keeps about 65% of true second-view matches and lets the best wrong match through for about 16% of
            queries, the threshold with the widest gap between the two.

    """

    name = "global"
    version = VERSION
    default_threshold = 0.865

    def __init__(self) -> None:
        self.dim = int(self._embed_one(np.full((8, 8, 3), 0.5, np.float32)).size)

    def __repr__(self) -> str:
        return f"GlobalDescriptorEmbedder(version={self.version!r}, dim={self.dim})"

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Embed images.

        Args:
            images: Each ``float32 HxWx3 RGB in [0, 1]`` (uint8 and other float dtypes are converted).

        Returns:
            ``float32 (n, dim)``, rows of unit norm.

        Raises:
            ValueError: For an image that is not HxWx3 or holds non-finite values.

        """
        out = np.zeros((len(images), self.dim), np.float32)
        for i, img in enumerate(images):
            out[i] = self._embed_one(img)
        return out

    def _embed_one(self, img: np.ndarray) -> np.ndarray:
        views = _normalise(_as_float_rgb(img))
        f = _features(views)
        m = _features({k: np.ascontiguousarray(v[:, ::-1]) for k, v in views.items()})
        total = sum(_WEIGHTS.values())
        blocks = []
        for key, weight in _WEIGHTS.items():
            v = np.concatenate([f[key] + m[key], np.abs(f[key] - m[key])])
            v = np.sign(v) * np.sqrt(np.abs(v))
            blocks.append(v * (np.sqrt(weight / total) / max(float(np.linalg.norm(v)), _EPS)))
        vec = np.concatenate(blocks).astype(np.float32)
        return vec / max(float(np.linalg.norm(vec)), _EPS)


def _as_float_rgb(img: np.ndarray) -> np.ndarray:
    x = np.asarray(img)
    if x.ndim != 3 or x.shape[2] != 3 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"expected an HxWx3 RGB image, got an array of shape {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("image holds NaN or infinite values")
    return np.clip(x, 0.0, 1.0)


def _normalise(x: np.ndarray) -> dict[str, np.ndarray]:
    """The 64x64 normalised views: ``lum``, ``chroma`` (HxWx2), ``z`` (row-normalised luma), ``stretched`` (HxWx3)."""
    x = _remove_rain(x)
    h, w = x.shape[:2]
    mid = cv2.resize(x, (_MID, _MID), interpolation=cv2.INTER_AREA if h * w >= _MID * _MID else cv2.INTER_LINEAR)
    small = cv2.resize(cv2.medianBlur(mid, 3), (_SIZE, _SIZE), interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab)
    lum = _equalise(lab[..., 0])
    chroma = lab[..., 1:] - np.median(lab[..., 1:].reshape(-1, 2), axis=0)
    spread = float(np.percentile(np.sqrt((chroma**2).sum(axis=2)), 90))
    return {
        "lum": lum,
        "chroma": (chroma / max(spread, _CHROMA_FLOOR)).astype(np.float32),
        "z": np.tanh(_row_normalise(cv2.GaussianBlur(lum, (0, 0), _Z_SMOOTH)) / 2.0).astype(np.float32),
        "stretched": _local_stretch(small),
    }


def _line_kernels() -> list[np.ndarray]:
    """One-pixel line structuring elements, _RAIN_LENGTH long, at each of _RAIN_ANGLES."""
    kernels = []
    c = _RAIN_LENGTH // 2
    for angle in _RAIN_ANGLES:
        k = np.zeros((_RAIN_LENGTH, _RAIN_LENGTH), np.uint8)
        dx, dy = c * np.cos(np.radians(angle)), -c * np.sin(np.radians(angle))
        cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1, 1)
        kernels.append(k)
    return kernels


def _remove_rain(x: np.ndarray) -> np.ndarray:
    """Subtract thin, bright, near-vertical, elongated structures (rain streaks) from every channel.

    Streaks are drawn a few pixels wide at the image's own resolution, so they are looked for there (large images
    are shrunk first; their streaks are wider, and the 3x3 median after the first resize takes what is left). A
    horizontal top-hat keeps what is brighter than its surroundings and narrower than _RAIN_WIDTH across; an
    opening with a line along any rain direction then keeps only what is also _RAIN_LENGTH long, so dots, blobs,
    edges and most texture stay in the image and in its library twin alike.
    """
    h, w = x.shape[:2]
    if max(h, w) > _RAIN_MAX_SIDE:
        f = _RAIN_MAX_SIDE / max(h, w)
        x = cv2.resize(x, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    grey = cv2.transform(x, np.full((1, 3), 1 / 3, np.float32))  # the channel mean; rain streaks are grey
    across = cv2.getStructuringElement(cv2.MORPH_RECT, (_RAIN_WIDTH, 1))
    thin = grey - cv2.morphologyEx(grey, cv2.MORPH_OPEN, across)
    streaks = cv2.morphologyEx(thin, cv2.MORPH_OPEN, _RAIN_LINES[0])
    for k in _RAIN_LINES[1:]:
        streaks = cv2.max(streaks, cv2.morphologyEx(thin, cv2.MORPH_OPEN, k))
    out = cv2.subtract(x, cv2.merge([streaks, streaks, streaks]))
    return np.maximum(out, 0.0, out=out)


def _equalise(lum: np.ndarray) -> np.ndarray:
    """Contrast-limited global histogram equalisation of Lab L between its 1st and 99th percentiles."""
    lo, hi = np.percentile(lum, (1.0, 99.0))
    if hi - lo < 1.0:  # flat: nothing to stretch, and stretching would only amplify noise
        return np.full_like(lum, 0.5)
    t = np.clip((lum - lo) / (hi - lo), 0.0, 1.0)
    hist = np.bincount(np.minimum((t * _EQ_BINS).astype(np.int64), _EQ_BINS - 1).ravel(), minlength=_EQ_BINS)
    hist = hist.astype(np.float64)
    limit = _EQ_CLIP * hist.sum() / _EQ_BINS
    for _ in range(4):  # redistributing the excess can push bins over the limit again; a few rounds settle it
        excess = np.maximum(hist - limit, 0.0).sum()
        hist = np.minimum(hist, limit) + excess / _EQ_BINS
    cdf = np.concatenate([[0.0], np.cumsum(hist)]) / hist.sum()
    return np.interp(t, np.linspace(0.0, 1.0, _EQ_BINS + 1), cdf).astype(np.float32)


def _row_normalise(lum: np.ndarray) -> np.ndarray:
    """(L - row mean) / (row std + floor) over Gaussian-weighted bands of rows; the floor keeps flat rows flat.

    Haze thickens with distance, which in most views grows with height in the frame, so its veil and its loss of
    contrast change fast from row to row (at the horizon most of all) but little along a row: statistics of thin
    row bands cancel them, where a round window leaves the horizon as a false edge. Taken over whole rows they also
    leave flat stretches of a row that holds structure flat, rather than blowing their noise up to structure. The
    floor is a share of the median band std.
    """
    stats = np.hstack([lum.mean(axis=1, keepdims=True), (lum * lum).mean(axis=1, keepdims=True)])
    stats = cv2.GaussianBlur(stats, (1, 0), sigmaX=0.1, sigmaY=_ROW_SIGMA)  # along the rows only
    mu = stats[:, :1]
    sd = np.sqrt(np.maximum(stats[:, 1:] - mu * mu, 0.0))
    return (lum - mu) / (sd + 0.3 * float(np.median(sd)) + 1e-4)


def _local_stretch(rgb: np.ndarray) -> np.ndarray:
    """Per channel, map the smoothed local minimum to 0 and maximum to 1 (a spatially varying veil cancels)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (_STRETCH_SIZE, _STRETCH_SIZE))
    lo = cv2.GaussianBlur(cv2.erode(rgb, kernel), (0, 0), _STRETCH_SIGMA)
    hi = cv2.GaussianBlur(cv2.dilate(rgb, kernel), (0, 0), _STRETCH_SIGMA)
    span = hi - lo
    floor = max(float(np.median(span)) * _STRETCH_FLOOR, 1e-3)
    return np.clip((rgb - lo) / np.maximum(span, floor), -0.5, 1.5).astype(np.float32)


def _pool(maps: np.ndarray, g: int) -> np.ndarray:
    """Soft cell means of ``maps`` (HxWxC) on a g x g grid (g divides 16), as ``(g * g, C)``: blur, then area.

    The blur runs after an area reduction to 16x16: the cells come out nearly the same as blurring at full size,
    for a small part of the cost with many channels.
    """
    c = maps.shape[2]
    if g == 1:
        return maps.reshape(-1, c).mean(axis=0, keepdims=True)
    small = cv2.resize(maps, (_POOL_SIZE, _POOL_SIZE), interpolation=cv2.INTER_AREA).reshape(_POOL_SIZE, _POOL_SIZE, c)
    blurred = cv2.GaussianBlur(small, (0, 0), _POOL_SIZE / g / 2.5, borderType=cv2.BORDER_REFLECT)
    n = _POOL_SIZE // g
    return blurred.reshape(g, n, g, n, c).mean(axis=(1, 3)).reshape(g * g, c)


def _cell_distributions(maps: np.ndarray, grids: Sequence[int]) -> np.ndarray:
    """Per cell, the channels of ``maps`` as a distribution (sum 1) minus the uniform one, for each grid."""
    n = maps.shape[2]
    out = []
    for g in grids:
        cells = _pool(maps, g)
        out.append((cells / np.maximum(cells.sum(axis=1, keepdims=True), _EPS) - 1.0 / n).ravel())
    return np.concatenate(out)


def _centred_cells(maps: np.ndarray, grids: Sequence[int]) -> np.ndarray:
    """Cell means minus their mean over the cells (layout relative to the image's own average), channel-major."""
    return np.concatenate([(c - c.mean(axis=0)).T.ravel() for c in (_pool(maps, g) for g in grids)])


def _orientations(img: np.ndarray) -> np.ndarray:
    """HxWx6 soft-binned unsigned gradient orientations (over [0, pi)) weighted by magnitude, after smoothing."""
    smooth = cv2.GaussianBlur(img, (0, 0), 1.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy).ravel()
    pos = ((np.arctan2(gy, gx) % np.pi) / np.pi * _ORIENT_BINS - 0.5).ravel()
    b0 = np.floor(pos).astype(np.int64)
    w1 = pos - b0
    base, n = np.arange(mag.size) * _ORIENT_BINS, mag.size * _ORIENT_BINS
    ori = np.bincount(base + b0 % _ORIENT_BINS, mag * (1.0 - w1), n)
    ori += np.bincount(base + (b0 + 1) % _ORIENT_BINS, mag * w1, n)
    return ori.astype(np.float32).reshape(*img.shape, _ORIENT_BINS)


def _local_patterns(img: np.ndarray) -> np.ndarray:
    """HxWx10 one-hot rotation-invariant uniform local binary patterns (8 neighbours at radius 1).

    Codes 0-8 count the brighter neighbours of a pattern with at most two bright/dark transitions around the
    circle, code 9 takes the rest. Comparisons only, so any monotonic change of tone (haze, exposure, gamma) that
    is smooth over three pixels leaves them alone; a neighbour must be brighter by _LBP_TOL, so flat areas read as
    flat rather than as noise. The codes are the same for an image and its mirror.
    """
    h, w = img.shape
    p = np.pad(img, 1, mode="reflect")
    ring = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))
    bits = np.stack([p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] >= img + _LBP_TOL for dy, dx in ring])
    bits = bits.astype(np.int8)
    transitions = np.abs(np.diff(np.concatenate([bits, bits[:1]]), axis=0)).sum(axis=0)
    code = np.where(transitions <= 2, bits.sum(axis=0), 9)
    return np.eye(10, dtype=np.float32)[code]


def _palette(chroma: np.ndarray) -> np.ndarray:
    """HxWx9: hue soft-binned into 8 sectors weighted by (clipped) saturation, plus an achromatic channel."""
    a, b = chroma[..., 0].ravel(), chroma[..., 1].ravel()
    sat = np.sqrt(a * a + b * b)
    pos = (np.arctan2(b, a) % (2 * np.pi)) / (2 * np.pi) * _HUE_BINS - 0.5
    b0 = np.floor(pos).astype(np.int64)
    w1 = pos - b0
    weight = np.clip(sat, 0.0, 2.0)
    k = _HUE_BINS + 1
    base, n = np.arange(sat.size) * k, sat.size * k
    out = np.bincount(base + b0 % _HUE_BINS, weight * (1.0 - w1), n)
    out += np.bincount(base + (b0 + 1) % _HUE_BINS, weight * w1, n)
    out += np.bincount(base + _HUE_BINS, np.clip(1.0 - sat, 0.0, 1.0), n)
    return out.astype(np.float32).reshape(*chroma.shape[:2], k)


def _gabor_bank() -> np.ndarray:
    """One-sided (analytic) log-Gabor transfer functions on the 64x64 FFT grid, so |response| is local energy."""
    fy = np.fft.fftfreq(_SIZE)[:, None]
    fx = np.fft.fftfreq(_SIZE)[None, :]
    r = np.sqrt(fx**2 + fy**2) + 1e-9
    theta = np.arctan2(fy, fx)
    bank = []
    for wavelength in _GABOR_WAVELENGTHS:
        radial = np.exp(-(np.log(r * wavelength) ** 2) / (2 * 0.55**2))
        for k in range(_GABOR_ORIENTATIONS):
            d = np.angle(np.exp(1j * (theta - k * np.pi / _GABOR_ORIENTATIONS)))
            bank.append(radial * np.exp(-(d**2) / (2 * (np.pi / _GABOR_ORIENTATIONS / 1.2) ** 2)))
    return np.stack(bank).astype(np.complex64)


def _spectrum_bins() -> np.ndarray:
    """For each rfft2 coefficient of a 64x64 image, its (radius, orientation) bin, or -1 outside the band."""
    fy = np.fft.fftfreq(_SIZE)[:, None] * _SIZE
    fx = np.fft.rfftfreq(_SIZE)[None, :] * _SIZE
    r = np.sqrt(fx**2 + fy**2)
    lo, hi = _SPEC_RANGE
    rb = np.clip((np.log(np.maximum(r, 1e-6) / lo) / np.log(hi / lo) * _SPEC_RADII).astype(int), 0, _SPEC_RADII - 1)
    ob = np.clip(((np.arctan2(fy, fx) % np.pi) / np.pi * _SPEC_ORIENTATIONS).astype(int), 0, _SPEC_ORIENTATIONS - 1)
    return np.where((r >= lo) & (r < hi), rb * _SPEC_ORIENTATIONS + ob, -1)


_RAIN_LINES = _line_kernels()
_GABOR = _gabor_bank()
_SPEC_BINS = _spectrum_bins()
_SPEC_MASK = _SPEC_BINS >= 0
_SPEC_COUNTS = np.maximum(np.bincount(_SPEC_BINS[_SPEC_MASK], minlength=_SPEC_RADII * _SPEC_ORIENTATIONS), 1)
_HANN = np.outer(np.hanning(_SIZE), np.hanning(_SIZE)).astype(np.float32)
_DCT_KEEP = np.add.outer(np.arange(_DCT_SIZE), np.arange(_DCT_SIZE))
_DCT_KEEP = (_DCT_KEEP >= 1) & (_DCT_KEEP <= _DCT_MAX_ORDER)


def _features(views: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    lum, chroma, z, stretched = views["lum"], views["chroma"], views["z"], views["stretched"]
    mu = cv2.GaussianBlur(lum, (0, 0), 2.0)
    contrast = np.sqrt(np.maximum(cv2.GaussianBlur(lum * lum, (0, 0), 2.0) - mu * mu, 0.0))
    tone = np.dstack([lum, contrast, chroma])
    thumb = cv2.resize(z, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA)

    sl = stretched.mean(axis=2)
    opponent = np.dstack(
        [sl, stretched[..., 0] - stretched[..., 1], 0.5 * (stretched[..., 0] + stretched[..., 1]) - stretched[..., 2]]
    )

    g1, g2, g4, g8 = (cv2.GaussianBlur(lum, (0, 0), s) for s in (1.0, 2.0, 4.0, 8.0))
    bands = np.dstack([(g1 - g2) ** 2, (g2 - g4) ** 2, (g4 - g8) ** 2])

    power = np.fft.rfft2((z - z.mean()) * _HANN)
    power = (power.real**2 + power.imag**2).astype(np.float64)
    spec = np.bincount(_SPEC_BINS[_SPEC_MASK], power[_SPEC_MASK], _SPEC_RADII * _SPEC_ORIENTATIONS) / _SPEC_COUNTS
    spec = np.log(spec + 1e-6).reshape(_SPEC_RADII, _SPEC_ORIENTATIONS)

    energy = np.abs(np.fft.ifft2(np.fft.fft2(z)[None] * _GABOR)).astype(np.float32)

    coef = cv2.dct(cv2.resize(lum, (_DCT_SIZE, _DCT_SIZE), interpolation=cv2.INTER_AREA))

    return {
        "tone_layout": _centred_cells(tone, (2, 4)),
        "contrast_layout": _centred_cells(np.ascontiguousarray(contrast[..., None]), (2, 4)),
        "local_colour": _centred_cells(opponent.astype(np.float32), (2, 4)),
        "palette": _cell_distributions(_palette(chroma), (1, 2)),
        "bands": _cell_distributions(bands.astype(np.float32), (1, 2, 4)),
        "spectrum": (spec - spec.mean(axis=1, keepdims=True)).ravel().astype(np.float32),
        "gradients": _cell_distributions(_orientations(z), (1, 2, 4)),
        "gist": _cell_distributions(np.ascontiguousarray(energy.transpose(1, 2, 0)), (4,)),
        "patterns": _cell_distributions(_local_patterns(z), (1, 2)),
        "thumbnail": (thumb - thumb.mean()).ravel(),
        "dct_layout": (coef[_DCT_KEEP] / _DCT_SIZE).astype(np.float32),
    }
