"""Coarse scene semantics from pixel statistics (no recognition model): faces, skin, sky, text, fine texture.

Everything here is a cue for how to restore, not a description a model would give; records mark it ``coarse``.
Faces use scikit-image's bundled LBP frontal-face cascade, the one detector available without downloads.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from reasoner.schema import Semantics


@lru_cache(maxsize=1)
def _face_cascade():
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    return Cascade(lbp_frontal_face_cascade_filename())


def detect_faces(small: np.ndarray) -> list[dict]:
    """Frontal faces in a down-scaled ``float32 HxWx3`` image (boxes in its pixel coordinates)."""
    h, w = small.shape[:2]
    if min(h, w) < 24:
        return []
    found = _face_cascade().detect_multi_scale(
        img=small, scale_factor=1.25, step_ratio=1.5, min_size=(20, 20), max_size=(min(h, w), min(h, w))
    )
    return [f for f in found if f["width"] >= 20]


def scene_stats(small: np.ndarray) -> dict[str, float]:
    """Cue statistics on a down-scaled ``float32 HxWx3 RGB in [0, 1]`` image."""
    u8 = np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ycc = cv2.cvtColor(u8, cv2.COLOR_RGB2YCrCb)
    cr, cb = ycc[..., 1].astype(np.int16), ycc[..., 2].astype(np.int16)
    skin = (cr > 135) & (cr < 175) & (cb > 85) & (cb < 130) & (ycc[..., 0] > 40)
    hsv = cv2.cvtColor(u8, cv2.COLOR_RGB2HSV)
    gray = ycc[..., 0].astype(np.float32) / 255.0
    local_sd = np.sqrt(np.maximum(cv2.blur(gray**2, (7, 7)) - cv2.blur(gray, (7, 7)) ** 2, 0))
    h = small.shape[0]
    top = slice(0, max(1, h // 3))
    hue, sat, val = hsv[top, :, 0].astype(np.float32), hsv[top, :, 1] / 255.0, hsv[top, :, 2] / 255.0
    smooth_bright = (local_sd[top] < 0.03) & (val > 0.45)
    blue = (hue > 85) & (hue < 135) & (sat >= 0.12)
    sky_like = smooth_bright & (blue | (sat < 0.2))
    # Text: dense, high-contrast strokes in small bimodal patches.
    # (median first, so that sensor noise does not read as strokes)
    gray_dn = cv2.medianBlur(ycc[..., 0], 3).astype(np.float32) / 255.0
    blackhat = cv2.morphologyEx(gray_dn, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3)))
    tophat = cv2.morphologyEx(gray_dn, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3)))
    strokes = np.maximum(blackhat, tophat) > 0.25
    stroke_density = cv2.blur(strokes.astype(np.float32), (15, 15))
    return {
        "skin_frac": float(skin.mean()),
        "sky_frac": float(sky_like.mean()),
        "blue_sky_frac": float((smooth_bright & blue).mean()),
        "text_frac": float((stroke_density > 0.2).mean()),
        "texture_frac": float((local_sd > 0.08).mean()),
        "colourfulness": float(hsv[..., 1].mean() / 255.0),
        "n_faces": float(len(detect_faces(small))),
    }


def describe(small: np.ndarray, stats: dict[str, float], lum_mean: float) -> Semantics:
    """Coarse :class:`Semantics` from :func:`scene_stats` (wording states that it is measured, not recognised).

    Pixel statistics cannot tell a landscape from a close-up, a face from a cat or a cup, or a sky from a white
    wall, so the record says less rather than something false: ``faces`` only when the face detector finds one
    (skin-toned colour alone is reported as colour, not as a face), ``sky`` only for a smooth blue region at the
    top (a smooth neutral one is named as what it may be), and the frame is described by its proportions, never
    as a kind of scene.
    """
    h, w = small.shape[:2]
    n_faces = int(stats["n_faces"])
    sky = stats["sky_frac"] > 0.3 and stats.get("blue_sky_frac", stats["sky_frac"]) > 0.15
    smooth_top = stats["sky_frac"] > 0.3 and not sky
    text = stats["text_frac"] > 0.05
    texture = stats["texture_frac"] > 0.15
    colour = (
        "near-greyscale"
        if stats["colourfulness"] < 0.06
        else "colourful"
        if stats["colourfulness"] > 0.35
        else "muted"
    )
    tone = "dark" if lum_mean < 0.2 else "bright" if lum_mean > 0.7 else "mid-toned"
    frame = "wider than tall" if w > 1.15 * h else "taller than wide" if h > 1.15 * w else "about square"
    objects = []
    if n_faces:
        objects.append(f"{n_faces} face-like region(s)")
    if stats["skin_frac"] > 0.25 and not n_faces:
        objects.append("warm skin-like tones (no face found)")
    if sky:
        objects.append("smooth blue region at top (sky-like)")
    elif smooth_top:
        objects.append("smooth bright region at top (sky, wall or paper)")
    if text:
        objects.append("text-like strokes")
    if texture:
        objects.append("finely textured areas")
    desc = f"A {tone}, {colour} image, {frame} (coarse, measured from pixel statistics; no objects recognised)."
    return Semantics(
        description=desc, objects=objects, faces=n_faces > 0, text=text, sky=sky, fine_texture=texture, coarse=True
    )
