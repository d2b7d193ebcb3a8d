"""JPEG compression: block-DCT quantisation and chroma subsampling, once (4:2:0 or 4:4:4), twice, or cropped since.

All models use the IJG quantisation tables through Pillow's libjpeg-turbo. OpenCV's ``cv2.imencode`` (what MiO and
BasicSR call) gives bit-identical pixels to the project's own 4:2:0 model at the same quality, so MiO's JPEG is
:class:`JpegParams` with qualities 10-29, not a model of its own.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image

from reasoner.imageio import to_uint8
from rl.degradations.base import DegradationModel, as_image, check, check_in


@dataclass(frozen=True)
class JpegParams:
    """JPEG compression at IJG ``quality`` (1-100) with Pillow's default 4:2:0 chroma subsampling."""

    kind: ClassVar[str] = "jpeg"
    quality: int

    def __post_init__(self):
        check(isinstance(self.quality, int | np.integer), f"JPEG quality must be an integer, got {self.quality!r}")
        check_in("JPEG quality", self.quality, 1, 100)


def sample_jpeg(rng: np.random.Generator, *, quality: tuple[int, int] = (10, 90)) -> JpegParams:
    """Quality uniform integer in [10, 90] (``quality``, inclusive)."""
    return JpegParams(int(rng.integers(quality[0], quality[1] + 1)))


def apply_jpeg(img: np.ndarray, params: JpegParams) -> np.ndarray:
    """Encode the uint8-rounded image with Pillow at ``quality`` (4:2:0 subsampling) and decode it back."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(as_image(img))).save(buf, format="JPEG", quality=int(params.quality))
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"), np.float32) / np.float32(255.0)


def jpeg_factors(params: JpegParams, shape: tuple[int, ...]) -> dict:
    """The schema's JPEG factors: the quality."""
    return {"quality": int(params.quality)}


def describe_jpeg(p: JpegParams, f: dict) -> str:
    """The ground-truth observation of JPEG compression ``p``."""
    return f"synthesised JPEG compression at quality={p.quality} (4:2:0 chroma subsampling)"


