"""The server side of ``rnr ui``: backends loaded once, one checkpoint database, and what each run may serve.

No Gradio here (the page is :mod:`agent.ui.page`): what the page does with an image is tested without a browser.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import secrets
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from agent.backends import Backends
from agent.checkpoint import sqlite_checkpointer
from agent.graph import final_pixels, finish_trace, reading_of
from agent.io import write_text_atomic
from agent.run import thread_state, write_like_input
from agent.state import Context, Settings
from agent.trace import Trace
from reasoner.imageio import ImageLoadError, PixelLimit, load_image, resolve_max_pixels, save_image

#: Backends without a default model: the page asks for a model id or folder before loading them.
NEEDS_MODEL = frozenset({"vllm", "diffusion"})


def backend_status(registry: dict[str, str]) -> dict[str, list[str]]:
    """For each registry name, the third-party modules its backend imports that are not installed ([] = usable).

    Reads the backend module's source instead of importing it: importing transformers or diffusers to fill a
    dropdown would cost seconds at every start, and a missing extra is all the page needs to know.
    """
    out = {}
    for name, target in registry.items():
        spec = _find(target.partition(":")[0])
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            out[name] = [target]
            continue
        tops = set()
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            if isinstance(node, ast.Import):
                tops |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
        tops -= set(sys.stdlib_module_names) | {"__future__"}
        out[name] = sorted(t for t in tops if _find(t) is None)
    return out


def _find(module: str):
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a missing parent package
        return None


def image_error(path: str | None, max_pixels: int | None = None) -> str | None:
    """A one-line message when ``path`` is not an image rnr can use (None when it is), naming the file.

    An image whose header declares more than ``max_pixels`` is refused before anything is decoded, and the
    message names the limit and where it came from; FIFOs and devices are refused on ``stat`` alone.
    """
    if not path:
        return "No image yet: open or drop an image file first."
    try:
        load_image(path, max_pixels=max_pixels)
    except ImageLoadError as e:
        return f"{Path(path).name} cannot be used: {e.reason}"
    except OSError as e:
        return f"{Path(path).name} cannot be read: {e.strerror or e}"
    return None


class UIRuns:
    """The server side of the page: one checkpoint database, loaded backends, and two folders per run.

    ``private/`` holds the checkpoint database and each thread's work arrays and is never served; ``served/<token>/``
    holds what one run hands its page (restored image, trace, before-preview), under a name nobody can guess.
    """

    def __init__(self, work_root: str | Path, index: str | None = None, max_pixels: int | None = None) -> None:
        self.work_root = Path(work_root).resolve()  # Gradio wants absolute allowed/blocked paths
        self.private = self.work_root / "private"
        self.served = self.work_root / "served"
        for d in (self.private, self.served):  # other local accounts have no business here either
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.index = index
        self.max_pixels = (
            max_pixels if isinstance(max_pixels, PixelLimit) else resolve_max_pixels(max_pixels, "restore")
        )  # a PixelLimit from the command line keeps where it came from, for the refusal to say
        self.saver = sqlite_checkpointer(self.private / "checkpoints.sqlite")
        self._contexts: dict[tuple[str, str], Context] = {}
        self._lock = threading.Lock()

    def context(self, reasoner, reasoner_model, scorer, scorer_model, restorer, restorer_model, index, attempts):
        """Backends for these choices, loaded once and kept (a model takes long to load), with review switched on.

        Returns the cache key too: a page session keeps the key, not the backends, in its state.
        """
        backends = Backends.of(reasoner, scorer, restorer, index or None, reasoner_model=reasoner_model,
                               scorer_model=scorer_model, restorer_model=restorer_model)  # fmt: skip
        settings = Settings(max_attempts=int(attempts))
        key = (backends.key(), settings.model_dump_json())
        with self._lock:
            if key not in self._contexts:
                ctx = backends.load(settings, max_pixels=self.max_pixels)
                self._contexts[key] = dataclasses.replace(ctx, review=True)
            return key, self._contexts[key]

    def loaded(self, key: tuple[str, str]) -> Context:
        """The context :meth:`context` loaded under ``key`` (a page session keeps the key)."""
        return self._contexts[key]

    def new_session(self, path: str, ctx_key: tuple[str, str]) -> dict:
        """A run's page state: a fresh thread working in ``private/`` and a fresh unguessable ``served/`` folder.

        The served folder's name is a random 128-bit token, unrelated to the thread id (which the checkpoint
        database and the work folder hold): knowing one's own links says nothing about another run's.
        """
        thread = uuid.uuid4().hex
        return {"thread": thread, "input": path, "name": Path(path).name, "work": str(self.private / thread),
                "out": str(self.served / secrets.token_hex(16)), "ctx": ctx_key}  # fmt: skip

    def input_pixels(self, session: dict) -> np.ndarray:
        """The session's photo as the run read it (``float32 HxWx3``), from its work folder (memory-mapped)."""
        return np.load(thread_state(self.saver, session["thread"]).input_npy, mmap_mode="r")

    def measured(self, session: dict, ctx: Context):
        """:func:`agent.graph.reading_of` this session's photo: a kind ticked present is read off it."""
        return reading_of(ctx.reasoner, lambda: self.input_pixels(session))

    def ineffective(self, ctx: Context, pixels: np.ndarray, proposed: dict, edited: dict) -> list[str]:
        """:func:`ineffective_edits` of the person's edits on this photo."""
        return ineffective_edits(ctx, pixels, proposed, edited)

    def preview(self, session: dict, ctx: Context, record: dict) -> tuple[Path, Path]:
        """Before and after of a 100% crop (the most detailed :data:`PREVIEW_CROP` square) under ``ctx``'s controls.

        Written into the run's served folder under a new name each time (the page must not show a cached one).
        """
        pixels = self.input_pixels(session)
        ys, xs = detail_window(pixels, PREVIEW_CROP)
        crop = np.ascontiguousarray(pixels[ys, xs], dtype=np.float32)
        out = Path(session["out"])
        out.mkdir(mode=0o700, exist_ok=True)
        before = out / "crop_before.png"
        if not before.exists():
            save_image(before, crop)
        for old in out.glob("crop_after_*.png"):
            old.unlink(missing_ok=True)
        after = save_image(out / f"crop_after_{secrets.token_hex(4)}.png", restore_area(ctx, crop, record))
        return before, after

    def export(self, session: dict) -> tuple[Path, Path, Path, Path, Trace]:
        """Write the restored image, its slider PNG, its trace and the before-preview into the run's served folder.

        The image is written like the upload (its container, depth and metadata); the slider gets a PNG copy, the
        same file for a PNG upload. The trace is written atomically.
        """
        state = thread_state(self.saver, session["thread"])
        out = Path(session["out"])
        out.mkdir(mode=0o700, exist_ok=True)
        stem = Path(session["name"]).stem or "image"
        t0 = time.perf_counter()
        pixels = final_pixels(state)
        # The download is written like the upload (its container, bit depth, EXIF, ICC); the slider shows a PNG.
        written, path = write_like_input(session["input"], out / f"{stem}_restored", pixels, state.chosen is None,
                                         None, None)  # fmt: skip
        image = Path(path)
        shown = image if image.suffix.lower() == ".png" else save_image(out / f"{stem}_restored_preview.png", pixels)
        trace = finish_trace(state.trace, str(image), time.perf_counter() - t0)
        trace = trace.model_copy(update={"output_file": written})
        trace_path = write_text_atomic(out / f"{stem}.trace.json", trace.model_dump_json(indent=2))
        before = out / "input_preview.png"
        if not before.exists():
            save_image(before, np.load(state.input_npy))
        return image, shown, trace_path, before, trace


