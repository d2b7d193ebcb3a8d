"""``low_light``: an inverse tone curve on brightness, held to natural-image statistics, noise removed before it.

Constants marked "tuned" were fitted for PSNR on crops of the calibration photos (``rl.photos.CALIBRATION_PHOTOS``)
under ``rl.degradations`` under-exposure and AgenticIR's "dark" (HSV value shifted, gamma-curved or squashed).
"""

from __future__ import annotations

import numpy as np

from reasoner.common import brightness_quantile, channel_max, subsample
from reasoner.tone_comb import read_tone_comb
from restorer.operators.filters import (
    as_image,
    chroma_noise,
    clean_chroma,
    clip01,
    coarse_chroma_noise,
    estimate_noise,
    nlm,
)

#: A well-exposed photo's 99th percentile of brightness (HSV value, max RGB) lies in [P99_LO, P99_HI] (tuned; the
#: calibration crops: median 0.78, dim scenes lower, photos with highlights near 1): the diagnosed exposure is moved
#: into the range that puts it there.
P99_LO, P99_HI = 0.45, 1.0
_KNEE = 0.8  # identity below, then a tanh shoulder reaching 1: no hard clipping of highlights
#: The coarse colour clean-up after the gain, for an image denoised or deblocked before: chroma noise read 4x down
#: (:func:`coarse_chroma_noise`), the guided filter's radius, and the share of that noise taken for blotches (tuned on
#: dim crops of the calibration photos, every zoo under-exposure model, camera or own noise, then Pillow JPEG q60-95:
#: radius 16 and share 1 gained +0.21 dB, worst crop -0.08; 8x down lost up to 0.7 dB on a crop, a share of 2 up to
#: 0.24). On a dim photo nothing filtered, coarse chroma is the scene's own colour texture (a noise-free MiO
#: darkening read 2-4x its fine chroma noise) or white noise the fine clean-up takes: there it cost 0.14 dB on average
#: and up to 3.4 dB on a crop, so it runs only after a denoising or deblocking step (``filtered``).
BLOTCH_SCALE, BLOTCH_RADIUS, BLOTCH_SHARE = 4, 16, 1.0


def tone_curve(img: np.ndarray, exposure: float, gamma: float) -> tuple[float, float]:
    """The diagnosed ``(exposure, gamma)`` of ``y = exposure * x ** gamma`` held to ``img``'s statistics.

    One image cannot split a gain into exposure and gamma, and a diagnosis fitted to one model of under-exposure
    misjudges others (an additive shift or a linear squash of brightness). The exposure is moved into the range
    that lands the brightest percent of pixels where well-exposed photos have them (:data:`P99_LO`,
    :data:`P99_HI`), so a wrong split can neither blow the highlights out nor leave the image dark; a diagnosis
    that already does so is kept as it is (moving gamma towards statistics cost correct diagnoses more than it won).

    >>> e, g = tone_curve(np.full((8, 8, 3), 0.1, np.float32), 0.01, 1.0)
    >>> round((0.1 / e) ** (1 / g), 2)  # a 100x gain would blow a flat 0.1 out: the prior keeps it at 1
    1.0
    """
    g = min(max(float(gamma), 0.2), 5.0)
    top = max(brightness_quantile(as_image(img), 0.99), 1.0 / 255.0)
    e = min(max(float(exposure), top / P99_HI**g), top / P99_LO**g)
    return min(max(e, 1e-3), 1.0), g


