"""Large photos: diagnosis on a bounded proxy agrees with the full one, no whole-image copies, the pixel guard holds.

Thresholds are lowered so images of well under a megapixel take the large-image paths.
"""

import cv2
import numpy as np
import pytest
from PIL import Image

from agent.graph import _in_range
from reasoner.imageio import ImageLoadError, PixelLimit, load_image, resolve_max_pixels
from reasoner.measure import MeasureReasoner
from reasoner.measure import entries as E
from reasoner.quality.features import _unit, change_features
from rl import degradations as D
from rl.photos import load_photo


def _photo(shape=(900, 1200)) -> np.ndarray:
    return cv2.resize(load_photo("coffee"), shape[::-1], interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def measure():
    return MeasureReasoner()


@pytest.mark.parametrize(
    "ops",
    [
        # motion blur: its length is measured on the spectrum (the kernel measurement bounded to a central crop)
        [D.MotionBlurParams(length=11.0, angle=0.0)],
        [D.BlurParams(kernel="defocus", radius=6.0)],  # a disk whose zero rings are measured
        [D.BlurParams(kernel="gaussian", sigma=2.0)],
        [D.NoiseParams(sigma=15.0, seed=1), D.JpegParams(quality=35)],
    ],
)
def test_proxy_diagnosis_agrees_on_kinds(measure, monkeypatch, ops):
    img = D.apply(_photo(), ops)
    full = measure.diagnose(img)
    monkeypatch.setattr(E, "PSF_MAX_PIXELS", 512 * 512)  # a 1.1 MP image is now "large"
    proxy = measure.diagnose(img)
    assert [d.kind for d in proxy.degradations] == [d.kind for d in full.degradations]
    for a, b in zip(full.degradations, proxy.degradations, strict=True):
        assert abs(a.severity - b.severity) < 1e-9  # severities come from crops already; only kernels changed
        for k, v in a.factors.model_dump().items():
            w = getattr(b.factors, k)
            if isinstance(v, float):
                assert abs(v - w) <= 0.25 * abs(v) + 1.0, (k, v, w)


def test_quality_statistics_read_in_range_images_without_copies():
    x = np.random.default_rng(0).random((64, 80, 3)).astype(np.float32)
    assert _unit(x) is x
    wild = x * 2 - 0.5
    np.testing.assert_array_equal(_unit(wild), np.clip(wild, 0, 1))
    assert _unit(x.astype(np.float64)).dtype == np.float32
    # The fast path changes nothing: same statistics as from a clipped copy.
    y = np.clip(x + 0.05, 0, 1).astype(np.float32)
    assert change_features(x, y) == change_features(x.copy(), y.copy())


def test_restorer_output_kept_only_when_valid():
    x = np.zeros((8, 8, 3), np.float32)
    assert _in_range(x) is x
    assert _in_range(x + 2) is None  # out of range: the checked (clipping) path
    assert _in_range(np.full((8, 8, 3), np.nan, np.float32)) is None  # NaN: the checked path names the error
    assert _in_range(x.astype(np.float64)) is None
    assert _in_range(np.zeros((8, 8), np.float32)) is None


def test_pixel_guard_unchanged(tmp_path):
    # The decompression-bomb / memory guard still refuses what it refused before tiling existed.
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(path)
    with pytest.raises(ImageLoadError):
        load_image(path, max_pixels=100_000)
    assert load_image(path, max_pixels=120_000).pixels.shape == (300, 400, 3)
    limit = resolve_max_pixels(5000, "restore")
    assert isinstance(limit, PixelLimit) and int(limit) == 5000
