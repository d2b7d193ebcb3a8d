"""Tiled restoration of large images: the same result as the whole image, no seams, the input untouched.

Thresholds are lowered so a ~0.5 MP photo counts as "large" and is cut into a dozen tiles.
"""

import cv2
import numpy as np
import pytest

from restorer import Operation, Plan
from restorer.classical import ClassicalRestorer
from restorer.tiling import TILE_PIXELS, _cuts, map_tiles, map_tiles_inplace, needs_tiling, proxy_crops, tiles
from rl import degradations as D
from rl.photos import load_photo

SHAPE = (560, 760)  # just above TILED's threshold; 3 x 4 tiles of 190 px
TILED = dict(tile_pixels=400_000, tile=190, deconv_tile=190)

PARAMS = {
    "noise": {"sigma": 12.0, "model": "gaussian"},
    "jpeg": {"quality": 35},
    "rain": {"density": 0.03, "angle": 80.0},
    "blur": {"sigma": 1.5, "kernel": "gaussian"},
    "motion_blur": {"length": 9.0, "angle": 30.0},
    "low_resolution": {"scale": 2.0},
    "low_light": {"exposure": 0.5, "gamma": 1.2},
    "haze": {"transmission": 0.6, "airlight": [0.9, 0.9, 0.9], "beta": 1.0},
}


class _NoRecord:
    degradations = ()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img = cv2.resize(load_photo("astronaut"), SHAPE[::-1], interpolation=cv2.INTER_AREA)
    return D.apply_noise(img, D.NoiseParams(sigma=12.0, seed=3))


def _plan(kinds) -> Plan:
    return Plan(operations=[Operation(kind=k, severity=0.5, params=PARAMS[k]) for k in kinds], use_references=False)


def _borders(shape, tile, width=2) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for y, _ in _cuts(shape[0], tile)[1:]:
        mask[y - width : y + width] = True
    for x, _ in _cuts(shape[1], tile)[1:]:
        mask[:, x - width : x + width] = True
    return mask


def test_default_threshold_keeps_photos_up_to_4mp_whole():
    # Results up to ~4 MP must stay bit-identical to the untiled restorer's: those are never tiled.
    assert TILE_PIXELS >= 4_000_000
    assert not needs_tiling((2000, 2000, 3)) and needs_tiling((4000, 6000, 3))


def test_tiles_cover_the_image_once():
    count = np.zeros((101, 67), int)
    for padded, core in tiles(101, 67, 30, 7):
        view = count[padded]
        view[core] += 1
        assert view.shape[0] - (core[0].stop - core[0].start) <= 14
    assert (count == 1).all()


@pytest.mark.parametrize("inplace", [False, True])
def test_map_tiles_equals_whole_for_a_local_filter(inplace):
    x = np.random.default_rng(0).random((300, 410, 3)).astype(np.float32)
    fn = lambda t: cv2.GaussianBlur(t, (0, 0), 2.0)  # noqa: E731 - reach 8 px, under the overlap
    got = map_tiles_inplace(fn, x.copy(), tile=100, overlap=12) if inplace else map_tiles(fn, x, tile=100, overlap=12)
    np.testing.assert_allclose(got, fn(x), atol=1e-6)  # SIMD rounding may differ with alignment


def test_map_tiles_refuses_to_write_into_its_input():
    x = np.zeros((64, 64, 3), np.float32)
    with pytest.raises(ValueError, match="cannot write into its input"):
        map_tiles(lambda t: t, x, tile=16, out=x)


def test_proxy_crops_are_bounded():
    x = np.zeros((5000, 7000, 3), np.float32)
    assert proxy_crops(x).shape == (2048, 2048, 3)
    small = np.zeros((600, 600, 3), np.float32)
    assert proxy_crops(small) is small


