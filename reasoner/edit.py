"""A person's edit of one diagnosis entry, kept consistent: severity and factors move together, or the edit is refused.

Operators read an entry's *factors* (its physical parameters); severity only says whether the kind is restored at
all (its level) and how the plan is worded. An edit of one without the other would be reported and have no effect,
so :func:`edit_degradation` recomputes the other through the severity map of :mod:`reasoner.kinds` (and its
inverse), gives a kind ticked present the default factors of the severity asked for, and refuses, with a reason a
person can act on, an edit that cannot change what is restored. Pure: no images, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ValidationError

from reasoner.kinds import KINDS, check_table
from reasoner.schema import Degradation, make_degradation
from reasoner.severity import LEVEL_THRESHOLDS, level_for

#: Severity a kind ticked present gets when the person gives none: "moderate".
DEFAULT_SEVERITY = 0.5
#: Confidence of a kind a person ticks present (they say it is there).
ADDED_CONFIDENCE = 1.0
#: Severity and the severity of edited factors may differ by this much and still count as agreeing.
AGREE = 0.01

#: The factors a kind ticked present starts from; the severity map's parameter is then set from its severity.
DEFAULT_FACTORS: Mapping[str, dict] = check_table(
    {
        "noise": {"sigma": 10.0, "model": "gaussian"},
        "blur": {"sigma": 1.5, "kernel": "gaussian"},
        "motion_blur": {"length": 9.0, "angle": 0.0},
        "haze": {"transmission": 0.6, "airlight": [0.9, 0.9, 0.9], "beta": 1.0},
        "low_light": {"exposure": 0.3, "gamma": 1.0},
        "jpeg": {"quality": 40},
        "rain": {"density": 0.03, "angle": 90.0},
        "low_resolution": {"scale": 2.0},
    },
    "reasoner.edit.DEFAULT_FACTORS",
)


class EditRefused(ValueError):
    """An edit that cannot take effect; the message (one line) says why and what would."""


def _factors_dict(factors: Mapping | BaseModel) -> dict:
    return factors.model_dump() if isinstance(factors, BaseModel) else dict(factors)


def _checked_factors(kind: str, factors: Mapping) -> dict:
    """``factors`` validated by the kind's factor model (bounds, names, choices); EditRefused naming the problem."""
    try:
        return KINDS[kind].factors.model_validate(dict(factors)).model_dump()
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "factors"
        raise EditRefused(f"{kind}: {where}: {err['msg']}") from None


