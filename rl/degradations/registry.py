"""The registry of synthesis models, keyed by :data:`reasoner.kinds.KINDS`, and what works on any of them.

:data:`MODELS` maps each kind to its models by name; :data:`DEFAULT_MODEL` (``"rnr"``) is the one sampled unless a
caller names another (one name or several per kind; :func:`models_except` lists all but some, for leave-models-out
mixtures). Parameters identify their model by their class, so :func:`apply` and :func:`factors` need no kind
switch, and a new model needs no edit here beyond its registration.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from functools import reduce
from itertools import combinations

import numpy as np

from reasoner.kinds import KINDS, LOWPASS, check_table
from rl.degradations import blur, haze, jpeg, low_light, low_resolution, motion_blur, noise, rain
from rl.degradations.base import DegradationModel, as_image, check

#: The model :func:`sample_ops` uses for a kind unless told otherwise: the project's own protocol.
DEFAULT_MODEL = "rnr"


def check_models(models: Mapping[str, Mapping[str, DegradationModel]]) -> Mapping[str, Mapping[str, DegradationModel]]:
    """Return ``models`` if it has every kind, each with a :data:`DEFAULT_MODEL`, filed under its kind and name.

    Raises:
        ImportError: Naming what is missing or misfiled, so an incomplete registry fails at import.

    """
    check_table(models, "rl.degradations.MODELS")
    classes: dict[type, str] = {}
    for kind, by_name in models.items():
        if DEFAULT_MODEL not in by_name:
            raise ImportError(f"rl.degradations.MODELS[{kind!r}] has no {DEFAULT_MODEL!r} model")
        for name, m in by_name.items():
            if (m.kind, m.name) != (kind, name) or getattr(m.params, "kind", None) != kind:
                raise ImportError(f"rl.degradations.MODELS[{kind!r}][{name!r}] is filed under the wrong kind or name")
            if m.params in classes:
                raise ImportError(f"{m.params.__name__} belongs to {classes[m.params]} and {kind}.{name}")
            classes[m.params] = f"{kind}.{name}"
    return models


def _registry(*kinds) -> dict[str, dict[str, DegradationModel]]:
    out: dict[str, dict[str, DegradationModel]] = {k: {} for k in KINDS}
    for module in kinds:
        for m in module.MODELS:
            out.setdefault(m.kind, {})[m.name] = m
    return out


#: kind -> model name -> model, kinds in physical order: every model of every kind module.
MODELS: dict[str, dict[str, DegradationModel]] = check_models(
    _registry(haze, rain, motion_blur, blur, low_resolution, low_light, noise, jpeg)
)
#: Parameters of any registered model.
Params = reduce(operator.or_, (m.params for by_name in MODELS.values() for m in by_name.values()))
#: The default model's sampler and applier per kind.
SAMPLERS = {k: MODELS[k][DEFAULT_MODEL].sample for k in KINDS}
APPLIERS = {k: MODELS[k][DEFAULT_MODEL].apply for k in KINDS}
#: Low-pass kinds (:data:`reasoner.kinds.LOWPASS`): their spectra are near-indistinguishable attenuations of high
#: frequencies and real captures rarely stack them, so a sampled mixture holds at most one (else the ground truth
#: asks for an unresolvable split).
LOW_PASS_KINDS = LOWPASS


def model_of(params: object) -> DegradationModel:
    """The registered model whose parameter class ``params`` is (or derives from).

    >>> model_of(noise.NoiseParams(10.0)).name
    'rnr'

    Raises:
        ValueError: When ``params`` are no registered model's parameters.

    """
    by_class = {m.params: m for by_name in MODELS.values() for m in by_name.values()}
    for cls in type(params).__mro__:
        if cls in by_class:
            return by_class[cls]
    raise ValueError(f"not degradation parameters: {params!r}")


def models_except(*names: str) -> dict[str, tuple[str, ...]]:
    """Every kind's model names other than ``names``, for ``sample_ops(models=...)``: a leave-models-out mixture.

    >>> models_except("rnr")["jpeg"]
    ('444', 'double', 'cropped')
    """
    return {k: tuple(n for n in by_name if n not in names) for k, by_name in MODELS.items()}


def sample_ops(
    rng: np.random.Generator,
    kinds: Sequence[str] | None = None,
    n_kinds: int | tuple[int, int] = 1,
    models: Mapping[str, str | Sequence[str]] | None = None,
    *,
    shuffled: bool = False,
) -> list[Params]:
    """Sample parameters for distinct kinds, returned in physical order (or shuffled).

    Args:
        rng: the random generator.
        kinds: the kinds to sample, used as given (even several low-pass ones); ``None`` draws them.
        n_kinds: how many kinds to draw, or an inclusive ``(low, high)`` range; 0 is a clean sample. Draws are
            uniform over the sets holding at most one of :data:`LOW_PASS_KINDS`.
        models: per kind, the model name to sample (:data:`MODELS`) or several names, one drawn uniformly per
            call (see :func:`models_except`); :data:`DEFAULT_MODEL` for kinds not named.
        shuffled: return the ops in a random order (BSRGAN's shuffled degradations, drawn after the parameters);
            apply them with ``apply(img, ops, keep_order=True)``. The ground truth is the same either way: one
            entry per kind.

    >>> [op.kind for op in sample_ops(np.random.default_rng(0), ["jpeg", "haze"])]
    ['haze', 'jpeg']

    """
    models = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in (models or {}).items()}
    if kinds is None:
        lo, hi = (n_kinds, n_kinds) if isinstance(n_kinds, int | np.integer) else n_kinds
        check(0 <= lo <= hi <= len(KINDS) - len(LOW_PASS_KINDS) + 1, f"bad n_kinds {n_kinds!r}")
        n = int(rng.integers(lo, hi + 1))
        valid = [c for c in combinations(KINDS, n) if len(LOW_PASS_KINDS.intersection(c)) <= 1]
        kinds = valid[int(rng.integers(len(valid)))]
    check(all(k in KINDS for k in kinds), f"unknown kinds in {list(kinds)}; known: {list(KINDS)}")
    check(len(set(kinds)) == len(kinds), f"kinds must be distinct, got {list(kinds)}")
    for k, names in models.items():
        check(k in KINDS and len(names) > 0, f"models needs a known kind and at least one name, got {k!r}: {names}")
        for name in names:
            check(name in MODELS[k], f"unknown {k} model {name!r}; known: {sorted(MODELS[k])}")
    ordered_kinds = sorted(kinds, key=lambda k: KINDS[k].order)
    ops = []
    for k in ordered_kinds:
        names = models.get(k, (DEFAULT_MODEL,))
        name = names[0] if len(names) == 1 else names[int(rng.integers(len(names)))]  # one name: no draw
        ops.append(MODELS[k][name].sample(rng))
    if shuffled:
        ops = [ops[i] for i in rng.permutation(len(ops))]
    return ops


def ordered(ops: Sequence[Params]) -> list[Params]:
    """``ops`` in physical order, checked to be registered parameters, at most one per kind."""
    try:
        for op in ops:
            model_of(op)
    except ValueError:
        raise ValueError(f"not degradation parameters: {list(ops)}") from None
    kinds = [op.kind for op in ops]
    check(len(set(kinds)) == len(kinds), f"at most one op per kind (a record has one entry per kind): {kinds}")
    return sorted(ops, key=lambda op: KINDS[op.kind].order)


def apply(img: np.ndarray, ops: Sequence[Params], *, keep_order: bool = False) -> np.ndarray:
    """Apply ``ops`` (at most one per kind) in physical order (:data:`reasoner.kinds.KINDS`); returns a new image.

    ``img`` is ``float32 HxWx3 RGB in [0, 1]`` (other float dtypes are converted) and is not modified. With
    ``keep_order`` the ops are applied as listed (a shuffled mixture, a literature protocol's order).
    """
    out = as_image(img).copy()
    sequence = ordered(ops)
    for op in ops if keep_order else sequence:
        out = model_of(op).apply(out, op)
    return out


def factors(params: Params, shape: tuple[int, ...]) -> tuple[float, dict]:
    """Return the severity (via :mod:`reasoner.kinds`) and the schema's factors of ``params`` for ``shape``.

    ``shape`` is ``(H, W, ...)``. Haze transmission and rain coverage are means of the layers the appliers use,
    which are cached, so calling this right after applying does not render them again.

    >>> factors(jpeg.JpegParams(55), (8, 8))
    (0.5, {'quality': 55})
    """
    fac = model_of(params).factors(params, shape)
    return KINDS[params.kind].severity_of(fac), fac


def describe(params: Params, fac: dict) -> str:
    """The ground-truth observation of ``params`` whose factors are ``fac`` (see :func:`factors`)."""
    return model_of(params).describe(params, fac)
