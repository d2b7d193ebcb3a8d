"""JPEG compression: block-DCT quantisation and chroma subsampling."""

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
)
