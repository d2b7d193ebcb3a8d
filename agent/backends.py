"""Which backends a run uses, as values: one :class:`BackendSpec` per role, a :class:`Backends` per run.

The command line, the UI, the batch and Ray engines, the workers and the Python API all describe their choice this
way and load it with :meth:`Backends.load`, which builds the :class:`agent.state.Context` the graph runs with. A
``Backends`` pickles, so pool workers and Ray actors receive the choice and load the models themselves, once.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.state import Context, Library, Settings
from reasoner.common import one_line
from reasoner.registry import Reasoner
from restorer.base import Restorer

Role = Literal["reasoner", "restorer"]
#: A model id each role's "needs a model" message offers as an example.
MODEL_EXAMPLES: dict[str, str] = {"reasoner": "Qwen/Qwen3-VL-2B-Instruct", "scorer": "Qwen/Qwen3-VL-2B-Instruct",
                                  "restorer": "Qwen/Qwen-Image-Edit-2509"}  # fmt: skip


@dataclass(frozen=True)
class BackendSpec:
    """One backend: a registry name (or ``"pkg.module:Class"``), a model id or folder, and keyword options.

    ``role`` says which registry the name is looked up in: ``"reasoner"`` (reasoners and scorers) or
    ``"restorer"``.

    >>> BackendSpec("restorer", "qwen-image-edit", "Qwen/Qwen-Image-Edit-2509", {"steps": 8}).kwargs()
    {'model': 'Qwen/Qwen-Image-Edit-2509', 'steps': 8}
    """

    role: Role
    name: str
    model: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments the backend's class is built with."""
        return {**({"model": self.model} if self.model else {}), **self.options}

    def resolve(self) -> type:
        """The backend's class, without building it (a typo fails here, before any model loads)."""
        if self.role == "reasoner":
            from reasoner.registry import resolve

            return resolve(self.name)
        from reasoner.registry import resolve_backend
        from restorer.base import RESTORERS

        return resolve_backend(self.name, RESTORERS, "restorer")

    def load(self) -> Reasoner | Restorer:
        """Build the backend (models load here).

        Raises:
            ValueError: An unknown name, or a class that cannot be loaded (one line listing the valid names).
            ImportError: The backend needs an extra that is not installed (the message names it).

        """
        return self.resolve()(**self.kwargs())

    def needs_model(self) -> bool:
        """Whether the backend takes a model that was not given (:func:`model_default`): rnr never picks one."""
        return not self.model and "model" not in self.options and model_default(self.name, self.role) is not None


@dataclass(frozen=True)
class Backends:
    """The backends of a run: reasoner, scorer (re-scores attempts), restorer, and an optional reference library."""

    reasoner: BackendSpec = BackendSpec("reasoner", "measure")
    scorer: BackendSpec = BackendSpec("reasoner", "measure")
    restorer: BackendSpec = BackendSpec("restorer", "classical")
    index: str | None = None

    @classmethod
    def of(
        cls,
        reasoner: str = "measure",
        scorer: str = "measure",
        restorer: str = "classical",
        index: str | Path | None = None,
        *,
        reasoner_model: str | None = None,
        scorer_model: str | None = None,
        restorer_model: str | None = None,
        restorer_options: Mapping[str, Any] | None = None,
    ) -> Backends:
        """The choice as the command line spells it (``--reasoner``, ``--reasoner-model``, ...).

        >>> Backends.of(restorer_options={"steps": 8}).restorer.options
        {'steps': 8}
        """
        return cls(
            BackendSpec("reasoner", reasoner, reasoner_model or None),
            BackendSpec("reasoner", scorer, scorer_model or None),
            BackendSpec("restorer", restorer, restorer_model or None, dict(restorer_options or {})),
            str(index) if index is not None else None,
        )

    def specs(self) -> dict[str, BackendSpec]:
        """The three model backends by role name (``reasoner``, ``scorer``, ``restorer``)."""
        return {"reasoner": self.reasoner, "scorer": self.scorer, "restorer": self.restorer}

    def tags(self, embedder: str) -> dict[str, str]:
        """What traces record under ``backends`` (and thread ids hash): names, the embedder, models, options.

        >>> Backends.of(restorer_model="m", restorer_options={"steps": 8}).tags("none")
        {'reasoner': 'measure', 'scorer': 'measure', 'restorer': 'classical', 'embedder': 'none', \
'restorer_model': 'm', 'restorer_options': '{"steps": 8}'}
        """
        specs = self.specs()
        tags = {role: spec.name for role, spec in specs.items()} | {"embedder": embedder}
        tags |= {f"{role}_model": spec.model for role, spec in specs.items() if spec.model}
        tags |= {f"{role}_options": json.dumps(dict(spec.options), sort_keys=True)
                 for role, spec in specs.items() if spec.options}  # fmt: skip
        return tags

    def key(self) -> str:
        """A string that identifies the choice (backends loaded once are cached under it)."""
        return json.dumps(asdict(self), sort_keys=True, default=str)

    def check(self) -> None:
        """Resolve every backend name without loading a model, so a typo fails before any work.

        Raises:
            ValueError, ImportError: As :meth:`BackendSpec.load`.

        """
        for spec in self.specs().values():
            spec.resolve()
        self.check_models()

    def check_models(self) -> None:
        """Refuse a model backend given no model (one line naming the keyword to pass), before anything loads.

        Raises:
            ValueError: A backend that needs a model id or folder and was given none.

        """
        for role, spec in self.specs().items():
            if spec.needs_model():
                raise ValueError(f"{role} {spec.name!r} needs a model: pass {role}_model= (rnr: --{role}-model) with "
                                 f"a hub id (e.g. {MODEL_EXAMPLES[spec.role]}) or a local folder; rnr never picks one "
                                 "for you")  # fmt: skip

    def load(self, settings: Settings | None = None, *, max_pixels: int | None = None) -> Context:
        """Load the backends once (a batch worker keeps them for all its images) into a run context.

        A scorer identical to the reasoner is the same object (one model loaded once). A damaged library costs the
        run its references, not its images: the context then has no library and the reason is in its embedder tag.
        """
        self.check_models()
        rsn = self.reasoner.load()
        scr = rsn if self.scorer == self.reasoner else self.scorer.load()
        rst = self.restorer.load()
        library, embedder = (None, "none") if self.index is None else open_library(self.index)
        return Context(rsn, scr, rst, library, settings or Settings(), self.tags(embedder), max_pixels=max_pixels)


