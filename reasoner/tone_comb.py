"""A tone curve applied to an 8-bit image, read off the levels it left empty (the histogram's comb).

A curve steeper than 1 maps neighbouring 8-bit levels more than one level apart, so some output levels receive no
pixel at all: over a band where the curve's slope is ``s > 1`` a share ``1 - 1 / s`` of the levels stays empty, in a
regular comb, however dense the histogram is (Stamm & Liu 2010, "Forensic detection of image manipulation using
statistical intrinsic fingerprints", read contrast enhancement off exactly these gaps). A darkening curve
``V' = exposure * V ** gamma`` (gamma > 1: the shadows pressed together, the highlights pulled apart) combs only the
highlights, more towards white; its gaps give the gamma and the exposure, where the image's brightness alone cannot
tell a dark photo from a darkened one. A camera's own exposure is set before the 8 bits are written (no comb), and
noise, blur or compression after the curve fill the gaps in, so the comb speaks only of a curve laid on a finished
8-bit image: an editor's darkening, or a synthesiser's (AgenticIR/MiO's gamma on the HSV value).

Whether the curve kept hue and saturation is read too: a curve on the value (max RGB) that scales the other two
channels with it leaves them uncombed (their levels are the value's times a continuous ratio), a curve on each
channel combs all three. The brightening inverts the one that was laid (:func:`restorer.operators.low_light.brighten`).

numpy only; reads a regular subsample of at most :data:`COMB_PIXELS` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reasoner.common import channel_max, content_key, remembered, subsample

#: Pixels read (a regular subsample of a larger image keeps the comb: it samples the same levels).
COMB_PIXELS = 1 << 22
#: Width of the bands of 8-bit levels the gap share is read over, and the first and last level read.
BAND, FIRST_LEVEL, LAST_LEVEL = 16, 8, 248
#: A level counts where the histogram around it (9 levels wide) holds at least this many pixels per level; an empty
#: level there is unlikely to be chance (a Poisson count of 6 is 0 with probability 0.25%).
MIN_COUNT = 6.0
#: An empty level is a gap of the comb only with filled levels within this many on both sides (a slope up to 4); the
#: empty end of a range that stops short of white is not a comb.
GAP_REACH = 3
#: The fit: gamma and exposure grids of ``V' = exposure * V ** gamma``, exposures no lower than the image's top.
GAMMAS = np.round(np.arange(1.0, 3.0001, 0.02), 2)
EXPOSURES = np.round(np.arange(0.8, 1.0001, 0.02), 2)
#: What a comb must show to be read as a darkening curve (tuned on 256 px crops of the held-out photos under every
#: zoo model, seeds 0-1: MiO's gamma 1.4-2.0 read within 0.06 where nothing filled the gaps in, shifts and squashes
#: and every clean photo, whole or cropped, showed no comb): at least :data:`MIN_BANDS` bands read, the widest gap
#: share in the highlights (level 128 up) at least :data:`MIN_TOP_GAPS`, the shadows (bands centred below
#: :data:`SHADOWS`, where a gamma up to 2 is no steeper than 1) without gaps
#: (at most :data:`MAX_SHADOW_GAPS`: a stretched scientific image, the moon, is combed at both ends), the curve's
#: root-mean-square misfit at most :data:`MAX_MISFIT` and its gamma at least :data:`MIN_GAMMA`.
MIN_BANDS, MIN_TOP_GAPS, MAX_SHADOW_GAPS, MAX_MISFIT, MIN_GAMMA, SHADOWS = 6, 0.15, 0.05, 0.05, 1.2, 0.25
#: Bands of the highlights (centred at level 128 or up, eight in all) that must be read: the gap profile is fitted
#: across the highlights, not on a few lit patches (a synthetic night street of bench/lomo.py's negatives: three
#: bands of lit windows, spikes of 48 pixels with empty levels between, read as gamma 1.98 before this bound; 1 of
#: 1,000 further negatives still reads a comb). The 51 comb readings on the protocols' seeds 0-7 read 7 or 8; of 47
#: curve-darkened calibration crops read before, 44 still are (5 bands lost 9: moon and deep-field crops).
MIN_TOP_BANDS = 4
#: The filled levels of a curve's comb each hold one or two source levels' pixels, evenly; a histogram of flat
#: patches (lit windows, graphics) is spikes with empty levels between them. Per highlight band, the share of filled
#: levels holding under :data:`LUMP_FRACTION` of the band's median filled count; the comb is read only where the
#: median of that share over the bands is at most :data:`MAX_LUMPY` (MiO's gamma on held-out crops: 0 on each; a
#: synthetic night street's windows, rl.negatives: 0.07-0.21).
LUMP_FRACTION, MAX_LUMPY = 0.25, 0.05
#: Widest gap share in the highlights of the other channels (min and median RGB) that still counts as uncombed: the
#: curve was laid on the value and hue and saturation kept.
VALUE_ONLY_GAPS = 0.05


@dataclass(frozen=True)
class ToneComb:
    """A darkening curve ``V' = exposure * V ** gamma`` read off the comb of 8-bit levels it left.

    ``top_gaps``: the widest share of empty levels in a band of the highlights; ``misfit``: the curve's
    root-mean-square misfit to the bands' shares; ``value_only``: the curve was laid on the value (max RGB) with
    hue and saturation kept, not on each channel.
    """

    exposure: float
    gamma: float
    top_gaps: float
    misfit: float
    value_only: bool

    def sentence(self) -> str:
        """What the comb says, for the diagnosis' reasoning."""
        laid = "on brightness, hue and saturation kept" if self.value_only else "on each channel"
        return (
            f"up to {self.top_gaps:.0%} of the 8-bit levels in the highlights are empty, in a comb that widens "
            f"towards white while the shadows are full: a tone curve of gamma {self.gamma:.2f} was laid on the "
            f"finished 8-bit image ({laid})"
        )


