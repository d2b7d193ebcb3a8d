"""The server side of ``rnr ui``: backends loaded once, one checkpoint database, and what each run may serve.

No Gradio here (the page is :mod:`agent.ui.page`): what the page does with an image is tested without a browser.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import secrets
import sys
import threading
import time
import uuid
from pathlib import Path

from agent.backends import Backends
from agent.checkpoint import sqlite_checkpointer
from agent.graph import final_pixels, finish_trace
from agent.io import write_text_atomic
from agent.run import thread_state
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

    def export(self, session: dict) -> tuple[Path, Path, Path, Trace]:
        """Write the restored image, its trace (atomically) and the before-preview into the run's served folder."""
        state = thread_state(self.saver, session["thread"])
        out = Path(session["out"])
        out.mkdir(mode=0o700, exist_ok=True)
        stem = Path(session["name"]).stem or "image"
        t0 = time.perf_counter()
        image = save_image(out / f"{stem}_restored.png", final_pixels(state))
        trace = finish_trace(state.trace, str(image), time.perf_counter() - t0)
        trace_path = write_text_atomic(out / f"{stem}.trace.json", trace.model_dump_json(indent=2))
        before = out / "input_preview.png"
        if not before.exists():
            import numpy as np

            save_image(before, np.load(state.input_npy))
        return image, trace_path, before, trace
