"""The degradation zoo: published models per kind, their factor mappings, rnr bit-identity, protocols, negatives.

Table-driven; each case says what it checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from reasoner import severity as sev
from reasoner.kinds import KINDS
from rl import degradations as D
from rl import ground_truth as G
from rl.degradations import blur, haze, low_light, motion_blur, noise, rain
from rl.photos import load_photo

ROOT = Path(__file__).resolve().parents[1]
ALL_MODELS = [(k, n) for k, by_name in D.MODELS.items() for n in by_name]
#: A held-out photo crop with texture, edges, highlights and shadows (odd-sized: no model may assume even sides).
PHOTO = np.ascontiguousarray(load_photo("astronaut")[100:163, 150:221])


def _model(kind: str, name: str) -> D.DegradationModel:
    return D.MODELS[kind][name]


# ---------------------------------------------------------------------------------------- every model, every kind


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_has_at_least_three_models_with_a_source(kind):
    models = D.MODELS[kind]
    assert len(models) >= 3 and D.DEFAULT_MODEL in models
    assert all(m.source and m.params.kind == kind for m in models.values())


@pytest.mark.parametrize(("kind", "name"), ALL_MODELS)
def test_model_is_deterministic_and_keeps_shape_dtype_range_and_input(kind, name):
    m = _model(kind, name)
    p1, p2 = m.sample(np.random.default_rng(3)), m.sample(np.random.default_rng(3))
    assert p1 == p2 and type(p1) is m.params and D.model_of(p1) is m
    before = PHOTO.copy()
    out = m.apply(PHOTO.astype(np.float64), p1)  # other float dtypes are converted
    np.testing.assert_array_equal(out, m.apply(PHOTO, p2))
    np.testing.assert_array_equal(PHOTO, before)  # input untouched
    assert out.dtype == np.float32 and out.shape == PHOTO.shape
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert not np.array_equal(out, PHOTO)  # it degrades something


@pytest.mark.parametrize(("kind", "name"), ALL_MODELS)
def test_factors_validate_in_the_schema_and_round_trip_through_ground_truth(kind, name):
    m = _model(kind, name)
    for seed in range(3):
        p = m.sample(np.random.default_rng(seed))
        out = m.apply(PHOTO, p)
        severity, fac = D.factors(p, out.shape)
        record = G.ground_truth([p], out)
        entry = record.degradations[0]
        assert entry.kind == kind and 0.0 <= severity <= 1.0 and entry.severity == pytest.approx(severity)
        stored = entry.factors.model_dump()  # stored as computed (all within the schema's bounds)
        assert stored.keys() == fac.keys()
        assert all(stored[k] == (fac[k] if isinstance(fac[k], str) else pytest.approx(fac[k])) for k in fac)
        assert 0 < len(record.reasoning[0].observation) <= 600 and record.reasoning[0].observation == D.describe(
            p, fac
        )
        assert all(k.startswith(f"{kind}.") for k in record.provenance.settings)


@pytest.mark.parametrize(
    ("kind", "name"), [(k, n) for k, n in ALL_MODELS if "seed" in D.MODELS[k][n].params.__annotations__]
)
def test_the_seed_field_drives_the_randomness_of_the_application(kind, name):
    m = _model(kind, name)
    changed = []
    for s in range(4):  # some draws need no randomness (proxy haze over a ramp): one of a few must use its seed
        p = m.sample(np.random.default_rng(s))
        changed.append(not np.array_equal(m.apply(PHOTO, p), m.apply(PHOTO, dataclasses.replace(p, seed=p.seed + 1))))
    assert any(changed)


# (model, params as a function of the strength, strengths in increasing order): severity must grow strictly.
# MiO rain is left out: its layer is min-max stretched per image, so more seeds need not mean a larger mean.
MONOTONE = [
    # BasicSR Poisson: std grows with the scale
    (("noise", "poisson"), lambda v: noise.PoissonNoiseParams(v, seed=1), (0.5, 1.0, 3.0)),
    # grey noise: sigma is the factor
    (("noise", "grey"), lambda v: noise.GreyNoiseParams(v, seed=1), (5.0, 15.0, 40.0)),
    # channel-correlated noise: same covariance shape (seed), larger level
    (("noise", "correlated"), lambda v: noise.CorrelatedNoiseParams(v, seed=1), (4.0, 10.0, 25.0)),
    # camera noise: mosaic sigma, measured after demosaicing and sharpening
    (("noise", "camera"), lambda v: noise.CameraNoiseParams(v, 0.5, "bilinear", 0.3, 1), (5.0, 12.0, 30.0)),
    # Real-ESRGAN isotropic Gaussian kernel on a 21 px grid
    (("blur", "realesrgan"), lambda v: blur.KernelBlurParams("gaussian", v, v, 0.0, 1.0, 21), (0.8, 1.5, 3.0)),
    # plateau kernel, anisotropic
    (("blur", "realesrgan"), lambda v: blur.KernelBlurParams("plateau", v, v / 2, 30.0, 1.5, 21), (0.8, 1.5, 3.0)),
    # imagecorruptions soft disk: radius
    (("blur", "soft_disk"), lambda v: blur.SoftDiskBlurParams(v, 0.5), (2.0, 4.0, 6.0)),
    # imagecorruptions trail: a wider weight profile reaches further
    (("motion_blur", "trail"), lambda v: motion_blur.TrailBlurParams(15.0, v, 20.0), (2.0, 5.0, 8.0)),
    # a steady hand (no anxiety) draws a straight line of the path's length
    (("motion_blur", "shake"), lambda v: motion_blur.ShakeBlurParams(v, 0.0, 5), (6.0, 15.0, 30.0)),
    # MiO haze: scattering coefficient
    (("haze", "mio"), lambda v: haze.MioHazeParams(0.8, v, 1), (0.6, 1.2, 1.8)),
    # proxy haze over a patchy field
    (("haze", "proxy"), lambda v: haze.ProxyHazeParams(v, (0.9, 0.9, 0.9), "field", 90.0, 1), (0.3, 0.8, 1.5)),
    # MiO value shift (0-255 units)
    (("low_light", "mio"), lambda v: low_light.MioDarkParams("shift", v), (30.0, 40.0, 49.0)),
    # MiO squash: a lower maximum is darker
    (("low_light", "mio"), lambda v: low_light.MioDarkParams("squash", 255.0 - v), (105.0, 130.0, 155.0)),
    # MiO gamma: a smaller gamma (larger exponent 1/gamma) is darker
    (("low_light", "mio"), lambda v: low_light.MioDarkParams("gamma", 1.0 - v), (0.3, 0.4, 0.5)),
    # camera response: less light
    (("low_light", "crf"), lambda v: low_light.CrfDarkParams(1.0 / v, "sigmoid", 1.0, 0.4), (3.0, 10.0, 30.0)),
    # 4:4:4 JPEG: lower quality
    (("jpeg", "444"), lambda v: D.Jpeg444Params(int(100 - v)), (10, 50, 90)),
    # double JPEG: the lower quality governs
    (("jpeg", "double"), lambda v: D.DoubleJpegParams(95, int(100 - v), 3, 5), (10, 50, 90)),
    # cropped JPEG: lower quality
    (("jpeg", "cropped"), lambda v: D.CroppedJpegParams(int(100 - v), 5, 3), (10, 50, 90)),
    # screen rain: density target
    (("rain", "screen"), lambda v: rain.ScreenRainParams(v, 85.0, 30.0, 1.0, 0.9, 1), (0.01, 0.03, 0.06)),
    # OpenCV resampling: scale
    (("low_resolution", "resample"), lambda v: D.ResampleParams(v, "bilinear", "bicubic"), (1.5, 2.2, 3.5)),
    # MATLAB bicubic: scale
    (("low_resolution", "mio"), lambda v: D.MioLowResolutionParams(v), (1.5, 2.0, 3.0)),
]


@pytest.mark.parametrize(("model", "make", "strengths"), MONOTONE, ids=lambda x: x if isinstance(x, str) else None)
def test_severity_grows_with_the_strength_parameter(model, make, strengths):
    ops = [make(v) for v in strengths]
    assert all(D.model_of(op) is _model(*model) for op in ops)
    severities = [D.factors(op, (96, 96))[0] for op in ops]
    assert all(0.0 <= s <= 1.0 for s in severities)
    assert severities == sorted(severities) and len(set(severities)) == len(severities), severities


# ----------------------------------------------------------------------------------- equivalent factors, known cases


def _flat_std(model_params, level: float = 0.5) -> float:
    flat = np.full((96, 96, 3), level, np.float32)
    out = D.model_of(model_params).apply(flat, model_params)
    return float((out[8:-8, 8:-8] - level).std() * 255.0)


# (params, factor name, expected value, relative tolerance)
FACTOR_CASES = [
    # MiO disk radius 4 (softened by a 3x3 Gaussian): the disk's own sigma r / 2
    (blur.SoftDiskBlurParams(4.0, 0.5), "sigma", 2.0, 0.05),
    # MiO disk radius 6
    (blur.SoftDiskBlurParams(6.0, 0.5), "sigma", 3.0, 0.05),
    # an isotropic Gaussian kernel wide enough not to be truncated reads its own sigma
    (blur.KernelBlurParams("gaussian", 2.0, 2.0, 0.0, 1.0, 21), "sigma", 2.0, 0.02),
    # anisotropic: the mean of the two axes' variances, sqrt((9 + 1) / 2)
    (blur.KernelBlurParams("gaussian", 3.0, 1.0, 40.0, 1.0, 31), "sigma", math.sqrt(5.0), 0.03),
    # a trail with near-flat weights (sigma 100 px) over 21 taps is nearly a 21 px box
    (motion_blur.TrailBlurParams(10.0, 100.0, 0.0), "length", 21.0, 0.02),
    # a steady hand: the straight trajectory's length
    (motion_blur.ShakeBlurParams(25.0, 0.0, 3), "length", 25.0, 0.06),
    # BasicSR Poisson at scale 1: sqrt(0.5 / 256) * 255
    (noise.PoissonNoiseParams(1.0), "sigma", 255.0 * math.sqrt(0.5 / 256), 1e-9),
    # MiO squash to 120: a pure gain 120 / 255 (the ramp spans 0-1)
    (low_light.MioDarkParams("squash", 120.0), "exposure", 120.0 / 255.0, 1e-3),
    # MiO gamma 0.5: V ** 2, no gain
    (low_light.MioDarkParams("gamma", 0.5), "gamma", 2.0, 0.01),
    # a gamma-2.2 camera 10x under-exposed: out = 0.1 ** (1 / 2.2) * x
    (low_light.CrfDarkParams(0.1, "gamma"), "exposure", 0.1 ** (1 / 2.2), 1e-3),
    # double compression: the lower quality, whichever came first
    (D.DoubleJpegParams(30, 80), "quality", 30, 0),
    (D.DoubleJpegParams(80, 30, 4, 4), "quality", 30, 0),
    # homogeneous fog: t = exp(-beta) everywhere
    (haze.ProxyHazeParams(0.7, (0.9, 0.9, 0.9), "homogeneous"), "transmission", math.exp(-0.7), 1e-6),
    # MiO x4 on a 96 px frame: 24 px, exactly 4
    (D.MioLowResolutionParams(4.0), "scale", 4.0, 1e-9),
    # resampling by 2.4 on 96 px: round(40) px, exactly 2.4
    (D.ResampleParams(2.4, "nearest", "lanczos"), "scale", 2.4, 1e-9),
]


@pytest.mark.parametrize(("params", "name", "expected", "rel"), FACTOR_CASES)
def test_equivalent_factor_on_known_cases(params, name, expected, rel):
    _, fac = D.factors(params, (96, 96))
    assert fac[name] == pytest.approx(expected, rel=rel, abs=1e-12)


@pytest.mark.parametrize("quality", [10, 29, 75])
def test_opencv_jpeg_as_mio_calls_it_is_our_own_jpeg_model(quality):
    # the MiO protocol uses JpegParams for cv2.imencode: the two must give the same pixels
    import cv2

    u8 = np.rint(PHOTO * 255).astype(np.uint8)
    _, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    np.testing.assert_array_equal(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] / np.float32(255),
                                  D.apply(PHOTO, [D.JpegParams(quality)]))  # fmt: skip


def test_mio_value_shift_reads_as_under_exposure():
    # a V shift of 40/255 darkens: exposure < 1 and a non-zero severity (gamma > 1 takes the toe)
    severity, fac = D.factors(low_light.MioDarkParams("shift", 40.0), (8, 8))
    assert fac["exposure"] < 1.0 and fac["gamma"] > 1.0 and severity > 0.05


@pytest.mark.parametrize(
    "params",
    [
        noise.PoissonNoiseParams(2.0, seed=4),  # shot noise: std at mid-grey
        noise.GreyNoiseParams(20.0, 4),  # one draw for all channels
        noise.CorrelatedNoiseParams(20.0, 4),  # RMS of the per-channel stds
        noise.CameraNoiseParams(15.0, 0.6, "edge_aware", 0.5, 4),  # measured after demosaicing and sharpening
        noise.CameraNoiseParams(15.0, 0.6, "bilinear", 0.0, 4),  # demosaicing alone smooths the mosaic noise
    ],
)
def test_noise_sigma_is_the_std_added_at_mid_grey(params):
    assert D.factors(params, (96, 96))[1]["sigma"] == pytest.approx(_flat_std(params), rel=0.06)


def test_grey_noise_is_the_same_in_every_channel_and_correlated_noise_correlates():
    flat = np.full((64, 64, 3), 0.5, np.float32)
    grey = D.apply(flat, [noise.GreyNoiseParams(10.0, 2)]) - 0.5
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    corr = (D.apply(flat, [noise.CorrelatedNoiseParams(25.0, 2)]) - 0.5).reshape(-1, 3)
    off_diagonal = np.corrcoef(corr.T)[np.triu_indices(3, 1)]
    assert np.abs(off_diagonal).max() > 0.2  # independent channels would be ~0


@pytest.mark.parametrize(
    ("params", "layer"),
    [
        (rain.MioRainParams(80.0, 30.0, 100.0, 3), rain.mio_rain_layer),  # added brightness
        (rain.ScreenRainParams(0.04, 80.0, 25.0, 1.0, 0.9, 3), rain.screen_rain_layer),  # screen opacity b R
    ],
)
def test_rain_density_is_the_mean_streak_layer_actually_blended(params, layer):
    black = np.zeros((96, 96, 3), np.float32)  # on black both blends add exactly the layer
    out = D.apply(black, [params])
    density = D.factors(params, black.shape)[1]["density"]
    assert float(out.mean()) == pytest.approx(density, rel=1e-5)
    assert float(layer(params, black.shape).mean()) == pytest.approx(density)


@pytest.mark.parametrize(
    ("angle", "where"),
    [
        (0.0, lambda k, r: k[r, r:].sum()),  # towards +x: the trail gathers pixels to the right
        (90.0, lambda k, r: k[: r + 1, r].sum()),  # up: rows above the centre (y down)
        (180.0, lambda k, r: k[r, : r + 1].sum()),  # towards -x
    ],
)
def test_trail_direction_follows_the_counter_clockwise_convention(angle, where):
    k = motion_blur.trail_kernel(motion_blur.TrailBlurParams(10.0, 3.0, angle))
    assert where(k, k.shape[0] // 2) == pytest.approx(1.0)
    assert D.factors(motion_blur.TrailBlurParams(10.0, 3.0, angle), (64, 64))[1]["angle"] == pytest.approx(angle % 180)


def test_anisotropic_kernel_axis_is_its_angle():
    k = blur.kernel_of(blur.KernelBlurParams("gaussian", 4.0, 1.0, 30.0, 1.0, 25))
    assert D.equivalent_motion(k)[1] == pytest.approx(30.0, abs=0.5)


# --------------------------------------------------------------------------------- rnr models stay as before the zoo

#: Three fixed random projections (``_signature``) of the rnr outputs on PHOTO_PIN for sampler seeds 0 and 1. The
#: models were pinned by sha256 of their float32 bytes before the zoo was added; those hashes hold on one CPU only
#: (numpy's float32 power and OpenCV's filters round the last bit differently with and without AVX-512: six of them
#: failed on an AVX2 machine at unchanged code). These signatures were computed (session 34) at code whose outputs
#: still matched those hashes on the machine they were made on; a changed pixel value of one 8-bit level moves a
#: projection by up to ~1e-3, last-bit rounding by ~3e-6. A change here changes the calibration's training data:
#: only ever on purpose.
RNR_PIXELS = {
    ("haze", 0): (237.719312, 125.110147, 49.01173), ("haze", 1): (230.63958, 115.280035, 38.285324),
    ("rain", 0): (222.306052, 87.458371, 27.657687), ("rain", 1): (214.116848, 89.507049, 28.633479),
    ("motion_blur", 0): (203.830725, 101.777026, 3.401455), ("motion_blur", 1): (215.528583, 98.287357, 19.216582),
    ("blur", 0): (218.054189, 90.198476, 23.051505), ("blur", 1): (211.061209, 102.227021, -7.504985),
    ("low_resolution", 0): (222.1937, 88.389046, 22.718015), ("low_resolution", 1): (218.419083, 90.20547, 29.88507),
    ("low_light", 0): (52.670568, 22.485222, 5.00072), ("low_light", 1): (36.459345, 13.675385, 0.679562),
    ("noise", 0): (240.951373, 110.575612, 43.381602), ("noise", 1): (209.794232, 84.791813, 30.131574),
    ("jpeg", 0): (214.45968, 91.635367, 36.9111), ("jpeg", 1): (214.530399, 95.624493, 30.081736),
}  # fmt: skip
#: sample_ops(default_rng(seed), n_kinds=(1, 3)): sha256[:16] of repr(ops), drawn before the zoo, and the signature of
#: apply(PHOTO_PIN, ops).
RNR_MIXTURES_OPS = {
    0: "ca1d5964adaeaad2", 1: "e3e4b839a4c94641", 2: "5ac52221eca6ceb4", 3: "93db673511f65947", 4: "d24963017d199d0f",
    5: "ddfbf52ffcfc823a",
}  # fmt: skip
RNR_MIXTURES = {
    0: (237.450982, 101.890735, 16.337477),
    1: (228.427365, 122.955479, 22.604427),
    2: (240.381138, 112.192289, 37.069237),
    3: (55.910959, 39.200893, 7.901192),
    4: (102.053977, 39.410062, 12.793365),
    5: (190.601873, 107.997355, -7.734808),
}  # fmt: skip
PHOTO_PIN = np.ascontiguousarray(load_photo("astronaut")[100:196, 150:246])
_PROJECTIONS = np.random.default_rng(20261207).standard_normal((3, *PHOTO_PIN.shape))
#: Largest difference of a projection taken as the same output (last-bit rounding moves them by ~3e-6).
SIGNATURE_TOL = 1e-4


def _signature(a: np.ndarray) -> list[float]:
    return [float((np.asarray(a, np.float64) * w).sum()) for w in _PROJECTIONS]


def test_the_signature_tells_one_level_from_rounding():
    out = D.APPLIERS["low_light"](PHOTO_PIN, D.SAMPLERS["low_light"](np.random.default_rng(0)))
    ulps = np.spacing(out) * np.random.default_rng(1).choice([-4, 0, 4], out.shape)
    assert _signature(out + ulps) == pytest.approx(_signature(out), abs=SIGNATURE_TOL)
    moved = out.copy()
    moved[10, 10, 1] += np.float32(1 / 255)
    assert _signature(moved) != pytest.approx(_signature(out), abs=SIGNATURE_TOL)


@pytest.mark.parametrize(("kind", "seed"), sorted(RNR_PIXELS))
def test_rnr_models_are_as_before_the_zoo(kind, seed):
    p = D.SAMPLERS[kind](np.random.default_rng(seed))
    assert _signature(D.APPLIERS[kind](PHOTO_PIN, p)) == pytest.approx(RNR_PIXELS[kind, seed], abs=SIGNATURE_TOL)


@pytest.mark.parametrize("seed", sorted(RNR_MIXTURES))
def test_sample_ops_defaults_draw_and_apply_as_before_the_zoo(seed):
    ops = D.sample_ops(np.random.default_rng(seed), n_kinds=(1, 3))
    assert hashlib.sha256(repr(ops).encode()).hexdigest()[:16] == RNR_MIXTURES_OPS[seed]
    assert _signature(D.apply(PHOTO_PIN, ops)) == pytest.approx(RNR_MIXTURES[seed], abs=SIGNATURE_TOL)


# ---------------------------------------------------------------------------------------- mixtures over the zoo


def test_sample_ops_draws_among_named_models_and_leaves_models_out():
    held_out = D.models_except(D.DEFAULT_MODEL)
    assert all(D.DEFAULT_MODEL not in names and len(names) >= 2 for names in held_out.values())
    seen: dict[str, set[str]] = {k: set() for k in KINDS}
    rng = np.random.default_rng(0)
    for _ in range(120):
        for op in D.sample_ops(rng, n_kinds=(2, 3), models=held_out):
            seen[op.kind].add(D.model_of(op).name)
    assert all(seen[k] == set(held_out[k]) for k in KINDS)  # every held-out model drawn, never rnr
    with pytest.raises(ValueError, match="unknown jpeg model"):
        D.sample_ops(np.random.default_rng(0), ["jpeg"], models={"jpeg": ["444", "webp"]})


def test_shuffled_mixtures_keep_the_draws_and_apply_in_the_given_order():
    kinds = ["haze", "blur", "noise", "jpeg"]
    plain = D.sample_ops(np.random.default_rng(5), kinds)
    shuffled = D.sample_ops(np.random.default_rng(5), kinds, shuffled=True)
    assert sorted(map(repr, plain)) == sorted(map(repr, shuffled))  # same parameters, drawn before the order
    assert [op.kind for op in shuffled] != [op.kind for op in plain]  # this seed does reorder
    chained = PHOTO
    for op in shuffled:
        chained = D.model_of(op).apply(chained, op)
    np.testing.assert_array_equal(D.apply(PHOTO, shuffled, keep_order=True), chained)
    np.testing.assert_array_equal(D.apply(PHOTO, shuffled), D.apply(PHOTO, plain))  # default: physical order
    a, b = G.ground_truth(plain, PHOTO), G.ground_truth(shuffled, PHOTO)
    assert [d.model_dump() for d in a.degradations] == [d.model_dump() for d in b.degradations]


# ------------------------------------------------------------------------------------------- protocols, negatives


@pytest.fixture(scope="module")
def protocols():
    spec = importlib.util.spec_from_file_location("bench_protocols", ROOT / "bench" / "protocols.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.mark.parametrize("protocol", ["mio", "promptir", "rnr", "heldout"])
def test_protocol_degradations_are_deterministic_per_seed(protocols, protocol):
    build = protocols.PROTOCOLS[protocol]
    a, b, c = build(0, 1, 64), build(0, 1, 64), build(1, 1, 64)
    assert [x.name for x in a] == [x.name for x in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.clean, y.clean)
        assert x.record.degradations == y.record.degradations
        assert np.array_equal(x.image, np.rint(x.image * 255) / 255)  # 8-bit, as the methods get it
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a, c, strict=False))


def test_harm_by_seed_counts_each_seed_and_pools_them(protocols, monkeypatch):
    # rnr itself is replaced (the agent is tested elsewhere): each seed's single case loses 2 dB, its mixture gains.
    from types import SimpleNamespace

    from rich.console import Console

    def fake(case):
        m = {"identity": {"psnr": 20.0}, "rnr": {"psnr": 18.0 if case.group == "single" else 21.0}}
        return {"name": case.name, "protocol": case.protocol, "group": case.group, "m": m, "decision": "accepted"}

    monkeypatch.setattr(protocols, "run_rnr", fake)
    args = SimpleNamespace(per_group=1, size=64, finish="none")
    pool = SimpleNamespace(map=lambda f, xs, **_: map(f, xs))
    text = io.StringIO()
    out = protocols.harm_by_seed(Console(file=text, width=200), ["heldout"], [1, 2], args, pool)
    for seed in ("1", "2"):
        row = out["heldout"][seed]
        assert row["n"] == 2  # one single, one mixture; the clean crop is not a degraded case
        assert len(row["harmed"]) == 1 and row["worst_db"] == -2.0 and row["mean_gain_db"] == -0.5
    assert "│ heldout  │  all │     4 │      2 │ 50.0% │" in text.getvalue()


def test_rnr_runs_record_each_attempts_true_psnr(protocols):
    # The per-attempt truth the decision rules are judged on: one row per attempt, the returned one's PSNR is rnr's.
    case = next(c for c in protocols.heldout_cases(0, 2, 96) if c.group == "single")
    r = protocols.run_rnr(case)
    assert r["attempts"] and [a["index"] for a in r["attempts"]] == list(range(len(r["attempts"])))
    for a in r["attempts"]:
        assert set(a) >= {"rule", "source", "strengths", "verdict", "estimate_db", "psnr"}
    returned = r["m"]["identity"] if r["chosen"] is None else r["attempts"][r["chosen"]]
    assert returned["psnr"] == pytest.approx(r["m"]["rnr"]["psnr"], abs=1e-6)
    json.dumps(r)  # written into the protocols' JSON as it is


def test_camera_finish_saves_cases_without_jpeg_as_a_light_jpeg(protocols):
    from rl import degradations as D
    from rl.degradations import factors

    cases = protocols.mio_cases(0, 1, 64)
    done, again = protocols.camera_finish(cases, 0), protocols.camera_finish(cases, 0)
    for before, after, same in zip(cases, done, again, strict=True):
        np.testing.assert_array_equal(after.image, same.image)  # deterministic per seed and case
        assert after.record is before.record and after.name == before.name
        np.testing.assert_array_equal(after.clean, before.clean)
        if any(d.kind == "jpeg" for d in before.record.detected()):
            assert after is before  # a JPEG case is not saved again
        else:
            assert not np.array_equal(after.image, before.image)
            assert np.array_equal(after.image, np.rint(after.image * 255) / 255)
    lo, hi = protocols.CAMERA_JPEG
    assert factors(D.JpegParams(lo), (64, 64))[0] < 0.1  # the severity map calls the finish clean: truth unchanged
    assert 0 < lo <= hi <= 100


def test_bad_harm_seeds_is_one_line(protocols, capsys):
    with pytest.raises(SystemExit) as exc:
        protocols.main(["--protocol", "rnr", "--harm-seeds", "1,two"])
    assert exc.value.code == 2
    assert "--harm-seeds: expected comma-separated integers, got '1,two'" in capsys.readouterr().err


def test_heldout_protocol_draws_every_kind_from_its_held_out_model(protocols, monkeypatch):
    from rl import degradations as D

    assert set(protocols.HELD_OUT_MODELS) == set(KINDS)
    assert all(model in D.MODELS[kind] for kind, model in protocols.HELD_OUT_MODELS.items())
    drawn = []
    real = D.sample_ops
    monkeypatch.setattr(D, "sample_ops", lambda *a, **k: drawn.append(k["models"]) or real(*a, **k))
    cases = protocols.heldout_cases(0, 4, 64)
    assert [c.group for c in cases] == ["single"] * 4 + ["mixed"] * 4 + ["clean"]
    assert drawn and all(m == protocols.HELD_OUT_MODELS for m in drawn)
    for c in cases:
        n = len(c.record.detected())
        assert (n == 0) if c.group == "clean" else (n == 1) if c.group == "single" else (2 <= n <= 3)


def test_mio_protocol_follows_agenticir(protocols):
    cases = protocols.mio_cases(0, 1, 64)
    assert [c.group for c in cases].count("A") == 8 and len(cases) == 16
    for c in cases:
        steps = c.task.split("+")
        assert "low_resolution" not in steps[:-1]  # always last
        assert c.image.shape == c.clean.shape and c.image.shape[0] % 4 == 0
        kinds = {d.kind for d in c.record.degradations}
        mapped = {"dark": "low_light", "defocus": "blur"}
        assert kinds == {mapped.get(s, s) for s in steps}


@pytest.mark.parametrize(
    "family", ["photo", "wires", "stars", "spokes", "text", "fabric", "foliage", "wall", "sky", "night"]
)
def test_clean_negatives_are_clean_eight_bit_and_deterministic(family):
    from rl.negatives import FAMILIES, clean_negatives

    a = clean_negatives(np.random.default_rng(4), 2, 64, families=(family,))
    b = clean_negatives(np.random.default_rng(4), 2, 64, families=(family,))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
        assert x.family == family and x.image.shape == (64, 64, 3) and x.image.dtype == np.float32
        assert np.array_equal(x.image, np.rint(x.image * 255) / 255)
        assert x.record.degradations == [] and x.as_case().group == "negative"
        assert set(x.stresses) <= set(KINDS) and FAMILIES[family].why
    assert not np.array_equal(a[0].image, a[1].image)


def test_clean_negatives_refuse_bad_arguments():
    from rl.negatives import clean_negatives

    assert clean_negatives(np.random.default_rng(0), 0) == []
    for kwargs in ({"families": ("rainbow",)}, {"size": 8}):
        with pytest.raises(ValueError, match="clean_negatives"):
            clean_negatives(np.random.default_rng(0), 1, **kwargs)


def test_severity_maps_used_are_the_one_table():
    # the zoo's severities come from reasoner.kinds, whatever the model: spot-check one per map
    assert D.factors(noise.GreyNoiseParams(20.0), (8, 8))[0] == pytest.approx(sev.noise_severity(20.0))
    assert D.factors(D.Jpeg444Params(55), (8, 8))[0] == pytest.approx(sev.jpeg_severity(55))


@pytest.mark.parametrize("quality", [35, 79, 80, 95])
def test_a_photos_stored_jpeg_quality_is_read_off_its_tables(protocols, tmp_path, quality):
    # What keeps lomo's clean crops clean: a JPEG's own quality, from the file's luma quantisation table.
    from PIL import Image

    img = Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8))
    img.save(tmp_path / "a.jpg", quality=quality)
    img.save(tmp_path / "a.png")
    assert protocols.stored_jpeg_quality(tmp_path / "a.jpg") == quality
    assert protocols.stored_jpeg_quality(tmp_path / "a.png") is None


def test_zoo_crops_counts_each_crop_under_its_own_pair_only():
    # "blur" is a suffix of "motion_blur": the table once counted every shaken crop under the blur row too
    spec = importlib.util.spec_from_file_location("bench_zoo_crops", ROOT / "bench" / "zoo_crops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gains = {"held_0_camera_motion_blur": -1.0, "held_1_coffee_blur": 2.0, "held_2_sklearn_china_blur+jpeg": 0.5}
    rows = module.table(gains, [["motion_blur"], ["blur"], ["blur", "jpeg"]], None).columns
    pairs, crops, summed = (list(rows[i].cells) for i in (1, 2, 3))
    held = dict(zip(pairs[:3], zip(crops[:3], summed[:3], strict=True), strict=True))
    assert held == {"motion_blur": ("1", "-1.00"), "blur": ("1", "+2.00"), "blur+jpeg": ("1", "+0.50")}
