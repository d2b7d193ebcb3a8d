"""Optical blur: our Gaussian / defocus disk, Real-ESRGAN's kernel family, imagecorruptions' softened disk.

Every model reports the schema's ``sigma`` as the std of the isotropic Gaussian with the same mean second moment
per axis as the kernel it convolves with (:func:`~rl.degradations.kernels.equivalent_sigma`); ``kernel`` is
"defocus" for disks and "gaussian" for the Gaussian family (anisotropic, generalised and plateau kernels included:
the schema has no other label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Literal

import cv2
import numpy as np

from rl.degradations.base import DegradationModel, as_image, check, check_in, clip01, log_uniform, readonly
from rl.degradations.kernels import disk_kernel, equivalent_sigma


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


_SHAPES = ("gaussian", "generalized", "plateau")


@dataclass(frozen=True)
class KernelBlurParams:
    """Real-ESRGAN's blur kernels on a ``size`` x ``size`` grid, ``q = c^T S^-1 c`` for offsets ``c`` in px.

    ``S = R(angle) diag(sigma_x^2, sigma_y^2) R(angle)^T``; the kernel is ``exp(-q / 2)`` ("gaussian"),
    ``exp(-q^beta / 2)`` ("generalized") or ``1 / (1 + q^beta)`` ("plateau"), normalised to sum 1. Isotropic
    kernels have ``sigma_y == sigma_x``.
    """

    kind: ClassVar[str] = "blur"
    shape: Literal["gaussian", "generalized", "plateau"]
    sigma_x: float  # px, along the rotated x axis
    sigma_y: float  # px, along the rotated y axis
    angle: float = 0.0  # rotation in degrees counter-clockwise from +x, image y down
    beta: float = 1.0  # shape exponent of generalised and plateau kernels (1 for "gaussian")
    size: int = 21  # odd kernel size in px

    def __post_init__(self):
        check(self.shape in _SHAPES, f"unknown kernel shape {self.shape!r}; expected one of {_SHAPES}")
        check_in("kernel sigma_x (px)", self.sigma_x, 0, 50, "(]")
        check_in("kernel sigma_y (px)", self.sigma_y, 0, 50, "(]")
        check_in("kernel beta", self.beta, 0.1, 10)
        check(isinstance(self.size, int | np.integer) and self.size % 2 == 1, f"size must be odd, got {self.size!r}")
        check_in("kernel size (px)", self.size, 3, 99)


def sample_kernel_blur(
    rng: np.random.Generator,
    *,
    sigma: tuple[float, float] = (0.2, 3.0),
    size: tuple[int, int] = (7, 21),
    weights: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    beta_generalized: tuple[float, float] = (0.5, 4.0),
    beta_plateau: tuple[float, float] = (1.0, 2.0),
) -> KernelBlurParams:
    """Real-ESRGAN's first-order blur: size odd 7-21, sigmas 0.2-3 px, any rotation, six families by ``weights``.

    Args:
        rng: The random generator.
        sigma: Range of each axis' std in px (uniform).
        size: Inclusive range of the odd kernel size in px.
        weights: Probabilities of iso / aniso Gaussian, iso / aniso generalised, iso / aniso plateau.
        beta_generalized: Range of the generalised exponent (half the draws below 1, half above, as BasicSR).
        beta_plateau: Range of the plateau exponent (uniform).

    """
    family = int(rng.choice(6, p=np.asarray(weights) / np.sum(weights)))
    shape, isotropic = _SHAPES[family // 2], family % 2 == 0
    k = int(rng.choice(np.arange(size[0], size[1] + 1, 2)))
    sx = float(rng.uniform(*sigma))
    sy, angle = (sx, 0.0) if isotropic else (float(rng.uniform(*sigma)), float(rng.uniform(0.0, 180.0)))
    beta = 1.0
    if shape == "generalized":
        lo, hi = beta_generalized
        beta = float(rng.uniform(lo, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, hi))
    elif shape == "plateau":
        beta = float(rng.uniform(*beta_plateau))
    return KernelBlurParams(shape, sx, sy, angle, beta, k)


@lru_cache(maxsize=64)
def kernel_of(params: KernelBlurParams) -> np.ndarray:
    """The normalised ``float32`` kernel of ``params`` (read-only, cached)."""
    p, r = params, params.size // 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    t = math.radians(p.angle)
    u, v = x * math.cos(t) - y * math.sin(t), x * math.sin(t) + y * math.cos(t)  # -y: angles counter-clockwise
    q = (u / p.sigma_x) ** 2 + (v / p.sigma_y) ** 2
    k = np.exp(-0.5 * q) if p.shape == "gaussian" else np.exp(-0.5 * q**p.beta)
    if p.shape == "plateau":
        k = 1.0 / (1.0 + q**p.beta)
    return readonly((k / k.sum()).astype(np.float32))


def apply_kernel_blur(img: np.ndarray, params: KernelBlurParams) -> np.ndarray:
    """Convolve with :func:`kernel_of`, reflect-101 borders (as BasicSR's ``cv2.filter2D``)."""
    return clip01(cv2.filter2D(as_image(img), -1, kernel_of(params), borderType=cv2.BORDER_REFLECT_101))


def kernel_blur_factors(params: KernelBlurParams, shape: tuple[int, ...]) -> dict:
    """The schema's blur factors: the kernel's isotropic-equivalent sigma in px, shape "gaussian"."""
    return {"sigma": equivalent_sigma(kernel_of(params)), "kernel": "gaussian"}


def describe_kernel_blur(p: KernelBlurParams, f: dict) -> str:
    """The ground-truth observation of a Real-ESRGAN kernel ``p``."""
    shape = p.shape if p.sigma_x == p.sigma_y else f"anisotropic {p.shape}"
    beta = "" if p.shape == "gaussian" else f", beta={p.beta:.2f}"
    return (
        f"synthesised {shape} blur kernel {p.size}x{p.size}, sigma=({p.sigma_x:.2f}, {p.sigma_y:.2f}) px at "
        f"{p.angle:.0f} deg{beta} (equivalent sigma={f['sigma']:.2f} px)"
    )


#: imagecorruptions' defocus severities as MiO uses them: (disk radius px, anti-alias Gaussian std px).
SOFT_DISKS = ((3.0, 0.1), (4.0, 0.5), (6.0, 0.5))


@dataclass(frozen=True)
class SoftDiskBlurParams:
    """A pixel-aliased disk (offsets with ``x^2 + y^2 <= radius^2``) softened by a small Gaussian of std ``alias``."""

    kind: ClassVar[str] = "blur"
    radius: float  # px
    alias: float = 0.5  # std in px of the 3x3 (5x5 for radius > 8) Gaussian that softens the disk's edge

    def __post_init__(self):
        check_in("disk radius (px)", self.radius, 0.5, 50)
        check_in("alias blur (px)", self.alias, 0, 5, "(]")


def sample_soft_disk_blur(
    rng: np.random.Generator, *, severities: tuple[tuple[float, float], ...] = SOFT_DISKS
) -> SoftDiskBlurParams:
    """One of ``severities`` uniformly: MiO's imagecorruptions defocus levels, radius {3, 4, 6} px."""
    radius, alias = severities[int(rng.integers(len(severities)))]
    return SoftDiskBlurParams(float(radius), float(alias))


@lru_cache(maxsize=16)
def soft_disk_kernel(params: SoftDiskBlurParams) -> np.ndarray:
    """The normalised ``float32`` kernel of ``params`` (read-only, cached)."""
    r = max(8, math.ceil(params.radius))
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    disk = (x * x + y * y <= params.radius**2).astype(np.float32)
    side = 3 if params.radius <= 8 else 5
    k = cv2.GaussianBlur(disk / disk.sum(), (side, side), params.alias)
    return readonly(k / k.sum())


def apply_soft_disk_blur(img: np.ndarray, params: SoftDiskBlurParams) -> np.ndarray:
    """Convolve with :func:`soft_disk_kernel`, reflect-101 borders (``cv2.filter2D``'s default)."""
    return clip01(cv2.filter2D(as_image(img), -1, soft_disk_kernel(params), borderType=cv2.BORDER_REFLECT_101))


def soft_disk_blur_factors(params: SoftDiskBlurParams, shape: tuple[int, ...]) -> dict:
    """The schema's blur factors: the kernel's equivalent sigma in px (about radius / 2), shape "defocus"."""
    return {"sigma": equivalent_sigma(soft_disk_kernel(params)), "kernel": "defocus"}


def describe_soft_disk_blur(p: SoftDiskBlurParams, f: dict) -> str:
    """The ground-truth observation of a softened disk ``p``."""
    return (
        f"synthesised defocus blur: aliased disk of radius {p.radius:.1f} px softened by a Gaussian of "
        f"std {p.alias:.1f} px (equivalent sigma={f['sigma']:.2f} px)"
    )


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
    DegradationModel(
        kind="blur",
        name="realesrgan",
        params=KernelBlurParams,
        sample=sample_kernel_blur,
        apply=apply_kernel_blur,
        factors=kernel_blur_factors,
        describe=describe_kernel_blur,
        source="Real-ESRGAN first-order kernels (Wang et al. 2021; xinntao/Real-ESRGAN train_realesrnet_x4plus.yml, "
        "BasicSR degradations.py); sinc kernels left out",
    ),
    DegradationModel(
        kind="blur",
        name="soft_disk",
        params=SoftDiskBlurParams,
        sample=sample_soft_disk_blur,
        apply=apply_soft_disk_blur,
        factors=soft_disk_blur_factors,
        describe=describe_soft_disk_blur,
        source="imagecorruptions defocus_blur (Hendrycks & Dietterich 2019; bethgelab/imagecorruptions) as "
        "AgenticIR/MiO use it (dataset/add_single_degradation.py)",
    ),
)
