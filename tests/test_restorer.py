"""The classical restorer against synthesised degradations of held-out real photos, and its contract."""

import importlib
import inspect
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from reasoner.kinds import KINDS, LOWPASS, check_table
from restorer import Operation, Plan, ReferenceImage, RestoreOutput, Restorer, load_restorer, plan_from_record
from restorer import operators as O
from restorer.classical import ClassicalRestorer
from restorer.instructions import PHRASES
from restorer.operators import OPERATORS
from restorer.operators import kernels as K
from restorer.operators.deconvolution import clamp_to_footprint
from rl import degradations as D
from rl.ground_truth import ground_truth
from rl.photos import load_photo, random_crop

PHOTOS = ("astronaut", "coffee")  # held out from calibration; centre crops for speed


def _crop(name: str, n: int = 256) -> np.ndarray:
    p = load_photo(name)
    y, x = (p.shape[0] - n) // 2, (p.shape[1] - n) // 2
    return np.ascontiguousarray(p[y : y + n, x : x + n])


def _psnr(clean, img) -> float:
    return float(peak_signal_noise_ratio(clean, img, data_range=1.0))


@pytest.fixture(scope="module")
def restorer():
    return ClassicalRestorer()


@pytest.fixture(scope="module", params=PHOTOS)
def clean(request):
    return _crop(request.param)


def _restore(restorer, clean, ops, strength=1.0):
    degraded = D.apply(clean, ops)
    record = ground_truth(ops, degraded)
    out = restorer.restore(degraded, record, [], plan_from_record(record, strength=strength)).pixels
    return degraded, out


# (case id, ops, required PSNR gain in dB). Gains measured on the astronaut / coffee crops are in the comments; the
# margins leave room for platform differences in OpenCV and the FFT.
CASES = [
    # non-local means in an opponent colour space: +8.0 / +9.1 dB
    ("noise", [D.NoiseParams(20.0, "gaussian", seed=1)], 5.0),
    # the same after a generalised Anscombe transform: +9.0 / +9.6 dB
    ("noise_poisson", [D.NoiseParams(25.0, "poisson_gaussian", 0.7, seed=2)], 5.0),
    # non-local means matched to the quantisation error: +0.9 / +1.1 dB (classical deblocking gains are small)
    ("jpeg", [D.JpegParams(20)], 0.5),
    # Wiener deconvolution of the mirrored image, floor raised where 2-3x down-sampling looks alike: +4.0 / +4.0 dB
    ("blur_gaussian", [D.BlurParams("gaussian", sigma=2.0)], 3.0),
    # the same with a disk PSF: +11.1 / +10.4 dB
    ("blur_defocus", [D.BlurParams("defocus", radius=4.0)], 5.0),
    # accelerated Richardson-Lucy with a diagonal line PSF, 8 iterations (robust to a wrong length): +3.4 / +4.0 dB
    ("motion_blur", [D.MotionBlurParams(13.0, 30.0)], 2.5),
    # dark-channel prior scaled to the diagnosed mean transmission: +11.3 / +10.5 dB
    ("haze", [D.HazeParams(1.5, (0.9, 0.9, 0.92), seed=3)], 6.0),
    # inverse tone curve, then NLM of the amplified read noise: +22.9 / +21.7 dB
    ("low_light", [D.LowLightParams(0.15, 1.5, 2.0, seed=4)], 15.0),
    # streak excess that persists along the rain direction is subtracted: +3.8 / +6.9 dB
    ("rain", [D.RainParams(0.04, 100.0, 0.9, seed=5)], 2.0),
    # Wiener sharpening clamped to the local range: +0.6 / +0.5 dB (what was lost is mostly gone)
    ("low_resolution", [D.LowResolutionParams(3.0)], 0.3),
    # mixed: deJPEG then denoise: +2.0 / +2.7 dB
    ("noise+jpeg", [D.NoiseParams(15.0, seed=6), D.JpegParams(50)], 1.0),
    # mixed: denoise, then deblur told how much noise the denoiser left: +3.4 / +3.8 dB
    ("blur+noise", [D.BlurParams("gaussian", sigma=1.5), D.NoiseParams(10.0, seed=7)], 2.0),
    # mixed: a deconvolution regularised by the JPEG error (it rang at -4.6 / -5.0 dB unregularised): +1.6 / +1.5 dB
    ("blur+jpeg", [D.BlurParams("defocus", radius=4.0), D.JpegParams(20)], 0.5),
    # mixed: two low-pass kinds undone by one deconvolution of their combined PSF (-6.8 / -7.0 dB one after the
    # other): +1.1 / +1.0 dB
    ("blur+low_resolution", [D.BlurParams("defocus", radius=3.0), D.LowResolutionParams(4.0)], 0.5),
    # mixed: denoise, then dehaze with the transmission bounded by the noise left: +9.8 / +9.0 dB
    ("haze+noise", [D.HazeParams(1.5, (0.9, 0.9, 0.92), seed=3), D.NoiseParams(20.0, seed=8)], 6.0),
]


@pytest.mark.parametrize("case, ops, margin", CASES, ids=[c[0] for c in CASES])
def test_restoring_improves_psnr(restorer, clean, case, ops, margin):
    degraded, out = _restore(restorer, clean, ops)
    before, after = _psnr(clean, degraded), _psnr(clean, out)
    assert after > before + margin, f"{case}: {before:.2f} -> {after:.2f} dB"