#: Side (px) of the 100% crop the strength preview restores: big enough to judge grain and edges, quick to redo.
PREVIEW_CROP = 256
#: Side (px) of the area an edit's effect is checked on (operators that read image statistics need some context).
EFFECT_AREA = 512


def detail_window(pixels: np.ndarray, side: int) -> tuple[slice, slice]:
    """The ``side`` x ``side`` window (smaller if the image is) with the most detail, from a 4x4 grid of positions.

    Detail is the mean absolute Laplacian of the grey image: where grain, blocks and blur show most.
    """
    import cv2

    h, w = pixels.shape[:2]
    sh, sw = min(side, h), min(side, w)
    grey = cv2.cvtColor(np.ascontiguousarray(pixels, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    energy = np.abs(cv2.Laplacian(grey, cv2.CV_32F))
    integral = cv2.integral(energy)
    best, at = -1.0, (0, 0)
    for y in np.linspace(0, h - sh, 4).astype(int):
        for x in np.linspace(0, w - sw, 4).astype(int):
            e = integral[y + sh, x + sw] - integral[y, x + sw] - integral[y + sh, x] + integral[y, x]
            if e > best:
                best, at = float(e), (int(y), int(x))
    return slice(at[0], at[0] + sh), slice(at[1], at[1] + sw)


def controlled(ctx: Context, strength: float, kind_strength: dict[str, float]) -> Context:
    """``ctx`` with the person's strength controls (overall and per kind, each 0-2) in its settings.

    The loaded backends are shared; only the settings differ (``Settings`` validates the ranges).
    """
    per_kind = {k: float(v) for k, v in kind_strength.items() if v is not None and float(v) != 1.0}
    settings = Settings.model_validate({**ctx.settings.model_dump(), "strength": float(strength),
                                        "kind_strength": per_kind})  # fmt: skip
    return dataclasses.replace(ctx, settings=settings)


def restore_area(ctx: Context, pixels: np.ndarray, record: dict) -> np.ndarray:
    """``pixels`` restored as a first attempt would be (the plan under the person's controls), without references."""
    from agent.policy import user_plan
    from reasoner.schema import DiagnosisRecord
    from restorer.plan import plan_from_diagnosis

    rec = DiagnosisRecord.model_validate(record)
    plan = user_plan(plan_from_diagnosis(rec), ctx.settings)
    if not plan.operations:
        return np.array(pixels, dtype=np.float32, copy=True)
    return ctx.restorer.restore(np.ascontiguousarray(pixels, dtype=np.float32), rec, [], plan).pixels


def ineffective_edits(ctx: Context, pixels: np.ndarray, proposed: dict, edited: dict) -> list[str]:
    """One line per kind whose edit leaves the restored image as it was (checked on the most detailed area).

    Some operators read only part of a kind's settings on a given image (the derain operator uses density as on/off;
    the low-light operator holds the exposure to the image's statistics): such an edit would be reported and change
    nothing, so the page refuses it with this reason and points to the kind's strength slider instead.
    """
    before = {d["kind"]: d for d in proposed.get("degradations", [])}
    after = {d["kind"]: d for d in edited.get("degradations", [])}
    changed = [k for k, d in after.items() if before.get(k) != d]
    if not changed:
        return []
    ys, xs = detail_window(pixels, EFFECT_AREA)
    area = np.ascontiguousarray(pixels[ys, xs], dtype=np.float32)
    base = restore_area(ctx, area, proposed)
    out = []
    for kind in changed:
        one = [after[kind] if d["kind"] == kind else d for d in proposed.get("degradations", [])]
        if kind not in before:
            one.append(after[kind])
        if np.array_equal(restore_area(ctx, area, dict(proposed, degradations=one)), base):
            name = ctx.backends.get("restorer", "this")
            out.append(f"{kind}: this change leaves the restored image as it was (the {name} restorer does not use "
                       f"it on this image); move the {kind} strength slider instead")  # fmt: skip
    return out


def example_images(fallback: Path) -> list[Path]:
    """The bundled example photos (``rnr examples``), written once into a cache folder; ``fallback`` if unwritable.

    The cache is ``$XDG_CACHE_HOME/rnr/examples`` (``~/.cache`` by default); it is written into a fresh folder and
    renamed into place, so two pages starting at once never see half-written files.
    """
    import os

    from rl.photos import EXAMPLES, write_examples

    names = [f"{photo}_{'-'.join(kinds) or 'clean'}.png" for photo, kinds in EXAMPLES]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnr" / "examples"
    for folder in (cache, Path(fallback)):
        if all((folder / n).is_file() for n in names):
            return [folder / n for n in names]
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".examples-", dir=folder.parent))
            write_examples(tmp)
            try:
                tmp.rename(folder)
            except OSError:  # another page wrote it first (or an old partial folder): use it if complete
                shutil.rmtree(tmp, ignore_errors=True)
            if all((folder / n).is_file() for n in names):
                return [folder / n for n in names]
        except OSError:
            continue
    return []
