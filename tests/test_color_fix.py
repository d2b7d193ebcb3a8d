"""Colour / low-frequency fixes: the input's colour comes back, the output's detail stays."""

import cv2
import numpy as np
import pytest

from restorer.color_fix import adain_fix, color_fix, fix_applies, wavelet_fix, wavelet_split
from rl.photos import load_photo


def _low(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), 8)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_photo("astronaut")[64:192, 160:288].astype(np.float32)  # 128x128, faces and texture


@pytest.fixture(scope="module")
def shifted(photo) -> np.ndarray:
    """What a generative editor's colour drift looks like: a warm cast, a gain and a smooth shading ramp."""
    ramp = np.linspace(-0.08, 0.08, photo.shape[1], dtype=np.float32)[None, :, None]
    return np.clip(photo * np.array([1.15, 0.95, 0.8], np.float32) + 0.05 + ramp, 0, 1).astype(np.float32)


def test_wavelet_split_is_exact(photo):
    high, low = wavelet_split(photo, 5)
    np.testing.assert_allclose(high + low, photo, atol=1e-5)


# wavelet also undoes the shading ramp; AdaIN is global, so it fixes the cast and gain but not the ramp
@pytest.mark.parametrize(("fix", "left"), [(wavelet_fix, 0.35), (adain_fix, 0.6)])
def test_fix_restores_the_input_colour(photo, shifted, fix, left):
    out = fix(shifted, photo)
    assert out.dtype == np.float32 and out.shape == photo.shape
    before, after = np.abs(_low(shifted) - _low(photo)).mean(), np.abs(_low(out) - _low(photo)).mean()
    assert after < left * before
    np.testing.assert_allclose(out.mean(axis=(0, 1)), photo.mean(axis=(0, 1)), atol=0.02)


def test_wavelet_fix_keeps_the_outputs_high_frequencies(photo):
    # the output has detail the input lacks (as a restoration would): the fix must keep it, not the input's blur
    blurred = cv2.GaussianBlur(photo, (0, 0), 2)
    shifted_sharp = np.clip(photo * 0.8 + 0.1, 0, 1).astype(np.float32)
    out = wavelet_fix(shifted_sharp, blurred)
    detail = shifted_sharp - _low(shifted_sharp)
    kept = out - _low(out)
    corr = np.corrcoef(detail.ravel(), kept.ravel())[0, 1]
    assert corr > 0.95
    assert np.abs(kept).mean() > 0.8 * np.abs(detail).mean()  # not smoothed away


def test_adain_matches_channel_statistics(photo, shifted):
    out = adain_fix(shifted, photo)
    np.testing.assert_allclose(out.std(axis=(0, 1)), photo.std(axis=(0, 1)), atol=0.01)


def test_small_and_flat_images():
    tiny = np.full((3, 5, 3), 0.7, np.float32)
    assert np.allclose(wavelet_fix(tiny, np.full_like(tiny, 0.2)), 0.2, atol=1e-5)
    assert np.allclose(adain_fix(tiny, np.full_like(tiny, 0.2)), 0.2, atol=1e-5)  # zero std stays finite


def test_dispatch_and_errors(photo, shifted):
    same = color_fix(shifted, photo, None)
    assert np.array_equal(same, shifted) and same is not shifted
    assert np.array_equal(color_fix(shifted, photo, "adain"), adain_fix(shifted, photo))
    with pytest.raises(ValueError, match="choose one of"):
        color_fix(shifted, photo, "histogram")
    with pytest.raises(ValueError, match="resize the output"):
        wavelet_fix(shifted[:64], photo)


@pytest.mark.parametrize(
    ("kinds", "applies"),
    [
        (["noise", "jpeg"], True),  # detail-only kinds: the input's colour is right
        (["noise", "low_light"], False),  # brightening is the task: the input's low frequencies are wrong
        (["haze"], False),  # dehazing changes contrast and colour on purpose
        ([], True),
    ],
)
def test_fix_applies(kinds, applies):
    assert fix_applies(kinds) is applies
