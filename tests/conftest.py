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
