"""Old import path of :mod:`reasoner.measure.features`; import from there (this alias goes once no caller uses it)."""

from reasoner.measure.features import (
    GLOBAL_SIDE,
    LOCAL_CROP,
    ORIENT_BINS,
    SPECTRUM_BINS,
    edge_stats,
    global_view,
    ijg_table,
    jpeg_stats,
    local_crop,
    luma255,
    measure_all,
    noise_stats,
    rain_stats,
    resampling_stats,
    spectrum_stats,
    tone_stats,
)

__all__ = [
    "GLOBAL_SIDE",
    "LOCAL_CROP",
    "ORIENT_BINS",
    "SPECTRUM_BINS",
    "edge_stats",
    "global_view",
    "ijg_table",
    "jpeg_stats",
    "local_crop",
    "luma255",
    "measure_all",
    "noise_stats",
    "rain_stats",
    "resampling_stats",
    "spectrum_stats",
    "tone_stats",
]