def _roundtrip(img8: np.ndarray, quality: int, subsampling: int) -> np.ndarray:
    # uint8 HxWx3 through Pillow's JPEG encoder and decoder; subsampling 0 = 4:4:4, 2 = 4:2:0.
    buf = io.BytesIO()
    Image.fromarray(img8).save(buf, format="JPEG", quality=int(quality), subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"))


@dataclass(frozen=True)
class Jpeg444Params:
    """JPEG compression at IJG ``quality`` with full-resolution chroma (4:4:4): blocks and ringing, no colour bleed."""

    kind: ClassVar[str] = "jpeg"
    quality: int

    def __post_init__(self):
        check(isinstance(self.quality, int | np.integer), f"JPEG quality must be an integer, got {self.quality!r}")
        check_in("JPEG quality", self.quality, 1, 100)


def sample_jpeg444(rng: np.random.Generator, *, quality: tuple[int, int] = (30, 95)) -> Jpeg444Params:
    """Quality uniform integer in [30, 95] (Real-ESRGAN's ``jpeg_range``, inclusive)."""
    return Jpeg444Params(int(rng.integers(quality[0], quality[1] + 1)))


def apply_jpeg444(img: np.ndarray, params: Jpeg444Params) -> np.ndarray:
    """Encode the uint8-rounded image at ``quality`` with 4:4:4 chroma and decode it back."""
    out = _roundtrip(to_uint8(as_image(img)), params.quality, 0)
    return out.astype(np.float32) / np.float32(255.0)


def jpeg444_factors(params: Jpeg444Params, shape: tuple[int, ...]) -> dict:
    """The schema's JPEG factors: the quality."""
    return {"quality": int(params.quality)}


def describe_jpeg444(p: Jpeg444Params, f: dict) -> str:
    """The ground-truth observation of 4:4:4 JPEG compression ``p``."""
    return f"synthesised JPEG compression at quality={p.quality} (4:4:4, no chroma subsampling)"


@dataclass(frozen=True)
class DoubleJpegParams:
    """Two 4:2:0 JPEG compressions, ``first`` then ``quality``, the second grid shifted by ``(shift_x, shift_y)`` px.

    A shift (0-7 px) is a crop between the two saves: the second 8x8 grid no longer lines up with the first.
    """

    kind: ClassVar[str] = "jpeg"
    first: int
    quality: int  # the second (last) compression
    shift_x: int = 0
    shift_y: int = 0

    def __post_init__(self):
        for name in ("first", "quality", "shift_x", "shift_y"):
            value = getattr(self, name)
            check(isinstance(value, int | np.integer), f"{name} must be an integer, got {value!r}")
        check_in("first JPEG quality", self.first, 1, 100)
        check_in("JPEG quality", self.quality, 1, 100)
        check_in("grid shift x (px)", self.shift_x, 0, 7)
        check_in("grid shift y (px)", self.shift_y, 0, 7)


def sample_double_jpeg(
    rng: np.random.Generator,
    *,
    first: tuple[int, int] = (30, 95),
    quality: tuple[int, int] = (30, 95),
    shifted: float = 0.5,
) -> DoubleJpegParams:
    """Both qualities uniform integers in [30, 95] (Real-ESRGAN's two JPEG stages); a grid shift with ``shifted`` 0.5.

    Args:
        rng: The random generator.
        first: Inclusive range of the first quality.
        quality: Inclusive range of the second quality.
        shifted: Probability of a crop between the saves (shift 1-7 px on each axis, uniform, else aligned).

    """
    q1 = int(rng.integers(first[0], first[1] + 1))
    q2 = int(rng.integers(quality[0], quality[1] + 1))
    dx, dy = (int(v) for v in rng.integers(1, 8, 2)) if rng.random() < shifted else (0, 0)
    return DoubleJpegParams(q1, q2, dx, dy)


def apply_double_jpeg(img: np.ndarray, params: DoubleJpegParams) -> np.ndarray:
    """Compress at ``first``, then at ``quality`` on a grid shifted by the crop between the saves."""
    p = params
    once = _roundtrip(to_uint8(as_image(img)), p.first, 2)
    return _shifted_roundtrip(once, p.quality, p.shift_y, p.shift_x)


def _shifted_roundtrip(img8: np.ndarray, quality: int, shift_y: int, shift_x: int) -> np.ndarray:
    # A 4:2:0 JPEG of uint8 ``img8`` whose 8x8 grid starts (shift_y, shift_x) px before the top-left pixel: edge-pad,
    # compress and decode, crop the padding off. The same size, float32 in [0, 1].
    padded = np.pad(img8, ((shift_y, 0), (shift_x, 0), (0, 0)), mode="edge")
    out = _roundtrip(padded, quality, 2)[shift_y:, shift_x:]
    return np.ascontiguousarray(out, dtype=np.float32) / np.float32(255.0)


def double_jpeg_factors(params: DoubleJpegParams, shape: tuple[int, ...]) -> dict:
    """The schema's JPEG factors: the lower of the two qualities (the one whose quantisation dominates)."""
    return {"quality": int(min(params.first, params.quality))}


def describe_double_jpeg(p: DoubleJpegParams, f: dict) -> str:
    """The ground-truth observation of double compression ``p``."""
    grid = f", grid shifted by ({p.shift_x}, {p.shift_y}) px" if p.shift_x or p.shift_y else ", grids aligned"
    return f"synthesised double JPEG compression at quality={p.first} then {p.quality} (4:2:0){grid}"


@dataclass(frozen=True)
class CroppedJpegParams:
    """A 4:2:0 JPEG at ``quality`` cropped since by ``shift_y`` rows and ``shift_x`` columns (not both 0).

    What a gallery crop, a screenshot of part of a photo or a tile cut from one is: the 8x8 grid no longer starts at
    the top-left pixel.
    """

    kind: ClassVar[str] = "jpeg"
    quality: int
    shift_x: int
    shift_y: int

    def __post_init__(self):
        for name in ("quality", "shift_x", "shift_y"):
            value = getattr(self, name)
            check(isinstance(value, int | np.integer), f"{name} must be an integer, got {value!r}")
        check_in("JPEG quality", self.quality, 1, 100)
        check_in("crop x (px)", self.shift_x, 0, 7)
        check_in("crop y (px)", self.shift_y, 0, 7)
        check(self.shift_x or self.shift_y, "a cropped JPEG is cropped by at least one row or column")


def sample_cropped_jpeg(rng: np.random.Generator, *, quality: tuple[int, int] = (10, 90)) -> CroppedJpegParams:
    """Quality uniform in [10, 90]; the crop uniform over the 63 grid offsets other than (0, 0)."""
    q = int(rng.integers(quality[0], quality[1] + 1))
    offset = int(rng.integers(1, 64))
    return CroppedJpegParams(q, offset % 8, offset // 8)


def apply_cropped_jpeg(img: np.ndarray, params: CroppedJpegParams) -> np.ndarray:
    """Compress (4:2:0) on a grid shifted by the crop: the same size, the grid off the top-left pixel."""
    return _shifted_roundtrip(to_uint8(as_image(img)), params.quality, params.shift_y, params.shift_x)


def cropped_jpeg_factors(params: CroppedJpegParams, shape: tuple[int, ...]) -> dict:
    """The schema's JPEG factors: the quality."""
    return {"quality": int(params.quality)}


def describe_cropped_jpeg(p: CroppedJpegParams, f: dict) -> str:
    """The ground-truth observation of a cropped JPEG ``p``."""
    return (f"synthesised JPEG compression at quality={p.quality} (4:2:0), cropped since by {p.shift_y} rows and "
            f"{p.shift_x} columns (grid off the top-left pixel)")  # fmt: skip


#: This kind's models; :data:`rl.degradations.MODELS` files them by kind and name.
MODELS = (
    DegradationModel(
        kind="jpeg",
        name="rnr",
        params=JpegParams,
        sample=sample_jpeg,
        apply=apply_jpeg,
        factors=jpeg_factors,
        describe=describe_jpeg,
        source="reason-restore's own protocol: ranges spread the severities of reasoner.kinds evenly",
    ),
    DegradationModel(
        kind="jpeg",
        name="444",
        params=Jpeg444Params,
        sample=sample_jpeg444,
        apply=apply_jpeg444,
        factors=jpeg444_factors,
        describe=describe_jpeg444,
        source="IJG libjpeg (Pillow) without chroma subsampling; Real-ESRGAN's jpeg_range [30, 95]",
    ),
    DegradationModel(
        kind="jpeg",
        name="double",
        params=DoubleJpegParams,
        sample=sample_double_jpeg,
        apply=apply_double_jpeg,
        factors=double_jpeg_factors,
        describe=describe_double_jpeg,
        source="Real-ESRGAN second-order degradation (two JPEG stages, Wang et al. 2021); misaligned double "
        "compression as in JPEG forensics (Bianchi & Piva 2012)",
    ),
    DegradationModel(
        kind="jpeg",
        name="cropped",
        params=CroppedJpegParams,
        sample=sample_cropped_jpeg,
        apply=apply_cropped_jpeg,
        factors=cropped_jpeg_factors,
        describe=describe_cropped_jpeg,
        source="non-aligned JPEG compression of JPEG forensics (Luo, Huang & Qi 2007; Bianchi & Piva 2012): a "
        "JPEG cropped after saving",
    ),
)
