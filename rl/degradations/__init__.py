"""Degradation synthesis: sample typed parameters, apply them, map them to the schema's factors and severities.

Images are ``float32`` arrays of shape ``(H, W, 3)``, RGB, values in [0, 1], in and out (other float dtypes are
converted; inputs are never modified). One module per kind (``rl/degradations/<kind>.py``) holds its models: per
model a frozen parameter dataclass ``<Kind>Params``, a sampler ``sample_<kind>(rng, **ranges)``, a pure
``apply_<kind>(img, params)`` (any randomness of the application, such as noise draws, streak positions or depth
perturbation, is the integer ``seed`` the parameters hold), the schema factors of the parameters and the ground
truth's observation, registered as a :class:`DegradationModel` in :data:`MODELS` (``rl/degradations/registry.py``,
checked against :data:`reasoner.kinds.KINDS` at import). :func:`factors` maps parameters to the schema's physical
factors and to a severity through :mod:`reasoner.kinds` (the one severity map); records are built in
:mod:`rl.ground_truth`. Sampling ranges are in each ``sample_<kind>`` docstring; they are log-uniform where the
severity map is logarithmic, so severities come out roughly uniform.
"""

from rl.degradations.base import DegradationModel, as_image
from rl.degradations.blur import BlurParams, apply_blur, sample_blur
from rl.degradations.haze import HazeParams, apply_haze, sample_haze, transmission_map
from rl.degradations.jpeg import JpegParams, apply_jpeg, sample_jpeg
from rl.degradations.kernels import disk_kernel, motion_kernel
from rl.degradations.low_light import LowLightParams, apply_low_light, sample_low_light
from rl.degradations.low_resolution import LowResolutionParams, apply_low_resolution, sample_low_resolution
from rl.degradations.motion_blur import MotionBlurParams, apply_motion_blur, sample_motion_blur
from rl.degradations.noise import NoiseParams, apply_noise, sample_noise
from rl.degradations.rain import RainParams, apply_rain, rain_layer, sample_rain
from rl.degradations.registry import (
    APPLIERS,
    DEFAULT_MODEL,
    LOW_PASS_KINDS,
    MODELS,
    SAMPLERS,
    Params,
    apply,
    check_models,
    describe,
    factors,
    model_of,
    ordered,
    sample_ops,
)

__all__ = [
    "APPLIERS", "DEFAULT_MODEL", "LOW_PASS_KINDS", "MODELS", "SAMPLERS", "BlurParams", "DegradationModel",
    "HazeParams", "JpegParams", "LowLightParams", "LowResolutionParams", "MotionBlurParams", "NoiseParams", "Params",
    "RainParams", "apply", "apply_blur", "apply_haze", "apply_jpeg", "apply_low_light", "apply_low_resolution",
    "apply_motion_blur", "apply_noise", "apply_rain", "as_image", "check_models", "describe", "disk_kernel",
    "factors", "model_of", "motion_kernel", "ordered", "rain_layer", "sample_blur", "sample_haze", "sample_jpeg",
    "sample_low_light", "sample_low_resolution", "sample_motion_blur", "sample_noise", "sample_ops", "sample_rain",
    "transmission_map",
]  # fmt: skip