@pytest.mark.parametrize(
    "kinds, max_diff, mean_diff",
    [
        (["noise"], 1e-6, 1e-7),  # non-local means reads 6 px around a pixel: a tile's core is exact
        (["jpeg"], 1e-6, 1e-7),
        (["jpeg", "noise"], 1e-6, 1e-7),  # deblocked and denoised in one pass (denoise_deblock)
        (["rain"], 1e-4, 1e-7),
        (["blur"], 1e-5, 1e-6),  # Wiener on the mirrored tile: exact up to float rounding with enough overlap
        (["low_resolution"], 1e-5, 1e-6),
        (["noise", "blur", "low_resolution"], 1e-5, 1e-6),  # joint deconvolution, guard judged image-wide
        (["noise", "low_light"], 1e-6, 1e-7),  # the tone curve is prepared once for the whole image
        (["haze"], 1e-5, 1e-7),  # the transmission map too (at full resolution below 4 MP)
        # Richardson-Lucy's extrapolation step is sized per tile: close, not exact.
        (["motion_blur"], 0.05, 2e-3),
        (["jpeg", "noise", "motion_blur"], 0.05, 2e-3),
    ],
)
def test_tiled_matches_whole(photo, kinds, max_diff, mean_diff):
    plan = _plan(kinds)
    whole = ClassicalRestorer().restore(photo, _NoRecord, [], plan).pixels
    before = photo.copy()
    tiled = ClassicalRestorer(**TILED).restore(photo, _NoRecord, [], plan).pixels
    np.testing.assert_array_equal(photo, before)  # in-place steps never touch the caller's image
    assert tiled.dtype == np.float32 and tiled.shape == photo.shape
    d = np.abs(tiled - whole).max(axis=2)
    assert d.max() <= max_diff and d.mean() <= mean_diff, (d.max(), d.mean())
    # No seam: along tile borders the difference is no larger than elsewhere.
    border = _borders(d.shape, TILED["tile"])
    assert d[border].max() <= d[~border].max() + 1e-6


def test_no_seam_in_the_tiled_output(photo):
    # Steps across tile borders are like steps anywhere else in the restored image.
    out = ClassicalRestorer(**TILED).restore(photo, _NoRecord, [], _plan(["jpeg", "noise", "motion_blur"])).pixels
    step = np.abs(np.diff(out, axis=0)).max(axis=2)
    rows = np.zeros(step.shape[0], bool)
    rows[[y - 1 for y, _ in _cuts(out.shape[0], TILED["tile"])[1:]]] = True
    assert step[rows].mean() <= 1.2 * step[~rows].mean()


def test_a_wrong_kernel_is_guarded_alike_tiled_and_whole(photo):
    # A kernel far wider than the blur trips the stability guard; judged once per image, every tile is scaled alike.
    # (A 16 px disk on 1.5 px blur: the guard keeps a tenth of the correction, whole or tiled.)
    plan = Plan(operations=[Operation(kind="blur", severity=0.9, params={"sigma": 4.0, "kernel": "defocus"})])
    whole = ClassicalRestorer().restore(photo, _NoRecord, [], plan).pixels
    tiled = ClassicalRestorer(**TILED).restore(photo, _NoRecord, [], plan).pixels
    d = np.abs(tiled - whole)
    assert d.mean() < 2e-3, d.mean()


def test_empty_plan_returns_a_copy_when_tiled(photo):
    out = ClassicalRestorer(**TILED).restore(photo, _NoRecord, [], Plan(operations=[])).pixels
    assert out is not photo
    np.testing.assert_array_equal(out, photo)


def test_dehazing_a_large_image_reads_transmission_from_a_proxy(photo, monkeypatch):
    # Above 4 MP the transmission map is estimated on a down-scaled copy: close and seamless. (Not equal: noise
    # lowers the minima a full-resolution dark channel takes, the down-scaled copy has averaged it away.)
    import restorer.tiling

    plan = _plan(["haze"])
    whole = ClassicalRestorer().restore(photo, _NoRecord, [], plan).pixels
    monkeypatch.setattr(restorer.tiling, "TILE_PIXELS", 100_000)  # the proxy is half the photo's side
    tiled = ClassicalRestorer(**TILED).restore(photo, _NoRecord, [], plan).pixels
    d = np.abs(tiled - whole).max(axis=2)
    assert d.mean() < 0.025, d.mean()
    border = _borders(d.shape, TILED["tile"])
    assert d[border].max() <= d[~border].max() + 1e-6
