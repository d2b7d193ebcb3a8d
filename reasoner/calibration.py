"""Old import path of :mod:`reasoner.measure.calibration`; import from there (this alias goes once no caller uses it).

The committed calibration file itself stays at ``reasoner/calibration/measure.json`` (:data:`DEFAULT_PATH`).
"""

from reasoner.measure.calibration import (
    DEFAULT_PATH,
    EXCLUDED,
    FACTOR_HEADS,
    FACTOR_TARGETS,
    FORMAT,
    LOG_FEATURES,
    Calibration,
    FactorHead,
    Mlp,
    feature_vector,
    from_target,
    load_calibration,
    model_feature_names,
    to_target,
)

__all__ = [
    "DEFAULT_PATH",
    "EXCLUDED",
    "FACTOR_HEADS",
    "FACTOR_TARGETS",
    "FORMAT",
    "LOG_FEATURES",
    "Calibration",
    "FactorHead",
    "Mlp",
    "feature_vector",
    "from_target",
    "load_calibration",
    "model_feature_names",
    "to_target",
]
