"""Classical restoration operators, one module per degradation kind, registered in :data:`OPERATORS`.

Every operator takes and returns ``float32 HxWx3 RGB in [0, 1]`` (a new array; the input is never modified) and a
``strength``: 1 undoes the degradation as diagnosed, 0 returns a copy of the input. For the deconvolutions (the
low-pass kinds, :data:`reasoner.kinds.LOWPASS`) and dehazing, strength up to 1 blends the result with the input and
above 1 weakens the prior (dehazing: a stronger haze); a kernel is never resized, since a wrong kernel rings. Other
operators take it as a multiplier on their physical factor (values up to 3 act as if the degradation were that much
stronger). Deconvolutions and dehazing amplify what error is left, so they also take ``noise`` (the std, 0-255, a
denoise step left; None: measured) and ``quality`` (the JPEG quality the image went through).
Constants marked "tuned" in :mod:`~.deconvolution`, :mod:`~.deblur`, :mod:`~.motion_deblur`, :mod:`~.dehaze` and
:mod:`~.low_light` were fitted on crops of the calibration photos (``rl.photos.CALIBRATION_PHOTOS``) degraded by
``rl.degradations`` and by AgenticIR-style mixtures; the others on crops of the held-out photos
(``rl.photos.EVALUATION_PHOTOS``) degraded by ``rl.degradations``, and are due to be refitted on the calibration ones.

Modules: :mod:`~.kernels` (blur kernels, shared with synthesis), :mod:`~.filters` (image check, noise estimate,
non-local means), :mod:`~.deconvolution`, then one per kind (:mod:`~.deblock`, :mod:`~.denoise`, :mod:`~.deblur`,
:mod:`~.motion_deblur`, :mod:`~.dehaze`, :mod:`~.low_light`, :mod:`~.derain`, :mod:`~.super_resolution`) and
:mod:`~.color_transfer` for reference-guided colour.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from reasoner.kinds import LOWPASS, check_table
from restorer.operators.color_transfer import transfer_color
from restorer.operators.deblock import deblock
from restorer.operators.deblur import blur_psf, deblur
from restorer.operators.deconvolution import combine_psfs, deconvolve
from restorer.operators.dehaze import dehaze, prepare_dehaze
from restorer.operators.denoise import RESIDUAL_NOISE, denoise, prepare_denoise, residual_noise, unclip
from restorer.operators.derain import derain, prepare_derain
from restorer.operators.filters import estimate_noise, guided_filter
from restorer.operators.kernels import MAX_PSF_RADIUS, disk_kernel, gaussian_kernel, line_kernel, stroke_kernel
from restorer.operators.low_light import brighten, prepare_brighten, value_curve_laid
from restorer.operators.motion_deblur import deblur_motion, motion_psf
from restorer.operators.super_resolution import resolution_psf, sharpen_resolution


def measured_after(*factors, strength: float = 1.0) -> None:
    """For operators whose gain changes the noise by an amount only the image tells (brightening, then denoising)."""
    return None


@dataclass(frozen=True)
class Operator:
    """How the classical restorer undoes one kind.

    Attributes:
        run: ``run(image, *factors, strength=..., [noise=...])`` -> image.
        factors: Names of the record's factors ``run`` takes, in its positional order.
        leaves_noise: ``leaves_noise(*factors, strength=...)``: the noise std (0-255) left after ``run``, which
            the deconvolutions that follow are told, or None when it depends on the image (the next step measures
            it); no function when ``run`` does not change the noise level it is told.
        psf: ``psf(*factors)`` -> ``(kernel, least Wiener balance)`` for a low-pass kind, so that several low-pass
            degradations of one image are undone by one deconvolution of their combined PSF; None otherwise.
        prepare: ``prepare(image, *factors, strength=...)`` -> keyword arguments of ``run`` holding what it reads
            from the whole image (a tone curve, a noise level), so that ``run`` on tiles of a large image is local
            (:mod:`restorer.tiling`); None when ``run`` is global through and through or local already.
        after_filtering: ``run`` (and ``prepare``) take ``filtered=``: whether an earlier step of the plan filtered
            noise or compression out of the image (brightening then cleans the coarse colour blotches left).
        from_input: ``from_input(image)`` -> keyword arguments of ``run`` read off the plan's input, not the image
            the earlier steps hand on (whose filtering wiped the trace: a deblocking fills in the comb of levels a
            darkening curve left); None when ``run`` reads nothing there.

    """

    run: Callable[..., np.ndarray]
    factors: tuple[str, ...]
    leaves_noise: Callable[..., float | None] | None = None
    psf: Callable[..., tuple[np.ndarray, float]] | None = None
    prepare: Callable[..., dict] | None = None
    after_filtering: bool = False
    from_input: Callable[[np.ndarray], dict] | None = None

    @property
    def error_aware(self) -> bool:
        """Whether ``run`` takes ``noise=`` and ``quality=``: the error left in the image, not to be amplified."""
        return {"noise", "quality"} <= set(inspect.signature(self.run).parameters)


#: kind -> its operator; every kind of :data:`reasoner.kinds.KINDS` has one.
OPERATORS: dict[str, Operator] = check_table(
    {
        "haze": Operator(dehaze, ("transmission", "airlight", "beta"), prepare=prepare_dehaze),
        "rain": Operator(derain, ("density", "angle"), prepare=prepare_derain),
        "motion_blur": Operator(deblur_motion, ("length", "angle"), psf=motion_psf),
        "blur": Operator(deblur, ("sigma", "kernel"), psf=blur_psf),
        "low_resolution": Operator(sharpen_resolution, ("scale",), psf=resolution_psf),
        "low_light": Operator(
            brighten,
            ("exposure", "gamma"),
            measured_after,
            prepare=prepare_brighten,
            after_filtering=True,
            from_input=lambda image: {"value_only": value_curve_laid(image)},
        ),
        "noise": Operator(denoise, ("sigma", "model"), residual_noise, prepare=prepare_denoise),
        "jpeg": Operator(deblock, ("quality",)),
    },
    "restorer.operators.OPERATORS",
)
for _kind in LOWPASS:  # pragma: no branch - a deconvolution that cannot be told the noise would guess it
    if not OPERATORS[_kind].error_aware:  # pragma: no cover
        raise ImportError(f"restorer.operators: the {_kind} operator must take noise= and quality= (it is low-pass)")
    if OPERATORS[_kind].psf is None:  # pragma: no cover
        raise ImportError(f"restorer.operators: the {_kind} operator must give its psf (it is a low-pass kind)")

__all__ = [
    "MAX_PSF_RADIUS",
    "OPERATORS",
    "RESIDUAL_NOISE",
    "Operator",
    "blur_psf",
    "brighten",
    "combine_psfs",
    "deblock",
    "deblur",
    "deblur_motion",
    "deconvolve",
    "dehaze",
    "denoise",
    "derain",
    "disk_kernel",
    "estimate_noise",
    "gaussian_kernel",
    "guided_filter",
    "line_kernel",
    "motion_psf",
    "residual_noise",
    "resolution_psf",
    "sharpen_resolution",
    "stroke_kernel",
    "transfer_color",
    "unclip",
]