def test_output_contract(restorer, clean):
    ops = [D.NoiseParams(15.0, seed=3), D.BlurParams("gaussian", sigma=1.2)]
    degraded = D.apply(clean, ops)
    degraded.setflags(write=False)  # a read-only input must work and stay as it was
    before = degraded.copy()
    record = ground_truth(ops, degraded)
    out = restorer.restore(degraded, record, [], plan_from_record(record)).pixels
    assert np.array_equal(degraded, before)
    assert out.shape == degraded.shape and out.dtype == np.float32
    assert out.flags.writeable and not np.shares_memory(out, degraded)
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_float64_input_gives_float32(restorer, clean):
    record = ground_truth([], clean)
    out = restorer.restore(clean.astype(np.float64), record, [], Plan()).pixels
    assert out.dtype == np.float32 and np.array_equal(out, clean)


@pytest.mark.parametrize("ops", [[], [D.JpegParams(30)], [D.NoiseParams(20.0, seed=1), D.HazeParams(1.0, (1, 1, 1))]])
def test_empty_plan_and_strength_zero_return_the_input(restorer, clean, ops):
    degraded = D.apply(clean, ops) if ops else clean
    record = ground_truth(ops, degraded)
    for plan in (Plan(), plan_from_record(record, strength=0.0)):
        out = restorer.restore(degraded, record, [], plan).pixels
        assert out is not degraded and np.array_equal(out, degraded)  # bitwise


@pytest.mark.parametrize(
    "kind, params",
    [
        ("noise", {"sigma": 20.0, "model": "gaussian"}),
        ("jpeg", {"quality": 30}),
        ("blur", {"sigma": 2.0, "kernel": "defocus"}),
        ("motion_blur", {"length": 9.0, "angle": 45.0}),
        ("haze", {"transmission": 0.5, "airlight": [0.9, 0.9, 0.9], "beta": 1.0}),
        ("low_light", {"exposure": 0.3, "gamma": 1.5}),
        ("rain", {"density": 0.04, "angle": 90.0}),
        ("low_resolution", {"scale": 2.5}),
    ],
)
def test_every_operator_skips_at_strength_zero_and_acts_at_one(restorer, kind, params):
    img = _crop("astronaut", 96)
    record = ground_truth([], img)
    outs = [
        restorer.restore(
            img, record, [], Plan(operations=[Operation(kind=kind, severity=0.5, strength=s, params=params)])
        ).pixels
        for s in (0.0, 1.0)
    ]
    assert np.array_equal(outs[0], img)
    assert np.abs(outs[1] - img).mean() > 1e-4  # the operator really ran


def test_strength_one_is_best_when_the_diagnosis_is_right(restorer):
    # Noise sigma 20: the operator at the diagnosed strength beats a much weaker or stronger one.
    clean = _crop("coffee")
    scores = {s: _psnr(clean, _restore(restorer, clean, [D.NoiseParams(20.0, seed=4)], s)[1]) for s in (0.3, 1.0, 3.0)}
    assert scores[1.0] > scores[0.3] + 1.0 and scores[1.0] > scores[3.0] + 1.0, scores


@pytest.mark.parametrize(
    "run",
    [
        lambda x, s: O.deblur(x, 2.0, "defocus", strength=s),
        lambda x, s: O.deblur_motion(x, 9.0, 30.0, strength=s),
        lambda x, s: O.sharpen_resolution(x, 2.5, strength=s),
        lambda x, s: O.dehaze(x, 0.6, [0.9, 0.9, 0.9], strength=s),
    ],
    ids=["deblur", "motion", "low_resolution", "dehaze"],
)
def test_strength_below_one_blends_with_the_input(run, request):
    # A gentler deconvolution is the same kernel's result blended with the input, never a smaller kernel (which
    # rings where the real one would not); the same for dehazing an unsure haze.
    img = D.apply(_crop("coffee", 96), [D.BlurParams("defocus", radius=4.0)])
    full, half = run(img, 1.0), run(img, 0.5)
    inside = (full > 0.01) & (full < 0.99)  # clipping at 0 and 1 is not linear
    if request.node.callspec.id == "motion":  # nor is the clamp to the input's range over the PSF: where it held
        psf = O.motion_psf(9.0, 30.0)[0]  # the full result back, the half one is the blend of the unclamped one
        lo, hi = (clamp_to_footprint(np.full_like(img, v), img, psf) for v in (-9.0, 9.0))
        inside &= (full > lo + 1e-6) & (full < hi - 1e-6)
        assert inside.mean() > 0.5  # most pixels are left to the deconvolution
    assert np.allclose(half[inside], (img + 0.5 * (full - img))[inside], atol=2e-3)


def test_motion_deblurring_stays_within_the_inputs_range_over_the_psf():
    # A line PSF 60% too long on real motion rings far beyond the edges' values; the clamp keeps every pixel within
    # what the blurred image holds under the PSF's footprint (one 8-bit level of slack), and loses less to the truth.
    clean = _crop("astronaut")
    blurred = D.apply(clean, [D.MotionBlurParams(9.0, 30.0)])
    out = O.deblur_motion(blurred, 14.4, 30.0)
    psf = O.motion_psf(14.4, 30.0)[0]
    k = (psf >= 0.02 * psf.max()).astype(np.uint8)
    assert (out >= cv2.erode(blurred, k, borderType=cv2.BORDER_REFLECT) - 1.01 / 255).all()
    assert (out <= cv2.dilate(blurred, k, borderType=cv2.BORDER_REFLECT) + 1.01 / 255).all()
    raw = O.deconvolve(blurred, psf)
    assert _psnr(clean, out) > _psnr(clean, raw) + 0.3


