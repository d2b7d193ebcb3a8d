"""``rain``: thin bright streaks found as excess over the background that persists along the rain direction."""

from __future__ import annotations

import numpy as np

from reasoner.streaks import carried_excess, streak_map, streak_parts, structure_lines
from restorer.operators.filters import as_image, clip01

#: Px around a pixel the streak map reads (4 px shifts across, a 17 px line opening along, both ways).
STREAK_REACH = 24
#: Passes of the removal, each at this share of the strength (a half doubles its thresholds). Where streaks lie
#: within 4 px of each other, each raises the other's across-streak background, so a pass removes only part of
#: both; a second pass, on the image the first cleared, reads what is left, and takes only what now stands out
#: clearly. Each pass keeps the structure lines it finds and those the passes before it found (a tripod's leg the
#: first pass kept stands out more once the streaks beside it are gone). Chosen on crops of the calibration scenes
#: (80 under own, MiO and screen-blended rain, derained at the diagnosed angle; 30 clean, derained at a random angle
#: as a false detection would be) as the largest gain costing clean crops under 0.1 dB: one pass +5.06 / +5.70 /
#: +4.20 dB, clean 44.20 dB; a second at full strength +5.50 / +6.41 / +4.59, clean 42.88; at 0.7 +5.32 / +6.26 /
#: +4.48, 43.89; at 0.5 +5.26 / +6.12 / +4.37, 44.12. Held-out photos: one pass +3.88 / +4.95 / +2.74, clean 38.62;
#: with the half-strength second +4.01 / +5.26 / +2.84, 38.32 (full strength +4.13 / +5.45 / +2.99, 37.99). Tried:
#: a second pass at wider offsets (3, 5, 7), as good on MiO's rain, 6 dB worse on clean crops; a second pass
#: keeping only the first one's lines, which took a tripod's leg for a streak.
PASS_STRENGTHS = (1.0, 0.5)
#: Px around a pixel the deraining reads: each pass reads the last one's output.
REACH = len(PASS_STRENGTHS) * STREAK_REACH


def derain(
    img: np.ndarray, density: float, angle: float, strength: float = 1.0, structures: np.ndarray | None = None
) -> np.ndarray:
    """Remove thin bright rain streaks running along ``angle``, leaving thin bright structures alone.

    In each pass (:data:`PASS_STRENGTHS`), the background is the median of pixels 2-4 px to either side across
    the streak direction; the excess over it is rain where it persists along the streak direction (a morphological
    opening of the excess with a 17 px line at ``angle``), and is subtracted there, fading in between two
    thresholds (:func:`reasoner.streaks.streak_map`). A connected line carrying far more excess than the typical
    one (a tripod's leg, a mast, a cable in the light) is a structure and is kept
    (:func:`reasoner.streaks.structure_lines`), in that pass and the ones after it.

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        density: diagnosed streak coverage (mean streak opacity, 0-1); 0 leaves the image alone.
        angle: streak direction in degrees counter-clockwise from +x (image y axis down).
        strength: divides the detection thresholds (higher removes fainter streaks, and more texture with them).
        structures: HxWxP masks (P passes) of each pass's structure lines, found on the whole image
            (:func:`prepare_derain`, for tiles of a large one, whose lines a tile would cut); None finds them on
            ``img``.

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x, s = as_image(img), float(strength)
    if s <= 0 or density <= 0:
        return x.copy()
    if structures is None:
        return _passes(x, angle, s, len(PASS_STRENGTHS), lambda i, excess, weight: _lines(excess, weight))
    return _passes(x, angle, s, len(PASS_STRENGTHS), lambda i, excess, weight: structures[..., i])


def _passes(x: np.ndarray, angle: float, strength: float, n: int, lines) -> np.ndarray:
    """``x`` after the first ``n`` passes; ``lines(i, excess, weight)`` gives pass ``i``'s structure lines."""
    kept = np.zeros(x.shape[:2], bool)
    for i in range(n):
        excess, weight = streak_map(x, angle, strength * PASS_STRENGTHS[i])
        kept |= lines(i, excess, weight)
        weight[kept] = 0.0
        x = clip01(x - weight[..., None] * excess)
    return x


def _lines(excess: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return structure_lines(*streak_parts(weight, carried_excess(excess, weight)))


def prepare_derain(img: np.ndarray, density: float, angle: float, strength: float = 1.0) -> dict:
    """What :func:`derain` reads from the whole image, for tiles of a large one: each pass's structure lines.

    A line's excess is summed over the whole line, which a tile may cut; the streak map itself is local, so it is
    made tile by tile (bounded memory), and only its lines are labelled over the whole frame. A later pass's map is
    made on its tile after the passes before it (run on the tile with the lines already found), its context widened
    by their reach, so no intermediate image is held.
    """
    from restorer.tiling import TILE, map_tiles

    s = float(strength)
    if s <= 0 or density <= 0:
        return {}
    h, w = img.shape[:2]
    found = np.zeros((h, w, len(PASS_STRENGTHS)), bool)

    def maps(tile: np.ndarray, box, n: int) -> np.ndarray:
        x = _passes(as_image(tile), angle, s, n, lambda i, excess, weight: found[box][..., i])  # those before
        excess, weight = streak_map(x, angle, s * PASS_STRENGTHS[n])
        return np.dstack([weight, carried_excess(excess, weight)]).astype(np.float32)

    m = np.empty((h, w, 2), np.float32)
    for n in range(len(PASS_STRENGTHS)):
        map_tiles(lambda t, box: maps(t, box, n), img, tile=TILE, overlap=(n + 1) * STREAK_REACH, out=m, boxed=True)
        found[..., n] = structure_lines(*streak_parts(m[..., 0], m[..., 1]))
    return {"structures": found}