def brighten(
    img: np.ndarray,
    exposure: float,
    gamma: float = 1.0,
    strength: float = 1.0,
    *,
    curve: tuple[float, float] | None = None,
    noise: float | None = None,
    chroma: tuple[float, float] | None = None,
    blotches: tuple[float, float] | None = None,
    filtered: bool = False,
    value_only: bool | None = None,
) -> np.ndarray:
    """Invert under-exposure ``y = exposure * x ** gamma`` on brightness and denoise the noise the gain amplifies.

    The curve comes from :func:`tone_curve` (the diagnosis held to natural-image statistics). The division by the
    exposure comes first, so the amplified noise is still stationary and non-local means (sigma measured,
    :func:`~restorer.operators.filters.estimate_noise`; chroma filtered harder, then its colour blotches,
    :func:`~restorer.operators.filters.clean_chroma`) removes it before the tone curve.
    After a denoising or deblocking (``filtered``), colour noise coarser than non-local means sees (JPEG's 16 px chroma
    blocks over a dark photo's noise, the blotches a denoiser leaves) becomes purple and green mottle once multiplied
    by the gain: it is cleaned at its own scale (:data:`BLOTCH_SCALE`) by the same luma-guided shrinkage, over a wider
    window.
    The curve acts on brightness (max RGB) and each channel keeps its ratio to it raised to ``1 / gamma`` (the
    exact inverse of a per-channel power law), so highlights roll off softly without shifting hue. Where the image
    shows a curve laid on its 8-bit brightness with hue and saturation kept (:func:`value_curve_laid`: an editor's
    or AgenticIR's darkening of the HSV value), each channel keeps its ratio itself, the exact inverse of that, and
    the highlights roll off only where the gain takes them past white: on held-out crops under MiO's gamma, the
    ratio raised to ``1 / gamma`` came back at 24.8-34.2 dB on colour crops, its own inverse at 51-60 (grey crops
    49 either way).

    Args:
        img: float32 HxWx3 RGB in [0, 1].
        exposure: linear exposure multiplier in (0, 1].
        gamma: tone-curve exponent.
        strength: interpolates from no change: ``exposure ** strength`` and ``1 + (gamma - 1) * strength``.
        curve: the ``(exposure, gamma)`` to apply, already dosed (:func:`brighten_curve`); default from ``img``.
            A tile of a large image is given the whole image's (:func:`prepare_brighten`).
        noise: noise std (0-255) of ``img`` before the gain; default measured on ``img``.
        chroma: chroma noise stds of ``img`` before the gain (:func:`~restorer.operators.filters.chroma_noise`);
            default measured on ``img``.
        blotches: the same at :data:`BLOTCH_SCALE` (:func:`~restorer.operators.filters.coarse_chroma_noise`);
            default measured on ``img``.
        filtered: whether noise or compression was filtered out of ``img`` before (the plan's earlier steps): the
            coarse clean-up runs only then.
        value_only: whether the darkening was a curve on brightness with hue and saturation kept; default read off
            ``img`` (:func:`value_curve_laid`).

    Returns:
        float32 HxWx3 RGB in [0, 1].

    """
    x, s = as_image(img), float(strength)
    if s <= 0:
        return x.copy()
    e, g = brighten_curve(x, exposure, gamma, s) if curve is None else curve
    if e >= 1.0 and g == 1.0:
        return x.copy()
    lin = x / np.float32(e)
    sigma = (estimate_noise(x) if noise is None else float(noise)) / e
    if sigma > 1.0:
        c1, c2 = chroma_noise(x) if chroma is None else chroma
        lin = clean_chroma(nlm(lin, sigma), (c1 / e, c2 / e))
    if filtered:
        b1, b2 = coarse_chroma_noise(x, BLOTCH_SCALE) if blotches is None else blotches
        lin = clean_chroma(lin, (b1 / e, b2 / e), BLOTCH_RADIUS, BLOTCH_SHARE, clip=False)
        np.maximum(lin, 0.0, out=lin)
    v = np.maximum(channel_max(lin), 1e-4)[..., None]
    if value_only is None:
        value_only = value_curve_laid(x)
    knee = np.float32(_KNEE)
    rolled = not value_only or float(v.max()) > 1.0
    shoulder = np.where(v > knee, knee + (1 - knee) * np.tanh((v - knee) / (1 - knee)), v) if rolled else v
    ratio = np.clip(lin / v, 0.0, 1.0)
    if value_only:
        return clip01(ratio * np.power(shoulder, np.float32(1.0 / g)).astype(np.float32))
    return clip01(np.power(ratio * shoulder.astype(np.float32), np.float32(1.0 / g)))


def value_curve_laid(img: np.ndarray) -> bool:
    """Whether ``img`` shows a darkening curve laid on its 8-bit brightness, hue and saturation kept.

    :func:`reasoner.tone_comb.read_tone_comb`: the value (max RGB) combed, the other channels not.
    """
    comb = read_tone_comb(img)
    return comb is not None and comb.value_only


def brighten_curve(img: np.ndarray, exposure: float, gamma: float, strength: float = 1.0) -> tuple[float, float]:
    """The exposure and gamma :func:`brighten` applies to ``img`` at ``strength`` (:func:`tone_curve`, dosed).

    A dose above 1 (a bolder retry) is held to the same statistics again, so that no strength can push the brightest
    percent past white: before, strength 2.25 on a dim photo blew it out to an orange cast and black shadows.

    >>> img = np.full((8, 8, 3), 0.4, np.float32)
    >>> e, g = brighten_curve(img, 0.5, 1.0, strength=2.25)
    >>> round(e, 2), g  # 0.5 ** 2.25 = 0.21 would put 0.4 at 1.9
    (0.4, 1.0)
    """
    e, g = tone_curve(img, exposure, gamma)
    s = float(strength)
    dosed = e**s, max(1.0 + (g - 1.0) * s, 0.2)
    return tone_curve(img, *dosed) if s > 1.0 else dosed


def prepare_brighten(
    img: np.ndarray,
    exposure: float,
    gamma: float = 1.0,
    strength: float = 1.0,
    *,
    filtered: bool = False,
    value_only: bool | None = None,
) -> dict:
    """What :func:`brighten` reads from the whole image (its curve, its noise), measured on bounded proxies.

    The curve's highlight percentile and the comb of its levels are read on a regular subsample of at most 4 MP, the
    noise on crops spread over the frame; given to :func:`brighten` on each tile, they make it local.
    """
    from restorer.tiling import TILE_PIXELS, proxy_crops

    crops, whole = proxy_crops(img), subsample(img, TILE_PIXELS)
    return {
        "curve": brighten_curve(whole, exposure, gamma, strength),
        "noise": estimate_noise(crops),
        "chroma": chroma_noise(crops),
        "blotches": coarse_chroma_noise(crops, BLOTCH_SCALE) if filtered else None,
        "value_only": value_curve_laid(whole) if value_only is None else value_only,
    }