def test_a_kernel_far_too_wide_is_reined_in():
    # Sigma-1 blur deconvolved with a radius-8 disk (a mis-measured PSF): the correction no blurred image could give
    # is scaled back (was 22 dB below the input, a pattern of rings).
    clean = _crop("astronaut")
    blurred = D.apply(clean, [D.BlurParams("gaussian", sigma=1.0)])
    assert _psnr(clean, O.deblur(blurred, 4.0, "defocus")) > _psnr(clean, blurred) - 7.0


def test_a_deblurred_sky_stays_plain(monkeypatch):
    # A soft lens (a soft-edged disk, radius 4 px) on the sklearn china photo's sky and roofs, deblurred with the hard
    # disk the diagnosis reads: the inverse rang into the plain sky as ripples (Laplacian std 8.8 / 255 there, the
    # clean sky 1.8, the blurred one 0.6). Plain areas keep the input, so the sky stays plain and the roofs sharpen.
    deblur_module = importlib.import_module("restorer.operators.deblur")  # the package exports a function so named

    clean = np.ascontiguousarray(load_photo("sklearn_china")[:256, :256])
    blurred = np.rint(D.apply(clean, [D.SoftDiskBlurParams(radius=4.0, alias=0.5)]) * 255).astype(np.float32) / 255
    grey = cv2.cvtColor(clean, cv2.COLOR_RGB2GRAY)
    flat = np.abs(cv2.Laplacian(cv2.GaussianBlur(grey, (0, 0), 2), cv2.CV_32F)) < 0.002
    sky = cv2.erode(flat.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert sky.mean() > 0.3

    def ripple(img):
        return float(np.std(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_32F)[sky]) * 255)

    out = O.deblur(blurred, 1.9, "defocus")
    assert ripple(out) < 1.5 * ripple(blurred) + 0.5 and _psnr(clean, out) > _psnr(clean, blurred) + 3.0
    monkeypatch.setattr(deblur_module, "FLAT_K", 0.0)  # the same deconvolution kept everywhere: rippled
    rippled = O.deblur(blurred, 1.9, "defocus")
    assert ripple(rippled) > 3 * ripple(clean) and _psnr(clean, out) > _psnr(clean, rippled)


def test_a_wrong_exposure_does_not_blow_the_highlights_out():
    # Under-exposure 0.15 diagnosed as 0.01: the brightest percent stays where well-exposed photos have it.
    clean = _crop("coffee")
    dark = D.apply(clean, [D.LowLightParams(0.15, 1.0, 1.0, seed=2)])
    out = O.brighten(dark, 0.01, 1.0)
    assert np.mean(out.max(axis=2) > 0.99) < np.mean(clean.max(axis=2) > 0.99) + 0.02
    assert _psnr(clean, out) > _psnr(clean, dark) + 10.0


def test_missing_factors_come_from_the_record_or_fail_clearly(restorer, clean):
    ops = [D.NoiseParams(20.0, seed=5)]
    degraded = D.apply(clean, ops)
    record = ground_truth(ops, degraded)
    bare = Plan(operations=[Operation(kind="noise", severity=0.5)])
    full = restorer.restore(degraded, record, [], plan_from_record(record)).pixels
    assert np.array_equal(restorer.restore(degraded, record, [], bare).pixels, full)
    with pytest.raises(ValueError, match="noise operation lacks factors"):
        restorer.restore(degraded, ground_truth([], degraded), [], bare)


def test_rejects_non_images(restorer, clean):
    record = ground_truth([], clean)
    for bad in (np.zeros((8, 8), np.float32), (clean * 255).astype(np.uint8), np.full((4, 4, 3), np.nan, np.float32)):
        with pytest.raises(ValueError):
            restorer.restore(bad, record, [], Plan())


# --- reference-guided colour transfer -----------------------------------------------------------------------------


def _lab_stats(img):
    lab = cv2.cvtColor(np.ascontiguousarray(img, np.float32), cv2.COLOR_RGB2Lab).reshape(-1, 3)
    return np.concatenate([lab.mean(0), lab.std(0)])


@pytest.fixture(scope="module")
def cast():
    # A warm colour cast over one crop of the coffee photo; the reference is another crop of the same scene.
    photo = load_photo("coffee")
    clean = np.ascontiguousarray(photo[:256, 300:556])
    tinted = np.clip(clean * np.array([1.15, 0.97, 0.75], np.float32), 0, 1).astype(np.float32)
    return clean, tinted, np.ascontiguousarray(photo[144:400, 0:256])


def test_color_transfer_pulls_statistics_towards_the_reference(restorer, cast):
    clean, tinted, ref = cast
    record = ground_truth([], tinted)
    out = restorer.restore(tinted, record, [ReferenceImage(ref, 0.95, "ref")], Plan()).pixels
    before = np.abs(_lab_stats(tinted) - _lab_stats(ref)).sum()
    after = np.abs(_lab_stats(out) - _lab_stats(ref)).sum()
    assert after < 0.7 * before, (before, after)
    assert _psnr(clean, out) > _psnr(clean, tinted)  # the reference is relevant, so the cast is partly undone


