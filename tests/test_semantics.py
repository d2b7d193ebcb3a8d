"""Coarse semantics say less rather than something false (issue 17 item 9)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from reasoner.measure.semantics import describe, scene_stats


def _small(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3].astype(np.float32) / 255.0
    h, w = img.shape[:2]
    s = min(1.0, 256 / max(h, w))
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _semantics(name: str):
    small = _small(getattr(data, name)())
    return describe(small, scene_stats(small), float(small.mean()))


@pytest.mark.parametrize("name", ["chelsea", "coffee", "immunohistochemistry"])
def test_skin_toned_colour_is_not_a_face(name):
    sem = _semantics(name)
    assert not sem.faces
    assert not any(o.startswith(("1 face", "2 face")) for o in sem.objects)


def test_a_detected_face_is_a_face():
    sem = _semantics("astronaut")
    assert sem.faces and "1 face-like region(s)" in sem.objects


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "camera"])
def test_the_frame_is_never_called_a_scene(name):
    desc = _semantics(name).description.lower()
    assert "landscape" not in desc and "portrait" not in desc
    assert "no objects recognised" in desc


@pytest.mark.parametrize("name", ["page", "camera"])
def test_a_neutral_smooth_top_is_not_claimed_as_sky(name):
    sem = _semantics(name)
    assert not sem.sky
    assert "smooth bright region at top (sky, wall or paper)" in sem.objects


def test_a_blue_sky_is_sky():
    h, w = 192, 256
    img = np.zeros((h, w, 3), np.float32)
    ramp = np.linspace(0, 0.1, h // 2, dtype=np.float32)[:, None, None]
    img[: h // 2] = np.array([0.45, 0.65, 0.95], np.float32) - ramp
    rng = np.random.default_rng(0)
    img[h // 2 :] = rng.uniform(0.1, 0.5, (h - h // 2, w, 3)).astype(np.float32)
    sem = describe(img, scene_stats(img), float(img.mean()))
    assert sem.sky and "smooth blue region at top (sky-like)" in sem.objects
