"""Real photographs bundled inside installed wheels (never downloaded), split for calibration and evaluation.

scikit-image ships its sample photos in the wheel; scikit-learn ships two (``load_sample_images``). The split is
by scene, so the benchmark never sees a scene the calibration was fitted on.
"""

from __future__ import annotations

from functools import cache

import numpy as np

#: Scenes the measure-backend calibration is fitted on.
CALIBRATION_PHOTOS: tuple[str, ...] = (
    "chelsea", "rocket", "coins", "brick", "grass", "gravel", "moon", "hubble_deep_field", "page", "sklearn_flower",
)  # fmt: skip
#: Held-out scenes for benchmarks and estimator tests.
EVALUATION_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "camera", "motorcycle_right", "sklearn_china")


def _to_float_rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    a = a[..., :3]
    scale = 65535.0 if a.dtype == np.uint16 else 255.0 if a.dtype == np.uint8 else 1.0
    return np.ascontiguousarray(a.astype(np.float32) / scale)


@cache
def load_photo(name: str) -> np.ndarray:
    """A bundled photo as ``float32 HxWx3 RGB in [0, 1]`` (greyscale ones replicated to three channels).

    Names are scikit-image ``skimage.data`` function names, or ``sklearn_china`` / ``sklearn_flower`` (needs
    scikit-learn, part of the ``dev`` extra).
    """
    if name.startswith("sklearn_"):
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as e:
            raise ImportError(
                f"photo {name!r} comes from scikit-learn; install with: pip install 'reason-restore[dev]'"
            ) from e
        img = load_sample_image(name.removeprefix("sklearn_") + ".jpg")
    else:
        import skimage.data

        fn = {
            "motorcycle_left": lambda: skimage.data.stereo_motorcycle()[0],
            "motorcycle_right": lambda: skimage.data.stereo_motorcycle()[1],
        }.get(name) or getattr(skimage.data, name, None)
        if fn is None:
            raise ValueError(f"unknown bundled photo {name!r}")
        img = fn()
    out = _to_float_rgb(img)
    out.setflags(write=False)
    return out


def random_crop(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``size`` x ``size`` crop (smaller if the image is) at a random position, randomly mirrored."""
    h, w = img.shape[:2]
    ch, cw = min(size, h), min(size, w)
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    out = img[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


#: (photo, kinds) of the examples `make demo` writes: held-out scenes, one or two degradations each.
EXAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("astronaut", ("noise",)),
    ("coffee", ("jpeg",)),
    ("chelsea", ("haze",)),
    ("motorcycle_right", ("low_light", "noise")),
    ("camera", ()),
)


def write_examples(out, seed: int = 7) -> list:
    """Write :data:`EXAMPLES` as PNGs (degraded by ``rl.degradations``) into ``out``; returns their paths."""
    from pathlib import Path

    from reasoner.imageio import save_image
    from rl.degradations import apply, sample_ops

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name, kinds in EXAMPLES:
        img = load_photo(name)
        ops = sample_ops(rng, kinds=kinds) if kinds else []
        tag = "-".join(kinds) or "clean"
        paths.append(save_image(out / f"{name}_{tag}.png", apply(img, ops) if ops else img))
    return paths
