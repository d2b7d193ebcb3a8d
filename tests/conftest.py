"""Shared fixtures: tiny offline checkpoints built once per test session."""

import os

# Tiny models on few cores are 20-40x slower with OpenMP's default thread count (barrier spinning); set before torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Qwen3-VL checkpoint (Instruct-style chat template), seed 0."""
    pytest.importorskip("transformers")
    from reasoner.tiny_vlm import build_tiny_reasoner

    return build_tiny_reasoner(tmp_path_factory.mktemp("tiny-vlm") / "tiny-qwen3vl", seed=0)


@pytest.fixture(scope="session")
def tiny_thinking_vlm_dir(tmp_path_factory) -> Path:
    """The tiny checkpoint with a thinking-variant chat template (the generation prompt opens ``<think>``)."""
    pytest.importorskip("transformers")
    from reasoner.tiny_vlm import build_tiny_reasoner

    return build_tiny_reasoner(tmp_path_factory.mktemp("tiny-vlm") / "tiny-qwen3vl-thinking", seed=0, thinking=True)


@pytest.fixture(scope="session")
def coffee_rain():
    """The coffee photo under screen-blended rain that one deraining leaves a visible part of, as 8-bit levels."""
    import numpy as np

    from rl.degradations.rain import ScreenRainParams, apply_screen_rain
    from rl.photos import load_photo

    params = ScreenRainParams(density=0.06635, angle=102.3176, length=26.4219, blur=0.7858, brightness=0.7162,
                              seed=596836679)  # fmt: skip
    return (np.rint(np.clip(apply_screen_rain(load_photo("coffee"), params), 0, 1) * 255) / 255).astype(np.float32)