def model_default(name: str, role: str) -> str | None:
    """Whether backend ``name`` needs a model: ``"required"``, ``"a default model"`` (an id rnr will not use), or None.

    None when its class takes no ``model`` or defaults it to None (the backend asks its server which model it
    serves). The class's source is read, not imported: the answer comes at once even when the backend imports torch.
    """
    import importlib.util

    from reasoner.registry import REASONERS

    if role == "restorer":
        from restorer.base import RESTORERS as registry
    else:
        registry = REASONERS
    module, _, cls = registry.get(name, name).partition(":")
    try:
        spec = importlib.util.find_spec(module)
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (ImportError, ValueError, AttributeError, TypeError, OSError, SyntaxError):
        return None  # a bad name or missing extra: reported in its own words when the backend loads
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    return _arg_default(item.args, "model")
    return None


def _arg_default(args: ast.arguments, name: str) -> str | None:
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(positional, defaults, strict=True), *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    for arg, default in pairs:
        if arg.arg == name:
            if default is None:
                return "required"
            if isinstance(default, ast.Constant) and default.value is None:
                return None
            return "a default model"
    return None


def make_context(
    reasoner: str = "measure",
    scorer: str = "measure",
    restorer: str = "classical",
    index: str | Path | None = None,
    settings: Settings | None = None,
    reasoner_model: str | None = None,
    scorer_model: str | None = None,
    restorer_model: str | None = None,
    restorer_options: dict | None = None,
) -> Context:
    """Load the named backends into a run context: ``Backends.of(...).load(settings)``.

    ``reasoner_model`` / ``scorer_model`` are the model id or folder of model-backed reasoners (``qwen3vl``, ``vllm``,
    ``vllm-server``); one model serving as both is loaded once. ``restorer_model`` is the pipeline id or folder of
    a model restorer (``qwen-image-edit``, ``diffusion``); ``restorer_options`` are further keyword arguments of the
    restorer (``steps``, ``seed``, ``resolution``, ``cpu_offload``, ...).
    """
    backends = Backends.of(reasoner, scorer, restorer, index, reasoner_model=reasoner_model,
                           scorer_model=scorer_model, restorer_model=restorer_model,
                           restorer_options=restorer_options)  # fmt: skip
    return backends.load(settings)


def open_library(index: str | Path) -> tuple[Library | None, str]:
    """The reference library at ``index`` and its embedder tag; a damaged one is ``(None, "none (...)")``.

    References only guide a restoration, so a library that cannot be used costs the run its references, not its
    images: the reason is recorded in every trace's backends (and printed once by the CLI).
    """
    from retrieval.library import LibraryError, ReferenceLibrary

    try:
        library = ReferenceLibrary.open(index)
    except (LibraryError, ImportError) as e:
        return None, f"none (library unusable: {one_line(e)[:300]})"
    return library, f"{library.embedder.name} {library.embedder.version}"
