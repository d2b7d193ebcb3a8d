"""The calibration file: committed, loadable, and reproducible from self-synthesised data."""

import json

import numpy as np
import pytest

from reasoner.calibration import DEFAULT_PATH, load_calibration
from reasoner.measure import MeasureReasoner
from rl.calibrate import fit, synth_training_case, write
from rl.photos import load_photo


def test_committed_calibration_is_small_and_documented():
    assert DEFAULT_PATH.stat().st_size < 600_000
    cal = load_calibration()
    assert cal.meta["command"].startswith("rnr calibrate")
    assert cal.meta["validation_micro_f1"] > 0.8
    assert len(cal.feature_names) == len(cal.mean) == len(cal.scale)


def test_training_cases_are_deterministic():
    a, b = synth_training_case(0, 17), synth_training_case(0, 17)
    assert a == b
    assert synth_training_case(0, 18) != a


def test_small_fit_is_reproducible_and_usable(tmp_path):
    one = fit(n=160, workers=1, members=1)
    two = fit(n=160, workers=1, members=1)
    a, b = one.to_json(), two.to_json()
    a["meta"].pop("fit_seconds")
    b["meta"].pop("fit_seconds")
    assert json.dumps(a) == json.dumps(b)
    path = write(one, tmp_path / "cal.json")
    rec = MeasureReasoner(calibration=path).diagnose(load_photo("coffee")[:256, :256])
    assert rec.provenance.model_version == "calibration 1"


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