def test_color_transfer_weight_rises_with_the_score(restorer, cast):
    _, tinted, ref = cast
    record = ground_truth([], tinted)
    dist = []
    for score in (0.7, 0.85, 1.0):
        out = restorer.restore(tinted, record, [ReferenceImage(ref, score)], Plan()).pixels
        dist.append(np.abs(_lab_stats(out) - _lab_stats(ref)).sum())
    assert dist[0] > dist[1] > dist[2]
    assert restorer.color_transfer_weight([ReferenceImage(ref, 0.6)]) == 0.0
    assert restorer.color_transfer_weight([ReferenceImage(ref, 1.0)]) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "refs, use_references",
    [
        ("weak", True),  # the best score is below color_transfer_min_score
        ("strong", False),  # the plan forbids references
        ("none", True),  # nothing was retrieved
    ],
)
def test_color_transfer_does_nothing_when_not_warranted(restorer, cast, refs, use_references):
    _, tinted, ref = cast
    references = {
        "weak": [ReferenceImage(ref, 0.55, "a"), ReferenceImage(ref, 0.3, "b")],
        "strong": [ReferenceImage(ref, 0.99)],
        "none": [],
    }[refs]
    out = restorer.restore(tinted, ground_truth([], tinted), references, Plan(use_references=use_references)).pixels
    assert np.array_equal(out, tinted)


def test_color_transfer_uses_the_top_reference(restorer, cast):
    _, tinted, ref = cast
    grey = np.full_like(ref, 0.5)
    record = ground_truth([], tinted)
    a = restorer.restore(tinted, record, [ReferenceImage(grey, 0.7), ReferenceImage(ref, 0.9)], Plan()).pixels
    b = restorer.restore(tinted, record, [ReferenceImage(ref, 0.9)], Plan()).pixels
    assert np.array_equal(a, b)


def test_constructor_options(cast):
    _, tinted, ref = cast
    strict = ClassicalRestorer(color_transfer_min_score=0.95)
    out = strict.restore(tinted, ground_truth([], tinted), [ReferenceImage(ref, 0.9)], Plan()).pixels
    assert np.array_equal(out, tinted)
    with pytest.raises(ValueError, match="color_transfer_min_score"):
        ClassicalRestorer(color_transfer_min_score=1.5)


# --- operators and wiring -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length, angle", [(5.0, 0.0), (9.0, 30.0), (15.0, 100.0), (31.0, 145.0), (7.3, 90.0)])
def test_line_kernel_follows_the_synthesis_convention(length, angle):
    # Same angle convention (counter-clockwise from +x, y down) and shape as the synthesis, without importing it.
    np.testing.assert_allclose(O.line_kernel(length, angle), D.motion_kernel(length, angle), atol=1e-6)


def test_disk_kernel_matches_the_synthesis():
    for r in (1.5, 4.0, 8.0):
        np.testing.assert_allclose(O.disk_kernel(r), D.disk_kernel(r), atol=1e-6)


@pytest.mark.parametrize("length, angle", [(5.0, 0.0), (9.0, 30.0), (15.0, 100.0), (31.0, 145.0), (7.3, 90.0)])
def test_float32_kernels_are_bit_identical_to_the_synthesis(length, angle):
    # The kernels' one home is restorer.operators.kernels: in float32 they must equal what synthesis computed in
    # float32 bit for bit, so moving rl onto them leaves every synthesised image unchanged.
    half = (length - 1.0) / 2.0
    dx, dy = half * math.cos(math.radians(angle)), -half * math.sin(math.radians(angle))
    assert np.array_equal(K.stroke_kernel(dx, dy, 0.5, dtype=np.float32), D.motion_kernel(length, angle))
    assert np.array_equal(K.line_kernel(length, angle, dtype=np.float32), D.motion_kernel(length, angle))
    radius = length / 4.0
    assert np.array_equal(K.disk_kernel(radius, dtype=np.float32), D.disk_kernel(radius))
    assert not K.line_kernel(length, angle).flags.writeable  # cached and shared


@pytest.mark.parametrize("sigma", [2.0, 5.0, 10.0])
def test_estimate_noise(sigma):
    img = D.apply(_crop("astronaut"), [D.BlurParams("gaussian", sigma=1.0), D.NoiseParams(sigma, seed=9)])
    assert O.estimate_noise(img) == pytest.approx(sigma, rel=0.25)


@pytest.mark.parametrize("level", [0.0, 0.01, 0.03, 0.2, 0.98])
def test_unclip_recovers_the_mean_under_clipped_noise(level):
    # Flat patches at and near black (and white) with sigma 10 noise clipped like a sensor: the plain mean is lifted
    # by up to 0.4 sigma; the mean after unclip is back within a tenth of sigma.
    rng = np.random.default_rng(0)
    sd = 10 / 255
    noisy = np.clip(level + rng.normal(0, sd, (64, 64, 3)), 0, 1).astype(np.float32)
    local = np.full_like(noisy, noisy.mean())  # what a perfect denoiser returns: the mean of the clipped values
    assert abs(float(O.unclip(local, 10.0).mean()) - level) < 0.1 * sd
    if level <= 0.01:
        assert noisy.mean() - level > 0.25 * sd  # the bias is real


def _chroma_blotches(img: np.ndarray, clean: np.ndarray) -> float:
    """RMS of the chroma error at the scale of non-local means' blotches (band 2-8 px), in 0-255 units."""
    from restorer.operators.filters import OPPONENT

    err = (img - clean) @ OPPONENT.T
    band = [cv2.GaussianBlur(err[..., c], (0, 0), 2) - cv2.GaussianBlur(err[..., c], (0, 0), 8) for c in (1, 2)]
    return float(np.sqrt(np.mean(np.square(band)))) * 255


