"""Degradation synthesis: determinism, ground-truth records, physics checks on real photos."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import skimage.data

from reasoner import severity as sev
from reasoner.schema import DiagnosisRecord
from rl import degradations as D
from rl import ground_truth as G
from rl.degradations import (
    BlurParams,
    HazeParams,
    JpegParams,
    LowLightParams,
    LowResolutionParams,
    MotionBlurParams,
    NoiseParams,
    RainParams,
)

KINDS = sev.PHYSICAL_ORDER


def _photo(name: str) -> np.ndarray:
    rgb = getattr(skimage.data, name)()
    h, w = rgb.shape[:2]
    top, left = (h - 256) // 2, (w - 256) // 2
    return np.ascontiguousarray(rgb[top : top + 256, left : left + 256], dtype=np.float32) / np.float32(255.0)


PHOTOS = {name: _photo(name) for name in ("astronaut", "coffee")}


@pytest.fixture(params=sorted(PHOTOS))
def photo(request) -> np.ndarray:
    return PHOTOS[request.param].copy()


def psnr(clean: np.ndarray, out: np.ndarray) -> float:
    return 10.0 * math.log10(1.0 / float(np.mean((clean.astype(np.float64) - out) ** 2)))


def grey(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_params_and_pixels(kind, photo):
    p1, p2 = D.SAMPLERS[kind](np.random.default_rng(3)), D.SAMPLERS[kind](np.random.default_rng(3))
    assert p1 == p2 and p1.kind == kind
    np.testing.assert_array_equal(D.APPLIERS[kind](photo, p1), D.APPLIERS[kind](photo, p2))


@pytest.mark.parametrize("kind", KINDS)
def test_different_seed_different_params_and_pixels(kind, photo):
    p1, p2 = D.SAMPLERS[kind](np.random.default_rng(3)), D.SAMPLERS[kind](np.random.default_rng(4))
    assert p1 != p2
    assert not np.array_equal(D.APPLIERS[kind](photo, p1), D.APPLIERS[kind](photo, p2))


@pytest.mark.parametrize("kind", ["noise", "low_light", "rain", "haze"])
def test_seed_field_drives_the_randomness_of_the_application(kind, photo):
    p = D.SAMPLERS[kind](np.random.default_rng(0))
    other = dataclasses.replace(p, seed=p.seed + 1)
    assert not np.array_equal(D.APPLIERS[kind](photo, p), D.APPLIERS[kind](photo, other))


def test_synthesize_is_deterministic_per_seed(photo):
    a, b, c = (G.synthesize(photo, seed, n_kinds=3) for seed in (11, 11, 12))
    np.testing.assert_array_equal(a.image, b.image)
    assert a.ops == b.ops and a.ops != c.ops
    dump = [s.record.model_dump(exclude={"provenance": {"created_at"}}) for s in (a, b)]
    assert dump[0] == dump[1]
    assert a.record.provenance.settings["seed"] == 11


@pytest.mark.parametrize("seed", range(12))
def test_sampled_records_validate_and_round_trip(seed, photo):
    syn = G.synthesize(photo, np.random.default_rng(seed), n_kinds=(1, 3))
    record = syn.record
    assert DiagnosisRecord.model_validate_json(record.model_dump_json()) == record
    assert DiagnosisRecord.model_validate(record.model_dump(mode="json")) == record
    assert [d.kind for d in record.degradations] == [op.kind for op in syn.ops]
    assert all(d.confidence == 1.0 for d in record.degradations)
    assert record.overall_severity == pytest.approx(sev.overall_severity(d.severity for d in record.degradations))
    assert record.provenance.backend == "synthetic" and record.provenance.elapsed_s == 0
    assert record.semantics.coarse and "ynthetic" in record.semantics.description
    assert not (record.semantics.faces or record.semantics.text or record.semantics.sky)
    assert (record.image.width, record.image.height) == (256, 256) and record.image.path is None
    assert record.image.sha256 == G.image_info(syn.image).sha256
    assert "seed" not in record.provenance.settings  # a generator was passed, not a seed
    for op, step, entry in zip(syn.ops, record.reasoning, record.degradations, strict=True):
        severity, factors = D.factors(op, syn.image.shape)
        assert entry.severity == pytest.approx(severity)
        assert entry.factors.model_dump() == factors
        assert step.kinds == [op.kind] and step.observation.startswith("synthesised")
        assert step.evidence  # the applied parameters, as numbers
        assert all(record.provenance.settings[f"{op.kind}.{k}"] == v for k, v in G._flat_params(op).items())


def test_record_observation_states_the_parameters():
    record = G.ground_truth([NoiseParams(12.34, seed=1)], G.image_info(PHOTOS["coffee"]))
    assert record.reasoning[0].observation == "synthesised Gaussian noise with sigma=12.3 (0-255)"
    assert record.reasoning[0].evidence["sigma"] == pytest.approx(12.34)


def test_level_none_is_still_listed():
    record = G.ground_truth([NoiseParams(2.0, seed=1), JpegParams(95)], G.image_info(PHOTOS["coffee"]))
    assert [(d.kind, d.level) for d in record.degradations] == [("noise", "none"), ("jpeg", "none")]
    assert record.detected() == []


def test_content_flags_pass_through(photo):
    record = G.synthesize(photo, 1, faces=True, sky=True).record
    assert record.semantics.faces and record.semantics.sky and not record.semantics.text


def test_clean_sample_has_no_degradations(photo):
    syn = G.synthesize(photo, 5, n_kinds=0)
    assert syn.ops == () and syn.record.degradations == [] and syn.record.overall_severity == 0
    np.testing.assert_array_equal(syn.image, photo)
    assert G.ground_truth([], photo).degradations == []


def test_ground_truth_needs_image_identity():
    with pytest.raises(TypeError):
        G.ground_truth([JpegParams(50)], (256, 256))


MONOTONE_CASES = [
    # Gaussian noise: sigma up
    [NoiseParams(5, seed=1), NoiseParams(15, seed=1), NoiseParams(45, seed=1)],
    # Poisson-Gaussian noise: sigma up at a fixed shot fraction
    [NoiseParams(s, "poisson_gaussian", 0.7, seed=1) for s in (5, 15, 45)],
    # Gaussian blur: sigma up
    [BlurParams("gaussian", sigma=s) for s in (0.8, 1.6, 3.2)],
    # defocus: disk radius up
    [BlurParams("defocus", radius=r) for r in (1.5, 3.0, 6.0)],
    # motion blur: length up at an oblique angle
    [MotionBlurParams(n, 30.0) for n in (5, 11, 25)],
    # haze: scattering coefficient up, same scene
    [HazeParams(b, (0.9, 0.9, 0.92), 0.4, seed=2) for b in (0.4, 1.0, 2.5)],
    # low light: exposure down at a fixed gamma
    [LowLightParams(e, 1.5, 2.0, seed=3) for e in (0.5, 0.2, 0.08)],
    # low light: gamma up at a fixed exposure
    [LowLightParams(0.3, g, 2.0, seed=3) for g in (1.0, 1.5, 2.0)],
    # JPEG: quality down
    [JpegParams(q) for q in (90, 50, 10)],
    # rain: coverage up, same streak seed
    [RainParams(c, 80.0, 0.9, seed=4) for c in (0.012, 0.04, 0.08)],
    # low resolution: scale up
    [LowResolutionParams(s) for s in (2.0, 2.8, 4.0)],
]


@pytest.mark.parametrize("ops", MONOTONE_CASES, ids=lambda ops: f"{ops[0].kind}-{ops[0]}"[:40])
def test_severity_monotone_by_map_and_on_pixels(ops, photo):
    severities = [D.factors(op, photo.shape)[0] for op in ops]
    assert all(a < b for a, b in zip(severities, severities[1:])), severities
    quality = [psnr(photo, D.apply(photo, [op])) for op in ops]
    assert all(a > b for a, b in zip(quality, quality[1:])), quality


@pytest.mark.parametrize("kind", KINDS)
def test_sampled_severities_are_spread(kind):
    rng = np.random.default_rng(0)
    s = np.array([D.factors(D.SAMPLERS[kind](rng), (256, 256))[0] for _ in range(200)])
    assert s.min() >= 0.1 and s.max() - s.min() > 0.3 and np.median(s) > 0.3, (s.min(), np.median(s), s.max())


@pytest.mark.parametrize("model,rho", [("gaussian", 0.0), ("poisson_gaussian", 0.5), ("poisson_gaussian", 0.9)])
@pytest.mark.parametrize("sigma", [5.0, 20.0, 40.0])
def test_noise_std_at_mid_grey_matches_sigma(model, rho, sigma):
    flat = np.full((256, 256, 3), 0.5, np.float32)
    out = D.apply_noise(flat, NoiseParams(sigma, model, rho, seed=7))
    assert float(out.std()) * 255 == pytest.approx(sigma, rel=0.10)
    assert float(out.mean()) == pytest.approx(0.5, abs=0.01)


def test_poisson_gaussian_noise_grows_with_intensity():
    params = NoiseParams(20.0, "poisson_gaussian", 0.9, seed=7)
    stds = [float(D.apply_noise(np.full((128, 128, 3), v, np.float32), params).std()) for v in (0.2, 0.5, 0.8)]
    assert stds[0] < stds[1] < stds[2]
    gaussian = NoiseParams(20.0, seed=7)
    flat_stds = [float(D.apply_noise(np.full((128, 128, 3), v, np.float32), gaussian).std()) for v in (0.2, 0.8)]
    assert flat_stds[0] == pytest.approx(flat_stds[1], rel=0.05)


def test_motion_kernel_orientation(photo):
    # y points down, angles counter-clockwise from +x: 0 is horizontal, 90 vertical, 45 up-right.
    k0, k90, k45 = D.motion_kernel(15.0, 0.0), D.motion_kernel(15.0, 90.0), D.motion_kernel(15.0, 45.0)
    assert k0.shape[0] == k0.shape[1] and k0.sum() == pytest.approx(1.0)
    assert np.count_nonzero(k0.sum(axis=1) > 1e-3) == 1 and np.count_nonzero(k0.sum(axis=0) > 1e-3) >= 15
    np.testing.assert_allclose(k90, k0.T, atol=1e-6)
    assert k45[0, -1] + k45[-1, 0] > 0 and k45[0, 0] == k45[-1, -1] == 0
    # stripes that vary only along x are invariant to vertical motion; stripes that vary along y are smeared
    ramp = (0.5 + 0.4 * np.sin(np.arange(64) * 0.7)).astype(np.float32)
    across = np.broadcast_to(ramp[None, :, None], (64, 64, 3))
    np.testing.assert_allclose(D.apply_motion_blur(across, MotionBlurParams(15.0, 90.0)), across, atol=1e-5)
    along = np.ascontiguousarray(across.transpose(1, 0, 2))
    assert np.abs(D.apply_motion_blur(along, MotionBlurParams(15.0, 90.0)) - along).max() > 0.2
    # on a photo, vertical motion removes more of the gradients along y than along x, horizontal motion the reverse
    for angle, smeared, kept in ((90.0, 0, 1), (0.0, 1, 0)):
        out = grey(D.apply_motion_blur(photo, MotionBlurParams(15.0, angle)))
        keep = [np.abs(np.diff(out, axis=a)).mean() / np.abs(np.diff(grey(photo), axis=a)).mean() for a in (0, 1)]
        assert keep[smeared] < 0.75 * keep[kept], (angle, keep)


def test_defocus_kernel_has_the_second_moment_of_its_equivalent_sigma():
    kernel = D.disk_kernel(6.0)
    r = np.arange(kernel.shape[0]) - kernel.shape[0] // 2
    assert kernel.sum() == pytest.approx(1.0)
    std = math.sqrt(float((kernel.sum(axis=0) * r**2).sum()))
    assert std == pytest.approx(BlurParams("defocus", radius=6.0).equivalent_sigma, rel=0.05)


def test_haze_scattering_identity(photo):
    params = D.sample_haze(np.random.default_rng(8))
    out = D.apply_haze(photo, params)
    t = D.transmission_map(params, photo.shape)
    assert t.shape == photo.shape[:2] and 0 < t.min() and t.max() < 1
    airlight = np.asarray(params.airlight, np.float32)
    np.testing.assert_allclose(out, photo * t[..., None] + airlight * (1 - t[..., None]), atol=1e-6)
    severity, factors = D.factors(params, photo.shape)
    assert factors["transmission"] == pytest.approx(float(t.mean()))
    assert severity == pytest.approx(sev.haze_severity(float(t.mean())))
    assert factors["airlight"] == pytest.approx(list(params.airlight)) and factors["beta"] == params.beta
    assert t[:64].mean() < t[-64:].mean()  # the top of the frame is farther away


def test_rain_coverage_is_measured_on_the_composited_layer(photo):
    params = RainParams(0.04, 100.0, 0.95, seed=9)
    alpha = D.rain_layer(params, photo.shape)
    out = D.apply_rain(photo, params)
    np.testing.assert_allclose(out, photo * (1 - alpha[..., None]) + alpha[..., None] * 0.95, atol=1e-6)
    _, factors = D.factors(params, photo.shape)
    assert factors["density"] == pytest.approx(float(alpha.mean())) == pytest.approx(0.04, rel=0.25)
    assert factors["angle"] == 100.0


def test_jpeg_changes_pixels_and_records_quality(photo):
    out = D.apply_jpeg(photo, JpegParams(30))
    assert out.dtype == np.float32 and not np.array_equal(out, photo)
    np.testing.assert_array_equal(out * 255, np.rint(out * 255))  # decoded 8-bit values
    record = G.ground_truth([JpegParams(30)], out)
    assert record.degradations[0].factors.quality == 30
    assert record.degradations[0].severity == pytest.approx(sev.jpeg_severity(30))


def test_low_resolution_removes_high_frequencies(photo):
    scale = 3.0

    def high_energy(img):
        spectrum = np.abs(np.fft.fft2(grey(img) - grey(img).mean())) ** 2
        f = np.fft.fftfreq(img.shape[0])
        beyond = np.maximum(np.abs(f)[:, None], np.abs(f)[None, :]) > 0.5 / scale  # past the small image's Nyquist
        return spectrum[beyond].sum() / spectrum.sum()

    out = D.apply_low_resolution(photo, LowResolutionParams(scale))
    assert out.shape == photo.shape
    # area down-sampling aliases and bicubic up-sampling images part of the band back, but most of it is gone
    assert high_energy(out) < 0.35 * high_energy(photo)
    assert D.factors(LowResolutionParams(scale), photo.shape)[1]["scale"] == pytest.approx(scale, rel=0.02)


def test_mixtures_follow_physical_order_and_low_pass_exclusion():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        kinds = [op.kind for op in D.sample_ops(rng, n_kinds=(2, 3))]
        assert 2 <= len(kinds) <= 3 and len(set(kinds)) == len(kinds)
        assert kinds == sorted(kinds, key=KINDS.index)
        assert len(D.LOW_PASS_KINDS.intersection(kinds)) <= 1
        seen.update(kinds)
    assert seen == set(KINDS)


def test_given_kinds_are_used_and_ordered():
    ops = D.sample_ops(np.random.default_rng(0), kinds=["jpeg", "haze", "noise"])
    assert [op.kind for op in ops] == ["haze", "noise", "jpeg"]


def test_apply_sorts_into_physical_order(photo):
    ops = D.sample_ops(np.random.default_rng(2), kinds=["haze", "low_resolution", "noise", "jpeg"])
    chained = photo
    for op in ops:
        chained = D.APPLIERS[op.kind](chained, op)
    np.testing.assert_array_equal(D.apply(photo, ops[::-1]), chained)


@pytest.mark.parametrize(
    "call",
    [
        lambda: D.sample_ops(np.random.default_rng(0), kinds=["noise", "noise"]),  # duplicate kind
        lambda: D.sample_ops(np.random.default_rng(0), kinds=["fog"]),  # unknown kind
        lambda: D.sample_ops(np.random.default_rng(0), n_kinds=8),  # more than the exclusion allows
        lambda: D.apply(PHOTOS["coffee"], [JpegParams(50), JpegParams(60)]),  # one op per kind
        lambda: D.apply(PHOTOS["coffee"][..., 0], []),  # not HxWx3
        lambda: D.apply(PHOTOS["coffee"] * 255, []),  # not in [0, 1]
        lambda: NoiseParams(-1.0),  # negative sigma
        lambda: NoiseParams(10.0, "gaussian", rho=0.5),  # shot fraction on Gaussian noise
        lambda: BlurParams("box", sigma=1.0),  # unknown kernel
        lambda: BlurParams("defocus", sigma=1.0),  # defocus without a radius
        lambda: MotionBlurParams(10.0, 180.0),  # angle outside [0, 180)
        lambda: HazeParams(1.0, (0.9, 0.9)),  # airlight not RGB
        lambda: LowLightParams(0.0),  # zero exposure
        lambda: JpegParams(0),  # quality below 1
        lambda: RainParams(0.04, angle=-5.0),  # negative angle
        lambda: LowResolutionParams(0.5),  # up-sampling is not a degradation
    ],
)
def test_invalid_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_inputs_are_not_modified(photo):
    before = photo.copy()
    for kind in KINDS:
        D.APPLIERS[kind](photo, D.SAMPLERS[kind](np.random.default_rng(1)))
    G.synthesize(photo, 3, n_kinds=3)
    D.apply(photo, [])
    np.testing.assert_array_equal(photo, before)


@pytest.mark.parametrize("kind", KINDS)
def test_output_is_float32_rgb_in_unit_range(kind, photo):
    out = D.APPLIERS[kind](photo.astype(np.float64), D.SAMPLERS[kind](np.random.default_rng(6)))
    assert out.dtype == np.float32 and out.shape == photo.shape
    assert 0.0 <= out.min() and out.max() <= 1.0


# ------------------------------------------------------------------------------------- per-kind tables and registry


def _rl_kind_tables() -> dict[str, tuple[object, object]]:
    """Every per-kind table in rl: name -> (table, the check that guards it at import)."""
    from reasoner.kinds import check_table
    from rl.text_policy import COMPLETE_FACTORS

    return {
        "rl.degradations.MODELS": (D.MODELS, D.check_models),
        "rl.degradations.SAMPLERS": (D.SAMPLERS, lambda t: check_table(t, "SAMPLERS")),
        "rl.degradations.APPLIERS": (D.APPLIERS, lambda t: check_table(t, "APPLIERS")),
        "rl.text_policy.COMPLETE_FACTORS": (COMPLETE_FACTORS, lambda t: check_table(t, "COMPLETE_FACTORS")),
    }


@pytest.mark.parametrize("name", sorted(_rl_kind_tables()))
def test_every_rl_kind_table_covers_every_kind_and_its_check_catches_a_gap(name):
    from reasoner.kinds import KINDS as SPECS

    table, check = _rl_kind_tables()[name]
    assert list(table) == list(SPECS)  # every kind, in physical order
    check(table)
    for missing in SPECS:  # a table that misses any one kind fails its check, naming the kind
        with pytest.raises(ImportError, match=missing):
            check({k: v for k, v in table.items() if k != missing})


def test_registry_models_are_complete_and_filed_under_their_kind():
    for kind, models in D.MODELS.items():
        default = models[D.DEFAULT_MODEL]
        p = default.sample(np.random.default_rng(0))
        assert type(p) is default.params and p.kind == kind and D.model_of(p) is default
        severity, factors = D.factors(p, (64, 64))
        assert 0.0 <= severity <= 1.0 and default.describe(p, factors).startswith("synthesised")
    misfiled = {**D.MODELS, "rain": {"rnr": D.MODELS["noise"]["rnr"]}}
    with pytest.raises(ImportError, match="wrong kind"):
        D.check_models(misfiled)
    with pytest.raises(ImportError, match="no 'rnr' model"):
        D.check_models({**D.MODELS, "rain": {}})
    with pytest.raises(ValueError, match="not degradation parameters"):
        D.factors(object(), (8, 8))


def test_a_second_model_of_a_kind_is_one_registration(monkeypatch):
    """A new model: its own parameter class, sampler, applier, factors and phrase, filed under its kind; no more."""
    import dataclasses as dc

    from rl.degradations import registry

    @dc.dataclass(frozen=True)
    class GreyNoiseParams:  # the same noise on all three channels
        kind = "noise"
        sigma: float
        seed: int = 0

    def apply_grey(img, p):
        noise = np.random.default_rng(p.seed).standard_normal(img.shape[:2], dtype=np.float32) * (p.sigma / 255)
        return np.clip(img + noise[..., None], 0, 1).astype(np.float32)

    grey = D.DegradationModel(
        "noise", "grey", GreyNoiseParams, lambda rng, sigma=(5.0, 50.0): GreyNoiseParams(rng.uniform(*sigma), 1),
        apply_grey, lambda p, shape: {"sigma": p.sigma, "model": "gaussian"}, lambda p, f: f"grey noise {p.sigma:.1f}",
    )  # fmt: skip
    models = {**D.MODELS, "noise": {**D.MODELS["noise"], "grey": grey}}
    D.check_models(models)
    monkeypatch.setattr(registry, "MODELS", models)  # what `MODELS = (..., grey)` in noise.py amounts to
    ops = D.sample_ops(np.random.default_rng(0), ["noise", "jpeg"], models={"noise": "grey"})
    assert isinstance(ops[0], GreyNoiseParams)
    out = D.apply(PHOTOS["coffee"], ops)
    assert out.shape == PHOTOS["coffee"].shape
    record = G.ground_truth(ops, out)
    assert record.reasoning[0].observation.startswith("grey noise") and record.degradations[0].kind == "noise"
    with pytest.raises(ValueError, match="unknown noise model"):
        D.sample_ops(np.random.default_rng(0), ["noise"], models={"noise": "bsrgan"})
