"""Blur kernels measured from spectral zeros (``reasoner.measure.psf``) on real photos with synthesised blur."""

import numpy as np
import pytest

from reasoner.measure.psf import defocus_radius, motion_length
from rl.degradations import BlurParams, JpegParams, MotionBlurParams, NoiseParams, apply
from rl.photos import load_photo


def _luma(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], np.float32)


def _crop(name: str, side: int = 448) -> np.ndarray:
    img = load_photo(name)
    h, w = img.shape[:2]
    s = min(h, w, side)
    return img[(h - s) // 2 : (h + s) // 2, (w - s) // 2 : (w + s) // 2]


@pytest.mark.parametrize(
    ("photo", "radius"),
    [
        ("astronaut", 1.8),  # one zero ring below the frequency cut-off
        ("coffee", 3.4),
        ("camera", 5.7),
        ("motorcycle_right", 7.6),  # many rings: must not lock on a harmonic
    ],
)
def test_defocus_radius_is_measured(photo, radius):
    img = apply(_crop(photo), [BlurParams("defocus", radius=radius)])
    got = defocus_radius(_luma(img))
    assert got is not None
    assert got[0] == pytest.approx(radius, rel=0.06)


@pytest.mark.parametrize(
    ("photo", "radius"),
    [("camera", 4.4), ("chelsea", 4.4), ("astronaut", 6.5), ("rocket", 6.5), ("brick", 5.0)],
)
def test_a_disk_is_not_read_as_the_smaller_disk_its_later_zeros_fit(photo, radius):
    # On a 256 px crop a disk of radius 4.4 has its first three zero rings below the cut-off; its second and third
    # ring are a disk of radius 2.4's first and second, which scored a little better, so every such crop was read
    # at 2.4 (6.5 at 2.4 or 3.5): deconvolved with that smaller disk, a protocols crop came back 1.1 dB below its input
    img = apply(_crop(photo, 256), [BlurParams("defocus", radius=radius)])
    got = defocus_radius(_luma(img))
    assert got is not None
    assert got[0] == pytest.approx(radius, rel=0.04)


@pytest.mark.parametrize("ops", [[], [JpegParams(92)], [BlurParams("defocus", radius=6.0), JpegParams(92)]])
def test_a_radius_at_the_edge_of_the_search_is_not_measured(ops):
    # the coins photo's spectrum keeps falling to the search's largest radius, 16 px: read there sharp, as a camera
    # JPEG, and under a disk of radius 6 saved as one (deconvolved with a 16 px disk, such a crop is ruined)
    img = apply(_crop("coins"), ops) if ops else _crop("coins")
    got = defocus_radius(_luma(img))
    assert got is None or got[0] < 15.0


@pytest.mark.parametrize(
    ("photo", "length", "angle"),
    [
        ("camera", 15.8, 167.0),
        ("motorcycle_right", 12.4, 77.0),
        ("coffee", 27.9, 66.0),  # long: the short motion sharing its zeros must not win
        ("sklearn_china", 30.7, 171.0),
    ],
)
def test_motion_length_is_measured(photo, length, angle):
    img = apply(_crop(photo), [MotionBlurParams(length, angle)])
    got = motion_length(_luma(img), angle)
    assert got is not None
    assert got[0] == pytest.approx(length, rel=0.08)


@pytest.mark.parametrize(
    "ops",
    [
        [],  # sharp photo
        [BlurParams("gaussian", sigma=2.0)],  # a Gaussian has no spectral zeros
        [NoiseParams(15.0, "gaussian", 0.0, 3)],
        [JpegParams(30)],
    ],
)
@pytest.mark.parametrize("photo", ["astronaut", "coffee", "camera", "sklearn_china"])
def test_no_kernel_is_claimed_without_zeros(photo, ops):
    img = apply(_crop(photo), ops) if ops else _crop(photo)
    assert defocus_radius(_luma(img)) is None
    assert motion_length(_luma(img), 30.0) is None


def test_small_images_are_not_measured():
    assert defocus_radius(np.zeros((100, 100))) is None
    assert motion_length(np.zeros((100, 100)), 0.0) is None


@pytest.mark.parametrize(
    ("photo", "length", "angle"),
    [("camera", 20.0, 80.0), ("astronaut", 16.0, 45.0), ("chelsea", 18.0, 120.0), ("rocket", 14.0, 150.0)],
)
def test_a_reported_motion_on_a_small_crop_is_measured(photo, length, angle):
    # A 256 px crop's profile is averaged over few tiles, and its dips stayed under MIN_DIP_MOTION: the factor head's
    # length was used instead, 15 px for a 20 px shake of the cameraman, 6.8 for 14 on the rocket
    from reasoner import load_reasoner

    img = np.round(apply(_crop(photo, 256), [MotionBlurParams(length, angle)]) * 255) / 255
    record = load_reasoner("measure").diagnose(img.astype(np.float32))
    motion = [d for d in record.detected() if d.kind == "motion_blur"]
    assert motion and motion[0].factors.length == pytest.approx(length, rel=0.06)


@pytest.mark.parametrize("quality", [80, 30])
@pytest.mark.parametrize(("photo", "length", "angle"), [("camera", 11.0, 0.0), ("motorcycle_right", 14.0, 30.0)])
def test_a_shaken_jpeg_is_measured_not_read_off_its_blocks(photo, quality, length, angle):
    # JPEG fills the spectral dips below MIN_DIP_MOTION; the factor head then read the block edges as a longer blur
    # (an 11 px shake of the cameraman saved at quality 30-80: 18.7-18.9 px, and a deconvolution with ghost edges)
    from reasoner import load_reasoner

    img = np.round(apply(_crop(photo), [MotionBlurParams(length, angle), JpegParams(quality)]) * 255) / 255
    record = load_reasoner("measure").diagnose(img.astype(np.float32))
    motion = [d for d in record.detected() if d.kind == "motion_blur"]
    assert motion and motion[0].factors.length == pytest.approx(length, rel=0.1)