def test_denoising_strong_colour_noise_leaves_no_colour_blotches():
    # The grey camera photo with colour noise sigma 50 (PromptIR's strongest): non-local means alone left pink and
    # green blotches on the grass; the chroma clean-up takes them away and gains PSNR.
    clean = _crop("camera", 192)
    rng = np.random.default_rng(3)
    noisy = np.round(np.clip(clean + rng.normal(0, 50 / 255, clean.shape), 0, 1) * 255).astype(np.float32) / 255
    nlm_only = O.unclip(O.filters.nlm(noisy, 50.0), 50.0)
    out = O.denoise(noisy, 50.0)
    assert _chroma_blotches(out, clean) < 0.6 * _chroma_blotches(nlm_only, clean)
    assert peak_signal_noise_ratio(clean, out, data_range=1) > peak_signal_noise_ratio(clean, nlm_only, data_range=1)


@pytest.mark.parametrize("model", ["gaussian", "poisson_gaussian"])
def test_a_photo_mostly_clipped_to_black_or_a_flat_fill_is_denoised_not_raised_on(model):
    # A night photo more than half black: the Wiener step's noise spectrum, a median over patches, read zeros off the
    # black, its gain was 0 / 0 there, and the denoiser raised on NaN (the quality model's fit stopped on such a crop).
    # The spectrum is read on the patches that vary; the lit half is denoised, the black stays black; flat fills come
    # back as they were.
    clean = _crop("coffee", 128)
    clean[:, :80] = 0.0
    rng = np.random.default_rng(5)
    noisy = np.clip(clean + rng.normal(0, 15 / 255, clean.shape) * (clean > 0), 0, 1).astype(np.float32)
    out = O.denoise(noisy, 15.0, model)
    lit = (slice(None), slice(80, None))
    assert np.isfinite(out).all() and out[:, :80].max() == 0.0
    assert _psnr(clean[lit], out[lit]) > _psnr(clean[lit], noisy[lit]) + 3
    for level in (0.0, 0.5, 1.0):
        flat = np.full((64, 64, 3), level, np.float32)
        assert np.abs(O.denoise(flat, 20.0, model) - level).max() < 1e-5