def level_bands(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (0-1) of the bands of 8-bit levels read in ``channel`` (HxW in [0, 1]) and each band's gap share.

    >>> ramp = np.rint(np.linspace(0, 1, 256 * 64) * 255).reshape(128, 128) / 255  # every 8-bit level, 64 times
    >>> centres, gaps = level_bands(ramp)
    >>> len(centres), float(gaps.max())
    (15, 0.0)
    >>> centres, gaps = level_bands(ramp**2)  # a curve steeper than 1 in the highlights, on 8-bit levels
    >>> bool(gaps[-1] > 0.3), bool(gaps[0] == 0)
    (True, True)
    """
    return _bands(_counts(channel))


def _counts(channel: np.ndarray) -> np.ndarray:
    return np.bincount(np.rint(np.clip(channel, 0.0, 1.0) * 255.0).astype(np.int64).ravel(), minlength=256)


def _bands(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = counts.astype(np.float64)
    local = np.convolve(counts, np.ones(9) / 9.0, mode="same")
    filled = counts > 0
    padded = np.concatenate([np.zeros(GAP_REACH, bool), filled, np.zeros(GAP_REACH, bool)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * GAP_REACH + 1)
    gap = ~filled & windows[:, :GAP_REACH].any(axis=1) & windows[:, GAP_REACH + 1 :].any(axis=1)
    centres, shares = [], []
    for lo in range(FIRST_LEVEL, LAST_LEVEL, BAND):
        band = np.arange(lo, lo + BAND)
        read = band[(local[band] >= MIN_COUNT) & (filled[band] | gap[band])]
        if len(read) >= BAND // 2:
            centres.append((lo + BAND / 2) / 255.0)
            shares.append(float(gap[read].mean()))
    return np.asarray(centres), np.asarray(shares)


def comb_of(centres: np.ndarray, exposure: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Share of empty levels at output level ``centres`` under ``V' = exposure * V ** gamma``: ``1 - 1 / slope``.

    The slope at output ``c`` is ``gamma * exposure ** (1 / gamma) * c ** ((gamma - 1) / gamma)``; broadcasts.

    >>> round(float(comb_of(np.array(1.0), np.array(1.0), np.array(2.0))), 2)  # slope 2 at white
    0.5
    """
    slope = gamma * exposure ** (1.0 / gamma) * centres ** ((gamma - 1.0) / gamma)
    return np.clip(1.0 - 1.0 / np.maximum(slope, 1e-6), 0.0, None)


def lumpy_share(channel: np.ndarray) -> float:
    """Median over the highlight bands (level 128 up) of the share of filled levels far below the band's median.

    See :data:`MAX_LUMPY`; 0 where no band holds enough filled levels to say.

    >>> levels = np.arange(128, 248)
    >>> patches = np.repeat(levels / 255, np.where(levels % 2, 50, 2))  # a flat patch on every other level
    >>> lumpy_share(patches), lumpy_share(np.repeat(levels / 255, 50))
    (0.5, 0.0)
    """
    return _lumps(_counts(channel))


def _lumps(counts: np.ndarray) -> float:
    shares = []
    for lo in range(128, LAST_LEVEL, BAND):
        filled = counts[lo : lo + BAND][counts[lo : lo + BAND] > 0]
        if len(filled) >= BAND // 2:
            shares.append(float(np.mean(filled < LUMP_FRACTION * np.median(filled))))
    return float(np.median(shares)) if shares else 0.0


def _highlight_gaps(channel: np.ndarray) -> float:
    centres, shares = level_bands(channel)
    top = shares[centres >= 0.5]
    return float(top.max()) if len(top) else 0.0


def read_tone_comb(rgb: np.ndarray) -> ToneComb | None:
    """The darkening curve ``rgb``'s 8-bit levels show (:class:`ToneComb`), or None where they show none.

    >>> rng = np.random.default_rng(0)
    >>> scene = np.clip(rng.normal(0.5, 0.2, (256, 256, 1)) * rng.uniform(0.3, 1, (256, 256, 3)), 0, 1)
    >>> clean = np.rint(scene * 255) / 255  # a finished 8-bit photo
    >>> read_tone_comb(clean) is None
    True
    >>> v = clean.max(axis=2, keepdims=True)
    >>> dark = np.rint(clean * v ** 0.7 * 255) / 255  # V ** 1.7 on the value, hue and saturation kept
    >>> comb = read_tone_comb(dark)
    >>> abs(comb.gamma - 1.7) <= 0.1, comb.value_only
    (True, True)

    Args:
        rgb: float32 HxWx3 RGB in [0, 1], as loaded from an 8-bit file.

    """
    x = subsample(np.asarray(rgb, np.float32), COMB_PIXELS)
    # the diagnosis, each judged attempt and the brightening ask it of the same input: read once
    return remembered(_MEMO, content_key(x), lambda: _read(x))


#: The last few readings, by the content of the pixels read (:func:`read_tone_comb`).
_MEMO: dict = {}


def _read(x: np.ndarray) -> ToneComb | None:
    value = channel_max(x)
    counts = _counts(value)
    centres, shares = _bands(counts)
    if len(centres) < MIN_BANDS:
        return None
    top, shadows = shares[centres >= 0.5], shares[centres < SHADOWS]
    if len(top) < MIN_TOP_BANDS or top.max() < MIN_TOP_GAPS or (len(shadows) and shadows.max() > MAX_SHADOW_GAPS):
        return None
    # the curve reaches no higher than its exposure: the image's own top bounds it from below (the gaps alone let a
    # lower exposure trade against a higher gamma)
    exposures = EXPOSURES[EXPOSURES >= min(float(np.quantile(value, 0.999)), EXPOSURES[-1]) - 1e-6]
    e, g = np.meshgrid(exposures, GAMMAS, indexing="ij")
    misfit = np.sqrt(np.mean((comb_of(centres[:, None, None], e, g) - shares[:, None, None]) ** 2, axis=0))
    i, j = np.unravel_index(int(np.argmin(misfit)), misfit.shape)
    if misfit[i, j] > MAX_MISFIT or GAMMAS[j] < MIN_GAMMA or _lumps(counts) > MAX_LUMPY:
        return None
    ordered = np.sort(x, axis=2)
    others = max(_highlight_gaps(ordered[..., 0]), _highlight_gaps(ordered[..., 1]))
    return ToneComb(float(exposures[i]), float(GAMMAS[j]), float(top.max()), float(misfit[i, j]),
                    others <= VALUE_ONLY_GAPS)  # fmt: skip
