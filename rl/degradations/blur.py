"""Isotropic optical blur: a Gaussian point spread, or a defocus disk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import cv2
import numpy as np

from rl.degradations.base import DegradationModel, as_image, check_in, clip01, log_uniform
from rl.degradations.kernels import disk_kernel


@dataclass(frozen=True)
class BlurParams:
    """Isotropic optical blur: a Gaussian of std ``sigma`` px, or a defocus disk of ``radius`` px (the other 0)."""

    kind: ClassVar[str] = "blur"
    kernel: Literal["gaussian", "defocus"]
    sigma: float = 0.0
    radius: float = 0.0

    def __post_init__(self):
        if self.kernel == "gaussian":
            check_in("Gaussian blur sigma (px)", self.sigma, 0, 50, "(]")
            check_in("radius of a Gaussian blur", self.radius, 0, 0)
        elif self.kernel == "defocus":
            check_in("defocus radius (px)", self.radius, 0, 100, "(]")
            check_in("sigma of a defocus blur", self.sigma, 0, 0)
        else:
            raise ValueError(f"unknown blur kernel {self.kernel!r}; expected 'gaussian' or 'defocus'")

    @property
    def equivalent_sigma(self) -> float:
        """Std in px of the Gaussian with the same second moment (a disk of radius r has r / 2)."""
        return self.sigma if self.kernel == "gaussian" else self.radius / 2.0


def sample_blur(
    rng: np.random.Generator,
    *,
    sigma: tuple[float, float] = (0.8, 4.0),
    radius: tuple[float, float] = (1.5, 8.0),
    defocus: float = 0.5,
) -> BlurParams:
    """Gaussian sigma 0.8-4 px or defocus radius 1.5-8 px (equivalent sigma 0.75-4), 50/50, log-uniform.

    Args:
        rng: The random generator.
        sigma: Range of the Gaussian std in px.
        radius: Range of the defocus disk radius in px.
        defocus: Probability of a defocus disk.

    """
    if rng.random() < 1.0 - defocus:
        return BlurParams("gaussian", sigma=log_uniform(rng, *sigma))
    return BlurParams("defocus", radius=log_uniform(rng, *radius))


def apply_blur(img: np.ndarray, params: BlurParams) -> np.ndarray:
    """Convolve with a Gaussian (std ``sigma`` px) or :func:`disk_kernel` (``radius`` px), reflected borders."""
    x = as_image(img)
    if params.kernel == "gaussian":
        return clip01(cv2.GaussianBlur(x, (0, 0), params.sigma, borderType=cv2.BORDER_REFLECT))
    return clip01(cv2.filter2D(x, -1, disk_kernel(params.radius), borderType=cv2.BORDER_REFLECT))


def blur_factors(params: BlurParams, shape: tuple[int, ...]) -> dict:
    """The schema's blur factors: the Gaussian-equivalent sigma in px and the kernel shape."""
    return {"sigma": params.equivalent_sigma, "kernel": params.kernel}


def describe_blur(p: BlurParams, f: dict) -> str:
    """The ground-truth observation of blur ``p``."""
    if p.kernel == "gaussian":
        return f"synthesised Gaussian blur with sigma={p.sigma:.2f} px"
    return f"synthesised defocus blur with disk radius={p.radius:.2f} px (equivalent sigma={f['sigma']:.2f} px)"


#: This kind's models; :data:`rl.degradations.MODELS` files them by kind and name.
MODELS = (
    DegradationModel(
        kind="blur",
        name="rnr",
        params=BlurParams,
        sample=sample_blur,
        apply=apply_blur,
        factors=blur_factors,
        describe=describe_blur,
        source="reason-restore's own protocol: ranges spread the severities of reasoner.kinds evenly",
    ),
)