def test_chroma_clean_up_takes_nothing_from_grey_noise_and_keeps_colour_detail():
    # Grey noise (the same in R, G and B) has no colour to clean: on a colour photo only its own fine colour texture
    # reads as chroma noise, and the result is the Wiener step's own to within a level or so (1.04 at most here, 0.02
    # on average: the Wiener step keeps more of the photo's own colour texture than non-local means did). Stripes of
    # equal brightness and different hue (colour detail no luma edge guides) keep their contrast under colour noise.
    clean = _crop("coffee", 128)
    rng = np.random.default_rng(4)
    grey = np.clip(clean + rng.normal(0, 20 / 255, clean.shape[:2])[..., None], 0, 1).astype(np.float32)
    unchromed = O.unclip(O.filters.clip01(O.filters.dct_wiener(grey, O.filters.nlm(grey, 20.0))), 20.0)
    moved = np.abs(O.denoise(grey, 20.0) - unchromed) * 255
    assert moved.max() < 1.5 and moved.mean() < 0.1
    stripes = np.zeros((128, 128, 3), np.float32)
    stripes[:, (np.arange(128) // 6) % 2 == 0] = (0.7, 0.35, 0.35)
    stripes[:, (np.arange(128) // 6) % 2 == 1] = (0.35, 0.5, 0.5)
    noisy = np.clip(stripes + rng.normal(0, 10 / 255, stripes.shape), 0, 1).astype(np.float32)
    out, nlm_only = O.denoise(noisy, 10.0), O.unclip(O.filters.nlm(noisy, 10.0), 10.0)
    red = (np.arange(128) // 6) % 2 == 0
    contrast = lambda x: float(x[:, red, 0].mean() - x[:, ~red, 0].mean())  # noqa: E731
    assert contrast(out) > 0.97 * contrast(nlm_only) > 0.3


@pytest.mark.parametrize(
    ("photo", "sigma", "grey"), [("coffee", 10.0, False), ("astronaut", 25.0, False), ("motorcycle_right", 15.0, True)]
)
def test_the_wiener_step_gives_back_what_non_local_means_smoothed(photo, sigma, grey):
    # Held-out photos under white noise and under grey noise (the same in R, G and B, so sqrt(3) times stronger in
    # luma than sigma says and absent from chroma: a Wiener step told sigma lost up to 1.5 dB to non-local means
    # alone there, one that reads the noise off the image gains). The texture non-local means averaged away comes
    # back from the noisy image where the pilot shows some.
    clean = _crop(photo, 160)
    rng = np.random.default_rng(5)
    shape = clean.shape[:2] + (1,) if grey else clean.shape
    noisy = (np.round(np.clip(clean + rng.normal(0, sigma / 255, shape), 0, 1) * 255) / 255).astype(np.float32)
    pilot = O.filters.nlm(noisy, sigma)
    psnr = lambda x: peak_signal_noise_ratio(clean, np.clip(x, 0, 1), data_range=1)  # noqa: E731
    assert psnr(O.filters.dct_wiener(noisy, pilot)) > psnr(pilot) + 0.4
    assert psnr(O.denoise(noisy, sigma)) > psnr(O.unclip(pilot, sigma)) + 0.4
    assert np.array_equal(O.filters.dct_wiener(noisy, pilot, dose=0.0), pilot)  # dose 0: the pilot untouched
    gentle = O.filters.dct_wiener(noisy, pilot, dose=0.5)  # a gentler dose keeps more of the noisy image
    assert np.abs(gentle - noisy).mean() < np.abs(O.filters.dct_wiener(noisy, pilot) - noisy).mean()


def test_the_wiener_step_is_the_same_band_by_band(monkeypatch):
    # A large tile is transformed a band of patch rows at a time (to bound memory): the result may not depend on it.
    import restorer.operators.filters as F

    rng = np.random.default_rng(6)
    noisy = rng.random((70, 53, 3), dtype=np.float32)
    pilot = cv2.GaussianBlur(noisy, (0, 0), 2)
    whole = F.dct_wiener(noisy, pilot)
    monkeypatch.setattr(F, "_WIENER_BAND", 5)
    assert np.allclose(F.dct_wiener(noisy, pilot), whole, atol=1e-6)
    assert np.array_equal(F.dct_wiener(noisy[:7], pilot[:7]), pilot[:7])  # smaller than a patch: the pilot


def test_brightening_a_dim_noisy_jpeg_leaves_no_coarse_colour_blotches(monkeypatch):
    # A dim photo with camera noise saved as a 4:2:0 JPEG (a phone in a dark cafe): the file's 16 px chroma blocks
    # over the noise are too coarse for non-local means, and the gain made them purple and green mottle. Brightening
    # cleans colour at that scale too after the denoising and deblocking: the blotch band's error falls and PSNR
    # rises against the same plan without.
    from restorer.operators import low_light

    clean = _crop("chelsea", 256)
    ops = [D.LowLightParams(0.12, 1.2, 2.0, seed=1), D.CameraNoiseParams(12.0, seed=2), D.JpegParams(80)]
    dim = D.apply(clean, ops)
    record = ground_truth(ops, dim)
    plan = plan_from_record(record)

    def restore():
        return ClassicalRestorer().restore(dim, record, [], plan).pixels

    out = restore()
    monkeypatch.setattr(low_light, "BLOTCH_SHARE", 0.0)
    without = restore()
    band = lambda x: _chroma_blotches(cv2.GaussianBlur(x, (0, 0), 2), clean)  # noqa: E731 - coarser than NLM's
    assert band(out) < 0.85 * band(without)  # 0.74 x
    assert _psnr(clean, out) > _psnr(clean, without) + 0.15  # +0.32 dB
    # Nothing filtered before brightening (a dim photo's own noise, found alone): coarse chroma is the scene's
    # colour texture or white noise non-local means takes, and the coarse clean-up stays out.
    only = Plan(operations=[op for op in plan.operations if op.kind == "low_light"])
    monkeypatch.setattr(low_light, "BLOTCH_SHARE", 1.0)
    with_share = ClassicalRestorer().restore(dim, record, [], only).pixels
    monkeypatch.setattr(low_light, "BLOTCH_SHARE", 0.0)
    np.testing.assert_array_equal(with_share, ClassicalRestorer().restore(dim, record, [], only).pixels)


def test_operators_do_not_modify_their_input():
    img = _crop("coffee", 64)
    img.setflags(write=False)
    calls = [
        lambda x: O.denoise(x, 10.0, "poisson_gaussian"),
        lambda x: O.deblock(x, 30),
        lambda x: O.deblur(x, 1.5, "gaussian"),
        lambda x: O.deblur_motion(x, 9.0, 20.0),
        lambda x: O.dehaze(x, 0.6, [0.9, 0.9, 0.9]),
        lambda x: O.brighten(x, 0.4, 1.2),
        lambda x: O.derain(x, 0.03, 80.0),
        lambda x: O.sharpen_resolution(x, 2.0),
        lambda x: O.transfer_color(x, np.full((8, 8, 3), 0.3, np.float32), 0.5),
    ]
    for call in calls:
        out = call(img)
        assert out.shape == img.shape and out.dtype == np.float32 and not np.shares_memory(out, img)


@pytest.mark.parametrize(
    "table, name",
    [
        (OPERATORS, "restorer.operators.OPERATORS"),  # how the classical restorer undoes each kind
        (PHRASES, "restorer.instructions.PHRASES"),  # how the edit instruction names each kind
    ],
    ids=["operators", "phrases"],
)
def test_every_kind_has_an_entry_in_the_restorer_tables(table, name):
    assert list(check_table(table, name)) and set(table) == set(KINDS)
    for kind in KINDS:  # a table missing any one kind is refused
        with pytest.raises(ImportError, match=rf"{name}: missing kinds \['{kind}'\]"):
            check_table({k: v for k, v in table.items() if k != kind}, name)


def test_operators_read_their_kinds_factors():
    for kind, op in OPERATORS.items():
        assert set(op.factors) <= set(KINDS[kind].factors.model_fields), kind
        # deconvolutions (the low-pass kinds) and dehazing amplify what noise and JPEG error are left, so are told it
        assert op.error_aware == (kind in LOWPASS | {"haze"}), kind
        assert op.error_aware == ({"noise", "quality"} <= set(inspect.signature(op.run).parameters)), kind
        # low-pass kinds give their PSF, so that several in one image are undone by one deconvolution
        assert (op.psf is not None) == (kind in LOWPASS), kind


def test_registry_and_protocol():
    r = load_restorer("classical", color_transfer_min_score=0.7)
    assert isinstance(r, ClassicalRestorer) and isinstance(r, Restorer)
    assert r.name == "classical" and r.color_transfer_min_score == 0.7
    grey = np.full((8, 8, 3), 0.5, np.float32)
    out = r.restore(grey, ground_truth([], grey), [], Plan())
    assert isinstance(out, RestoreOutput) and out.run is None  # a classical run needs no report to reproduce


def test_restorer_does_not_import_rl():
    # Dependencies point one way: rl -> restorer.
    code = "import sys, restorer.classical; print(sorted(m for m in sys.modules if m == 'rl' or m.startswith('rl.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_noise_and_jpeg_are_removed_in_one_pass_no_worse_than_two(monkeypatch):
    # Deblock then denoise: two non-local-means passes. The classical restorer does both in one pass matched to the
    # two errors in quadrature: half the time, and on held-out photos no worse than the two passes. (A denoising
    # alone ends with a Wiener step, compared without it here: after a deblocking it moved held-out zoo crops under
    # noise + JPEG by +0.22 dB for white noise but -0.22 for grey noise, no better overall, at twice the time.)
    from restorer.operators.deblock import deblock
    from restorer.operators.denoise import denoise, denoise_deblock

    without_wiener = lambda x, pilot, dose=1.0, **kw: pilot  # noqa: E731
    monkeypatch.setattr(sys.modules["restorer.operators.denoise"], "dct_wiener", without_wiener)

    gains = []
    for name in ("camera", "motorcycle_right", "coffee"):
        clean = load_photo(name)[:192, :192]
        for sigma, quality in ((8.0, 30), (15.0, 60)):
            ops = [D.NoiseParams(sigma=sigma, seed=2), D.JpegParams(quality=quality)]
            src = np.round(np.clip(D.apply(clean, ops), 0, 1) * 255).astype(np.float32) / 255
            truth = ground_truth(ops, src)
            plan = plan_from_record(truth)
            assert plan.kinds == ["jpeg", "noise"]
            jpeg, noise = plan.operations
            out = ClassicalRestorer().restore(src, truth, [], plan).pixels
            want = denoise_deblock(src, noise.params["sigma"], jpeg.params["quality"], noise.strength, jpeg.strength)
            np.testing.assert_array_equal(out, want)
            two = denoise(deblock(src, jpeg.params["quality"], jpeg.strength), noise.params["sigma"],
                          strength=noise.strength)  # fmt: skip
            gains.append(
                peak_signal_noise_ratio(clean, out, data_range=1) - peak_signal_noise_ratio(clean, two, data_range=1)
            )
    assert np.mean(gains) > 0 and min(gains) > -0.2, gains


def test_shot_noise_and_deconvolutions_keep_their_own_passes():
    from restorer.classical import _foldable

    def ops(*kinds, model="gaussian"):
        params = {"jpeg": {"quality": 40}, "noise": {"sigma": 10.0, "model": model}, "rain": {}}
        return [Operation(kind=k, severity=0.5, params=params.get(k, {})) for k in kinds]

    # Every factor is in the operations, so no record is needed.
    assert _foldable(ops("jpeg", "noise"), None) is not None
    assert _foldable(ops("jpeg", "noise", model="poisson_gaussian"), None) is None  # variance-stabilised apart
    assert _foldable(ops("noise", "jpeg"), None) is None  # not in the order the errors were made
    assert _foldable(ops("jpeg", "rain", "noise"), None) is None  # a step in between
    assert _foldable(ops("jpeg", "noise", "blur"), None) is not None  # the deconvolution follows both
    assert _foldable(ops("noise"), None) is None


@pytest.mark.parametrize("coverage, angle", [(0.02, 86.0), (0.04, 80.0)])
def test_deraining_leaves_a_tripods_bright_legs_alone(coverage, angle, monkeypatch):
    # Rain over the cameraman's tripod, streaks nearly along its legs: the legs' highlights are lines of excess
    # brightness along the rain too, each carrying far more than a streak (reasoner.streaks.structure_lines), and
    # are kept; with that check off they are wiped grey with the streaks (3 dB lower). Dense rain whose streaks
    # cross the legs joins them into its own lines, and there the legs still go with it.
    import reasoner.streaks as streaks

    clean = np.ascontiguousarray(load_photo("camera")[218:474, 73:329])
    rainy = D.apply(clean, [D.RainParams(coverage=coverage, angle=angle, seed=3)])
    out = O.derain(rainy, coverage, angle)
    monkeypatch.setattr(streaks, "STRUCTURE_TIMES_MEDIAN", math.inf)
    wiped = O.derain(rainy, coverage, angle)
    assert _psnr(clean, out) > _psnr(clean, rainy) + 2
    assert _psnr(clean, out) > _psnr(clean, wiped) + 2


@pytest.mark.parametrize("name, y, x", [("astronaut", 0, 0), ("coffee", 100, 200), ("motorcycle_right", 200, 300),
                                        ("camera", 256, 0)])  # fmt: skip
def test_a_second_deraining_pass_takes_what_neighbouring_streaks_hid(name, y, x, monkeypatch):
    # MiO's dense rain over held-out photos: streaks within 4 px of each other raise each other's across-streak
    # background, so one pass leaves part of both; the second pass, on the cleared image, takes more.
    derain_module = importlib.import_module("restorer.operators.derain")
    clean = np.ascontiguousarray(load_photo(name)[y : y + 256, x : x + 256])
    rainy = np.clip(D.apply(clean, [D.MioRainParams(value=80.0, length=30.0, angle=100.0, seed=3)]), 0, 1)
    two = O.derain(rainy, 0.05, 100.0)
    monkeypatch.setattr(derain_module, "PASS_STRENGTHS", (1.0,))
    one = O.derain(rainy, 0.05, 100.0)
    assert _psnr(clean, one) > _psnr(clean, rainy) + 5
    assert _psnr(clean, two) > _psnr(clean, one) + 0.15


def test_the_streak_background_is_the_median_of_its_six_samples():
    # reasoner.streaks.median6 replaces np.median over the six across-streak samples (4.0 s -> 0.76 s at 12 MP): its
    # network sorts every 0/1 input (so every input), and it gives np.median's values exactly, strips and all.
    import itertools

    from reasoner.streaks import SORT6, median6

    for bits in itertools.product((0, 1), repeat=6):
        v = list(bits)
        for i, j in SORT6:
            v[i], v[j] = min(v[i], v[j]), max(v[i], v[j])
        assert v == sorted(bits), bits
    rng = np.random.default_rng(0)
    samples = [rng.random((37, 53, 3), dtype=np.float32) for _ in range(6)]
    np.testing.assert_array_equal(median6(samples), np.median(samples, axis=0))
    np.testing.assert_array_equal(median6(samples, rows=5), np.median(samples, axis=0))


def test_a_curve_laid_on_brightness_is_inverted_with_hue_and_saturation_kept(restorer, monkeypatch):
    # MiO's gamma on the HSV value scales each pixel's three channels alike: its hue and saturation are kept. The
    # brightening raised each channel's ratio to the value to 1 / gamma (the inverse of a curve on each channel) and
    # desaturated colour crops of the held-out photos: 24.8-34.2 dB against 51-60 for the exact inverse. The comb of
    # levels the curve left says which curve it was (reasoner.tone_comb); it is read off the plan's input, since a
    # deblocking before the brightening fills it in. Tiles of a large image read it off the whole.
    from dataclasses import replace

    from reasoner.schema import make_degradation

    def eight_bit(img):
        return (np.rint(np.clip(img, 0, 1) * 255) / 255).astype(np.float32)

    photo = eight_bit(load_photo("coffee"))
    clean = np.ascontiguousarray(photo[:256, :256])
    op = D.MioDarkParams("gamma", 0.6)
    dark = eight_bit(D.apply(clean, [op]))
    record = ground_truth([op], dark)
    out = restorer.restore(dark, record, [], plan_from_record(record)).pixels
    assert _psnr(clean, out) > 45.0
    assert _psnr(clean, O.brighten(dark, 1.0, 1 / 0.6, value_only=False)) < 35.0
    # a deblocking first: the curve is still read off the plan's input, not the deblocked image
    jpeg = make_degradation("jpeg", 0.2, 0.9, quality=90)
    both = record.model_copy(update={"degradations": [*record.degradations, jpeg]})
    deblocked_first = restorer.restore(dark, both, [], plan_from_record(both)).pixels
    monkeypatch.setitem(OPERATORS, "low_light", replace(OPERATORS["low_light"], from_input=None))
    read_after = restorer.restore(dark, both, [], plan_from_record(both)).pixels
    monkeypatch.undo()
    assert _psnr(clean, deblocked_first) > _psnr(clean, read_after) + 5.0
    # a large image in tiles: the same as whole
    big = eight_bit(D.apply(np.ascontiguousarray(photo[:400, :600]), [op]))
    whole = restorer.restore(big, record, [], plan_from_record(record)).pixels
    tiled = ClassicalRestorer(tile_pixels=100_000, tile=190).restore(big, record, [], plan_from_record(record)).pixels
    assert np.abs(tiled - whole).max() < 2 / 255


def test_a_diagnosed_haze_is_dehazed_a_little_stronger_than_it_was_read():
    # Dehazing too little leaves the veil over everything; a little too much darkens only the densest parts. The
    # plan of a diagnosis takes the haze's opacity restorer.plan.HAZE_OPACITY_GAIN times stronger than read; the
    # ground truth's plan (the oracle) takes it as it is. Over hazy crops of held-out photos under the three zoo haze
    # models (sampled by each model's published ranges), the dosed plan is nearer the clean photos.
    from reasoner.measure import MeasureReasoner
    from restorer.plan import dosed_transmission, plan_from_diagnosis

    reasoner, restorer = MeasureReasoner(), ClassicalRestorer()
    rng = np.random.default_rng(12)
    gains = []
    for i in range(36):
        if len(gains) == 10:
            break
        name, model = ("astronaut", "coffee", "motorcycle_right", "camera")[i % 4], ("mio", "proxy", "rnr")[i % 3]
        clean = np.round(random_crop(load_photo(name), rng, 256) * 255) / 255
        hazy = (np.round(D.apply(clean, [D.MODELS["haze"][model].sample(rng)]) * 255) / 255).astype(np.float32)
        record = reasoner.diagnose(hazy)
        if "haze" not in {d.kind for d in record.detected()}:
            continue
        read, dosed = plan_from_record(record), plan_from_diagnosis(record)
        t = read.operations[[op.kind for op in read.operations].index("haze")].params["transmission"]
        assert dosed.operations[[op.kind for op in dosed.operations].index("haze")].params["transmission"] == (
            dosed_transmission(t)) < t  # fmt: skip
        gains.append(_psnr(clean, restorer.restore(hazy, record, [], dosed).pixels)
                     - _psnr(clean, restorer.restore(hazy, record, [], read).pixels))  # fmt: skip
    assert len(gains) == 10, f"haze found in {len(gains)} of 36 hazy crops"
    up, down = sum(g > 0.1 for g in gains), sum(g < -0.1 for g in gains)
    assert np.mean(gains) > 0 and up > down, [round(g, 2) for g in gains]