def _number(value, what: str, kind: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise EditRefused(f"{kind}: {what} must be a number from 0 to 1, not {value!r}") from None
    if not 0.0 <= x <= 1.0:
        raise EditRefused(f"{kind}: {what} must be from 0 to 1, not {x:g}")
    return x


def edit_degradation(
    deg: Degradation | Mapping | None,
    *,
    kind: str | None = None,
    severity: float | None = None,
    factors: Mapping | BaseModel | None = None,
    present: bool | None = None,
    confidence: float | None = None,
) -> Degradation | None:
    """The entry after a person's edit, consistent with itself; None when the kind is (now) absent.

    Args:
        deg: The entry as diagnosed (a :data:`reasoner.schema.Degradation` or its JSON form), or None when the
            kind was not reported.
        kind: The kind, needed only when ``deg`` is None.
        severity: A new severity in [0, 1]: the factors follow (the severity map's parameter is set from it).
        factors: New factors (all of them, as the factor model names them): the severity follows.
        present: False drops the kind; True on an absent kind adds it, with ``severity`` (default
            :data:`DEFAULT_SEVERITY`) or ``factors`` and :data:`DEFAULT_FACTORS` for the rest.
        confidence: A new confidence in [0, 1] (it scales the operator's strength).

    Returns:
        The edited entry, ``deg`` itself (as a model) when nothing changes, or None when the kind is absent.

    Raises:
        EditRefused: The edit cannot take effect or is invalid (out of range, both severity and factors changed
            and disagreeing, a severity change too small to move its factor, an added kind below the mild level);
            one line naming the kind and what would work.

    >>> d = edit_degradation(None, kind="jpeg", present=True, severity=0.5)
    >>> d.factors.quality, d.level
    (55, 'moderate')
    >>> edit_degradation(d, factors={"quality": 10}).severity
    1.0

    """
    from reasoner.schema import DEGRADATION_MODELS

    if deg is not None and not isinstance(deg, BaseModel):
        deg = DEGRADATION_MODELS[deg["kind"]].model_validate(dict(deg))
    kind = deg.kind if deg is not None else kind
    if kind not in KINDS:
        raise EditRefused(f"{kind!r}: unknown kind; use one of {', '.join(KINDS)}")
    spec = KINDS[kind]
    if deg is None and not present:
        if severity is not None or factors is not None or confidence is not None:
            raise EditRefused(f"{kind}: not marked present, so its settings are not used; tick it present first")
        return None
    if present is False:
        return None
    sev = None if severity is None else _number(severity, "severity", kind)
    conf = None if confidence is None else _number(confidence, "confidence", kind)
    new = None if factors is None else _checked_factors(kind, _factors_dict(factors))
    mild = LEVEL_THRESHOLDS[0]

    if deg is None:  # ticked present
        if new is None:
            sev = DEFAULT_SEVERITY if sev is None else sev
            new = _checked_factors(kind, spec.factors_for(sev, DEFAULT_FACTORS[kind]))
        implied = spec.severity_of(new)
        if sev is not None and abs(implied - sev) > AGREE:
            raise EditRefused(f"{kind}: severity {sev:.2f} and its settings (severity {implied:.2f}) disagree; "
                              "give one of them")  # fmt: skip
        if implied < mild:
            raise EditRefused(f"{kind}: severity {implied:.2f} is below {mild:.2f} (mild), where nothing is "
                              f"restored; give it a severity of at least {mild:.2f}")  # fmt: skip
        return make_degradation(kind, implied, ADDED_CONFIDENCE if conf is None else conf, **new)

    old = deg.factors.model_dump()
    sev_changed = sev is not None and abs(sev - deg.severity) > 1e-9
    fac_changed = new is not None and new != old
    conf = deg.confidence if conf is None else conf
    if sev_changed and fac_changed:
        implied = spec.severity_of(new)
        if abs(implied - sev) > AGREE:
            raise EditRefused(f"{kind}: severity {sev:.2f} and the edited settings (severity {implied:.2f}) "
                              "disagree; change one of them, the other follows")  # fmt: skip
        return make_degradation(kind, implied, conf, **new)
    if fac_changed:
        return make_degradation(kind, spec.severity_of(new), conf, **new)
    if sev_changed:
        moved = _checked_factors(kind, spec.factors_for(sev, old))
        if moved == old and level_for(sev) == deg.level:
            step = _step(kind, deg.severity)
            raise EditRefused(f"{kind}: severity {deg.severity:.3f} -> {sev:.3f} leaves {spec.parameter} at "
                              f"{old[spec.parameter]:g}, so nothing would change; change it by at least "
                              f"{step:.2f}")  # fmt: skip
        # The stored severity is the one the new factors imply (jpeg quality is an integer): they agree exactly.
        implied = spec.severity_of(moved)
        return make_degradation(kind, implied if abs(implied - sev) <= AGREE else sev, conf, **moved)
    if conf != deg.confidence:
        return make_degradation(kind, deg.severity, conf, **old)
    return deg


def _step(kind: str, severity: float) -> float:
    """The least severity change that moves ``kind``'s parameter (from ``severity``), for a refusal to name."""
    spec = KINDS[kind]
    base = spec.factors_for(severity)[spec.parameter]
    for i in range(1, 101):
        for s in (severity + i / 1000, severity - i / 1000):
            if 0.0 <= s <= 1.0 and spec.factors_for(s)[spec.parameter] != base:
                return i / 1000
    return 0.01
