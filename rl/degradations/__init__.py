"""Degradation synthesis: sample typed parameters, apply them, map them to the schema's factors and severities.

Images are ``float32`` arrays of shape ``(H, W, 3)``, RGB, values in [0, 1], in and out (other float dtypes are
converted; inputs are never modified). One module per kind (``rl/degradations/<kind>.py``) holds its models, the
project's own ("rnr") and published ones (BasicSR / Real-ESRGAN, BSRGAN, imagecorruptions, MiO / AgenticIR,
Boracchi & Foi, ...): per model a frozen parameter dataclass (``<Kind>Params`` for the project's own,
``<Model><Kind>Params`` otherwise), a sampler ``sample_<kind>(rng, **ranges)`` (``sample_<model>_<kind>``), a pure
applier ``apply_<kind>(img, params)`` (any randomness of the application, such as noise draws, streak positions
or depth perturbation, is the integer ``seed`` the parameters hold), the schema factors of the parameters (for
models whose parameters are not the schema's, the equivalent measured on the effect: a kernel's second moment, a
tone curve's fit) and the ground truth's observation, registered as a :class:`DegradationModel` in :data:`MODELS`
(``rl/degradations/registry.py``, checked against :data:`reasoner.kinds.KINDS` at import). :func:`factors` maps
parameters to the schema's physical factors and to a severity through :mod:`reasoner.kinds` (the one severity
map); records are built in :mod:`rl.ground_truth`. Sampling ranges are in each sampler's docstring; the project's
own are log-uniform where the severity map is logarithmic, so severities come out roughly uniform; published
models keep their publications' ranges.
"""

from rl.degradations.base import DegradationModel, as_image
from rl.degradations.blur import BlurParams, KernelBlurParams, SoftDiskBlurParams, apply_blur, sample_blur
from rl.degradations.haze import (
    HazeParams,
    MioHazeParams,
    ProxyHazeParams,
    apply_haze,
    sample_haze,
    transmission_map,
)
from rl.degradations.jpeg import (
    CroppedJpegParams,
    DoubleJpegParams,
    Jpeg444Params,
    JpegParams,
    apply_jpeg,
    sample_jpeg,
)
from rl.degradations.kernels import disk_kernel, equivalent_motion, equivalent_sigma, motion_kernel
from rl.degradations.low_light import (
    CrfDarkParams,
    LowLightParams,
    MioDarkParams,
    apply_low_light,
    fit_tone_curve,
    sample_low_light,
)
from rl.degradations.low_resolution import (
    LowResolutionParams,
    MioLowResolutionParams,
    ResampleParams,
    apply_low_resolution,
    imresize_bicubic,
    sample_low_resolution,
)
from rl.degradations.motion_blur import (
    MotionBlurParams,
    ShakeBlurParams,
    TrailBlurParams,
    apply_motion_blur,
    sample_motion_blur,
)
from rl.degradations.noise import (
    CameraNoiseParams,
    CorrelatedNoiseParams,
    GreyNoiseParams,
    NoiseParams,
    PoissonNoiseParams,
    apply_noise,
    sample_noise,
)
from rl.degradations.rain import MioRainParams, RainParams, ScreenRainParams, apply_rain, rain_layer, sample_rain
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
    models_except,
    ordered,
    sample_ops,
)

__all__ = [
    "APPLIERS", "DEFAULT_MODEL", "LOW_PASS_KINDS", "MODELS", "SAMPLERS", "BlurParams", "CameraNoiseParams",
    "CorrelatedNoiseParams", "CrfDarkParams", "CroppedJpegParams", "DegradationModel", "DoubleJpegParams",
    "GreyNoiseParams",
    "HazeParams", "Jpeg444Params", "JpegParams", "KernelBlurParams", "LowLightParams", "LowResolutionParams",
    "MioDarkParams", "MioHazeParams", "MioLowResolutionParams", "MioRainParams", "MotionBlurParams", "NoiseParams",
    "Params", "PoissonNoiseParams", "ProxyHazeParams", "RainParams", "ResampleParams", "ScreenRainParams",
    "ShakeBlurParams", "SoftDiskBlurParams", "TrailBlurParams", "apply", "apply_blur", "apply_haze", "apply_jpeg",
    "apply_low_light", "apply_low_resolution", "apply_motion_blur", "apply_noise", "apply_rain", "as_image",
    "check_models", "describe", "disk_kernel", "equivalent_motion", "equivalent_sigma", "factors", "fit_tone_curve",
    "imresize_bicubic", "model_of", "models_except", "motion_kernel", "ordered", "rain_layer", "sample_blur",
    "sample_haze", "sample_jpeg", "sample_low_light", "sample_low_resolution", "sample_motion_blur", "sample_noise",
    "sample_ops", "sample_rain", "transmission_map",
]  # fmt: skip
