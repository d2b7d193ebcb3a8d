"""The calibration file: committed, loadable, and reproducible from self-synthesised data."""

import json

import numpy as np
import pytest

from reasoner.measure import MeasureReasoner
from reasoner.measure.calibration import DEFAULT_PATH, FACTOR_TARGETS, load_calibration
from rl.calibrate import fit, synth_training_case, write
from rl.degradations import BlurParams, apply
from rl.photos import load_photo


def test_committed_calibration_is_small_and_documented():
    assert DEFAULT_PATH.stat().st_size < 900_000
    cal = load_calibration()
    assert cal.meta["command"].startswith("rnr calibrate")
    assert cal.meta["validation_micro_f1"] > 0.8
    assert set(cal.factor_heads) == set(FACTOR_TARGETS)
    # Held-out factor errors in natural units: blur sigma within a third of a pixel, haze transmission within 0.1.
    assert cal.meta["validation_factor_mae"]["blur.sigma"] < 0.35
    assert cal.meta["validation_factor_mae"]["haze.transmission"] < 0.1
    assert len(cal.feature_names) == len(cal.mean) == len(cal.scale)


def test_training_cases_are_deterministic():
    a, b = synth_training_case(0, 17), synth_training_case(0, 17)
    assert a == b
    assert synth_training_case(0, 18) != a


def test_small_fit_is_reproducible_and_usable(tmp_path):
    one = fit(n=160, workers=1, members=1)
    two = fit(n=160, workers=1, members=1)
    assert json.dumps(one.to_json()) == json.dumps(two.to_json())  # nothing run-dependent (no timings) is stored
    path = write(one, tmp_path / "cal.json")
    rec = MeasureReasoner(calibration=path).diagnose(load_photo("coffee")[:256, :256])
    assert rec.provenance.model_version == "calibration 3"


def test_calibration_without_factor_heads_still_loads(tmp_path):
    # A version-1 file has no factor heads: factors then come from the inverse severity map.
    d = load_calibration().to_json()
    d.pop("factor_heads")
    d["version"] = "1"
    p = tmp_path / "v1.json"
    p.write_text(json.dumps(d))
    cal = load_calibration(p)
    assert cal.factor_heads == {}
    img = apply(load_photo("coffee")[:256, :256], [BlurParams("gaussian", sigma=2.5)])
    rec = MeasureReasoner(calibration=cal).diagnose(img)
    assert [d.kind for d in rec.detected()] == ["blur"]
    assert rec.detected()[0].factors.sigma > 1.0


@pytest.mark.parametrize("content", ["{}", "not json", json.dumps({"format": "other"})])
def test_bad_calibration_file_is_one_clear_line(tmp_path, content):
    p = tmp_path / "cal.json"
    p.write_text(content)
    with pytest.raises(ValueError, match="rnr calibrate") as e:
        load_calibration(p)
    assert "\n" not in str(e.value)


def test_missing_calibration_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="rnr calibrate"):
        load_calibration(tmp_path / "none.json")


def test_predict_needs_all_features():
    cal = load_calibration()
    with pytest.raises(ValueError, match="statistics"):
        cal.predict({"noise_sigma_haar": 1.0})
    assert np.isfinite(cal.mean).all()
