"""The JPEG quantisation cells: the grid check, the projection's promise, and deblocking inside the cells."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from reasoner.jpeg_cells import (
    GRID_FIT_MAX,
    carried_grid,
    coefficients,
    fitted_quality,
    found_grid,
    grid_fit,
    grid_origin,
    outside,
    project,
)
from restorer.operators.deblock import DEBLOCK_CHROMA, DEBLOCK_LUMA, deblock, jpeg_sigma
from restorer.operators.filters import nlm
from rl.photos import load_photo


def jpeg_round_trip(x: np.ndarray, quality: int, subsampling: int = 2) -> np.ndarray:
    """``x`` (float, [0, 1]) saved by Pillow as a JPEG at ``quality`` (4:2:0 by default) and read back as float32."""
    buf = io.BytesIO()
    Image.fromarray(np.round(x * 255).astype(np.uint8)).save(buf, "JPEG", quality=quality, subsampling=subsampling)
    return np.asarray(Image.open(buf)).astype(np.float32) / 255.0


def _unprojected(src: np.ndarray, quality: int, strength: float = 1.0) -> np.ndarray:
    return nlm(src, jpeg_sigma(quality, strength), DEBLOCK_LUMA, DEBLOCK_CHROMA)


def _psnr(a, b):
    a8, b8 = (np.round(np.clip(v, 0, 1) * 255) for v in (a, b))
    return 10 * np.log10(255.0**2 / np.mean((a8 - b8) ** 2))


@pytest.fixture(scope="module", params=[("coffee", 24), ("astronaut", 45), ("camera", 70)])
def case(request):
    name, quality = request.param
    clean = (np.round(load_photo(name)[64:320, 96:352] * 255) / 255).astype(np.float32)
    return clean, jpeg_round_trip(clean, quality), quality


def test_the_grid_is_found_on_the_jpeg_and_not_off_it(case):
    clean, src, quality = case
    assert grid_fit(src, quality) <= GRID_FIT_MAX and carried_grid(src, quality)[:2] == (quality, (0, 0))
    assert grid_fit(clean, quality) > 0.2  # the PNG it came from
    assert grid_fit(src[3:, 5:], quality) > 0.2  # the same JPEG cropped off its grid
    assert grid_fit(jpeg_round_trip(clean, quality, subsampling=0), quality) <= GRID_FIT_MAX  # 4:4:4 too


@pytest.mark.parametrize("quality", [20, 50, 75, 90, 95])
def test_the_grid_of_a_cropped_jpeg_is_found_without_knowing_its_quality(quality):
    # What the diagnosis does before it reads the quality: where the blocks start in a JPEG cropped since.
    for name in ("astronaut", "motorcycle_right", "camera"):
        jpeg = jpeg_round_trip(load_photo(name), quality)
        for dy, dx in ((0, 0), (3, 5), (5, 3), (1, 7), (7, 0)):
            assert grid_origin(jpeg[dy:, dx:]) == ((8 - dy) % 8, (8 - dx) % 8), (name, dy, dx)
            assert found_grid(jpeg[dy:, dx:]) == grid_origin(jpeg[dy:, dx:])


def test_no_grid_is_found_where_there_is_none():
    # The PNG originals (no JPEG in their past), the same up-sampled 2x, and a JPEG resized since.
    for name in ("astronaut", "coffee", "camera"):
        photo = load_photo(name)
        up = np.repeat(np.repeat(photo[:200, :200], 2, 0), 2, 1)
        resized = cv2.resize(jpeg_round_trip(photo, 50), None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA)
        for img in (photo[3:, 5:], up, resized):
            assert grid_origin(img) == (0, 0), name
            assert found_grid(img) is None, name  # told apart from a grid that starts at the top-left pixel


def test_a_quality_read_a_few_off_is_fitted_to_the_files_own(case):
    # The diagnosis reads the quality off nine low-frequency steps and can be a few off; the cells must be the file's.
    _, src, quality = case
    for guess in (quality - 4, quality + 3):
        assert fitted_quality(src, guess)[0] == quality
        assert carried_grid(src, guess)[:2] == (quality, (0, 0))


def test_an_image_too_small_or_flat_to_tell_has_no_fit():
    assert grid_fit(np.zeros((7, 300, 3), np.float32), 50) is None
    assert grid_fit(np.full((64, 64, 3), 0.5, np.float32), 50) is None
    assert carried_grid(np.full((64, 64, 3), 0.5, np.float32), 50) is None


def test_projecting_never_moves_an_estimate_away_from_the_image_before_compression(case):
    # The cells hold the image before compression (up to 8-bit rounding), and a box is convex: whatever the estimate,
    # its luma coefficients clipped into the cells are no further from that image's than they were.
    clean, src, quality = case
    rng = np.random.default_rng(0)
    estimates = [
        np.clip(src + rng.normal(0, 0.08, src.shape), 0, 1).astype(np.float32),  # far off in every direction
        np.full_like(src, 0.5),  # nothing of the image at all
        deblock(src, quality, 3.0),  # a filter far stronger than the loss
    ]
    truth = coefficients(clean)
    for est in estimates:
        before = np.linalg.norm(coefficients(est) - truth)
        after = np.linalg.norm(coefficients(project(src, est, quality)) - truth)
        assert after <= before + 1e-6 * before
    # Inside them after, but for pixels the [0, 1] clip pulls back out (the noisy estimate clips a lot).
    assert outside(src, project(src, estimates[2], quality), quality) < 0.05


def test_the_source_is_inside_its_own_cells_and_unprojected_filtering_is_not(case):
    _, src, quality = case
    assert outside(src, src, quality) == 0.0
    assert outside(src, _unprojected(src, quality), quality) > 0.15


def test_deblocking_inside_the_cells_helps_and_a_bolder_pass_cannot_smooth_the_file_away(case):
    clean, src, quality = case
    assert _psnr(deblock(src, quality), clean) > _psnr(src, clean) + 0.1
    bold = deblock(src, quality, 2.25)
    unprojected = _unprojected(src, quality, 2.25)
    assert _psnr(bold, clean) > _psnr(unprojected, clean)
    assert _psnr(bold, clean) > _psnr(src, clean) - 0.5
    assert outside(src, bold, quality) <= 0.15


def test_a_crop_or_tile_of_a_jpeg_finds_its_grid_and_is_projected_on_it(case):
    # A tile of a big photo, a crop the agent judges, or a JPEG cropped since: the grid starts elsewhere.
    clean, src, quality = case
    shifted, truth = np.ascontiguousarray(src[3:, 5:]), clean[3:, 5:]
    assert grid_fit(shifted, quality) > 0.2  # off the top-left grid
    assert grid_origin(shifted) == (5, 3)
    assert carried_grid(shifted, quality)[:2] == (quality, (5, 3))
    out = deblock(shifted, quality)
    assert outside(shifted, out, quality, origin=(5, 3)) <= 0.15
    assert _psnr(out, truth) > _psnr(_unprojected(shifted, quality), truth)


def test_a_resized_jpeg_is_filtered_but_not_projected(case):
    import cv2

    _, src, quality = case
    resized = np.ascontiguousarray(cv2.resize(src, None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA))
    assert carried_grid(resized, quality) is None
    np.testing.assert_array_equal(deblock(resized, quality), _unprojected(resized, quality))


def test_the_grid_of_one_image_is_fitted_once(monkeypatch):
    # the deblocking and the scorer ask about the same source (and each retry asks again): one fit per content
    import reasoner.jpeg_cells as cells

    calls = []
    real = cells.fitted_quality
    monkeypatch.setattr(cells, "fitted_quality", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(cells, "_FITTED", {})
    img = np.random.default_rng(3).random((64, 64, 3)).astype(np.float32)
    first = cells.fitted_grid(img, 40)
    assert cells.fitted_grid(img.copy(), 40) == first and len(calls) == 1  # same pixels, another array
    other = img.copy()
    other[10, 10] = 0.0
    cells.fitted_grid(other, 40), cells.fitted_grid(img, 41)  # other pixels, another quality
    assert len(calls) == 3
