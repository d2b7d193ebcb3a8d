"""What ``rnr ui`` shows, as HTML fragments, and the diagnosis table a person edits.

Pure functions of records, references and traces (no Gradio), so they are tested without a browser. Every string
that comes from a record, a file name or an error is HTML-escaped: they are user data.
"""

from __future__ import annotations

import json
from html import escape

from reasoner.kinds import check_table
from reasoner.schema import KINDS, DiagnosisRecord, combined_severity
from reasoner.severity import level_for

#: Columns of the editable diagnosis table.
EDIT_HEADERS = ["kind", "present", "severity", "confidence", "factors (JSON)"]

#: Factors offered for a kind the reasoner did not report, so ticking it on gives a valid starting point.
EXAMPLE_FACTORS: dict[str, dict] = check_table(
    {
        "noise": {"sigma": 10.0, "model": "gaussian"},
        "blur": {"sigma": 1.5, "kernel": "gaussian"},
        "motion_blur": {"length": 9.0, "angle": 0.0},
        "haze": {"transmission": 0.6, "airlight": [0.9, 0.9, 0.9], "beta": 1.0},
        "low_light": {"exposure": 0.3, "gamma": 1.2},
        "jpeg": {"quality": 40},
        "rain": {"density": 0.03, "angle": 90.0},
        "low_resolution": {"scale": 2.0},
    },
    "agent.ui.render.EXAMPLE_FACTORS",
)

_LEVEL_COLOURS = {"none": "#9ca3af", "mild": "#eab308", "moderate": "#f97316", "severe": "#dc2626"}


def esc(x) -> str:
    """``x`` as HTML text (quotes included, for attributes)."""
    return escape(str(x), quote=True)


def bar(value: float, colour: str | None = None, label: str | None = None) -> str:
    """A horizontal bar for a value in [0, 1], coloured by severity level unless ``colour`` is given."""
    v = min(max(float(value), 0.0), 1.0)
    colour = colour or _LEVEL_COLOURS[level_for(v)]
    text = esc(label if label is not None else f"{v:.2f}")
    return (
        f'<div class="rnr-barw" title="{text}"><div class="rnr-bar"><div style="width:{v * 100:.1f}%;'
        f'background:{colour}"></div></div><span>{text}</span></div>'
    )


STYLE = """
.rnr-barw{display:flex;align-items:center;gap:.5em}
.rnr-bar{flex:1;height:.9em;min-width:6em;background:#e5e7eb;border-radius:3px;overflow:hidden}
.rnr-bar>div{height:100%}
.rnr-barw>span{font-size:.85em;min-width:3em;font-variant-numeric:tabular-nums}
.rnr-table{border-collapse:collapse;width:100%;font-size:.9em}
.rnr-table th,.rnr-table td{border-bottom:1px solid #e5e7eb;padding:.25em .5em;text-align:left;vertical-align:top}
.rnr-steps li{margin-bottom:.35em}
.rnr-note{color:#6b7280 !important;font-size:.9em}
.rnr-error{color:#b91c1c !important;font-weight:600}
"""


def steps_html(record: DiagnosisRecord) -> str:
    """The reasoner's chain of thought: observation, the evidence it cites, what it implies."""
    if not record.reasoning:
        return '<p class="rnr-note">The reasoner gave no reasoning steps.</p>'
    items = []
    for s in record.reasoning:
        ev = ", ".join(f"{esc(k)}={v:g}" for k, v in s.evidence.items())
        kinds = f" <em>[{esc(', '.join(s.kinds))}]</em>" if s.kinds else ""
        evidence = f'<br><span class="rnr-note">evidence: {ev}</span>' if ev else ""
        items.append(f"<li>{esc(s.observation)}{evidence}<br>&rArr; {esc(s.inference)}{kinds}</li>")
    return f'<ol class="rnr-steps" id="rnr-steps-list">{"".join(items)}</ol>'


def record_html(record: DiagnosisRecord, title: str = "Diagnosis") -> str:
    """The record as a table, one row per reported kind with a severity bar, then the overall severity."""
    rows = []
    for d in sorted(record.degradations, key=lambda d: KINDS.index(d.kind)):
        factors = ", ".join(f"{esc(k)}={esc(v)}" for k, v in d.factors.model_dump().items())
        rows.append(
            f"<tr><td>{esc(d.kind)}</td><td>{esc(d.level)}</td><td>{bar(d.severity)}</td>"
            f"<td>{d.confidence:.2f}</td><td>{factors}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="5" class="rnr-note">no degradation reported</td></tr>')
    sem = record.semantics
    flags = ", ".join(n for n in ("faces", "text", "sky", "fine_texture") if getattr(sem, n)) or "none"
    return (
        f"<h4>{esc(title)}</h4>"
        '<table class="rnr-table" id="rnr-record-table"><tr><th>kind</th><th>level</th><th>severity</th>'
        f"<th>confidence</th><th>factors</th></tr>{''.join(rows)}</table>"
        f"<p>overall severity {bar(record.overall_severity)}</p>"
        f'<p class="rnr-note">scene: {esc(sem.description)} (content flags: {esc(flags)}); '
        f"backend {esc(record.provenance.backend)}, {record.provenance.elapsed_s:.2f} s</p>"
    )


def references_html(references) -> str:
    """Retrieved references with their similarity scores (none without a library or above the threshold)."""
    if not references:
        return '<p class="rnr-note">No references (no library selected, or none above its relevance threshold).</p>'
    rows = "".join(
        f"<tr><td>{i}</td><td>{esc(r.path or r.id)}</td><td>{esc(r.category or '')}</td>"
        f"<td>{bar(r.score, '#2563eb', f'{r.score:.3f}')}</td></tr>"
        for i, r in enumerate(references, 1)
    )
    return (
        '<table class="rnr-table" id="rnr-refs-table"><tr><th>#</th><th>reference</th><th>category</th>'
        f"<th>score</th></tr>{rows}</table>"
    )


def attempts_html(plan, attempts) -> str:
    """The current plan and every attempt with the scorer's verdict."""
    parts = []
    if plan is not None:
        ops = ", ".join(f"{esc(op.kind)} (strength {op.strength:g})" for op in plan.operations) or "nothing to do"
        parts.append(f"<p><b>Plan:</b> {ops}<br><span class='rnr-note'>{esc(plan.instruction)}</span></p>")
    if attempts:
        rows = "".join(
            f"<tr><td>{a.index}</td><td>{'input' if a.source is None else f'attempt {a.source}'}</td>"
            f"<td>{esc(a.verdict)}</td><td>{bar(a.overall_after)}</td><td>{a.structure:.3f}</td>"
            f"<td>{esc(a.reason)}</td></tr>"
            for a in attempts
        )
        parts.append(
            '<table class="rnr-table" id="rnr-attempts-table"><tr><th>#</th><th>from</th><th>verdict</th>'
            f"<th>overall after</th><th>structure</th><th>why</th></tr>{rows}</table>"
        )
    return "".join(parts)


def severity_compare_html(trace) -> str:
    """Per-kind severity before and after (kinds non-zero anywhere), the overall, and the decision.

    When a person edited the diagnosis, the reasoner's proposal gets its own column beside theirs: "before" is then
    the person's judgement, which is what the plan and the do-no-harm check used.
    """
    proposed = trace.review.record_proposed if trace.review is not None and trace.review.edited else None
    cols = [("reasoner" if proposed else "before", proposed.severities() if proposed else trace.severity_before)]
    overall = [proposed.overall_severity if proposed else trace.overall_before]
    if proposed:
        cols.append(("edited (before)", trace.severity_before))
        overall.append(trace.overall_before)
    cols.append(("after", trace.severity_after))
    overall.append(trace.overall_after)
    kinds = [k for k in KINDS if any(sev.get(k, 0) > 0 for _, sev in cols)]
    head = "".join(f"<th>{esc(name)}</th>" for name, _ in cols)
    rows = "".join(
        f"<tr><td>{esc(k)}</td>" + "".join(f"<td>{bar(sev.get(k, 0.0))}</td>" for _, sev in cols) + "</tr>"
        for k in kinds
    )
    rows += "<tr><td><b>overall</b></td>" + "".join(f"<td>{bar(v)}</td>" for v in overall) + "</tr>"
    review = ""
    if proposed:
        review = "<p><b>Diagnosis edited by a person:</b> " + "; ".join(esc(c) for c in trace.review.changes) + "</p>"
    return (
        f"<p><b>Decision:</b> {esc(trace.decision)} &mdash; {esc(trace.decision_reason)}</p>{review}"
        f'<table class="rnr-table" id="rnr-severity-table"><tr><th>kind</th>{head}</tr>{rows}</table>'
    )


def _shown(d: dict) -> list:
    """A reported degradation (JSON form) as its row in the editable table."""
    return [d["kind"], True, round(d["severity"], 3), round(d["confidence"], 3), d["factors"]]


def edit_rows(record: dict) -> list[list]:
    """The editable table for a record (JSON form): every kind of the vocabulary, reported ones ticked."""
    have = {d["kind"]: d for d in record.get("degradations", [])}
    rows = []
    for kind in KINDS:
        d = have.get(kind)
        if d is None:
            rows.append([kind, False, 0.0, 0.5, json.dumps(EXAMPLE_FACTORS[kind])])
        else:
            rows.append([*_shown(d)[:4], json.dumps(d["factors"])])
    return rows


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "y", "x", "on")
    return bool(v)


def apply_edits(record: dict, rows) -> dict:
    """The record (JSON form) with its degradations replaced by the ticked rows of the edited table.

    Levels follow from severities and the overall severity from all of them, as the schema defines; a row a person
    cannot have meant (unknown kind, unreadable number or factors) raises ``ValueError`` naming the row. Bounds
    and factor fields are left to the schema, which the review node applies.
    """
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # a pandas DataFrame from Gradio
        rows = rows.values.tolist()
    original = {d["kind"]: d for d in record.get("degradations", [])}
    degradations = []
    seen = set()
    for row in rows:
        if len(row) != len(EDIT_HEADERS):
            raise ValueError(f"row {row!r}: expected {len(EDIT_HEADERS)} columns ({', '.join(EDIT_HEADERS)})")
        kind, present, severity, confidence, factors = row
        kind = str(kind).strip()
        if kind not in KINDS:
            raise ValueError(f"row {kind!r}: unknown kind; use one of {', '.join(KINDS)}")
        if kind in seen:
            raise ValueError(f"row {kind!r}: listed twice")
        seen.add(kind)
        if not _truthy(present):
            continue
        try:
            sev, conf = float(severity), float(confidence)
        except (TypeError, ValueError):
            raise ValueError(f"row {kind!r}: severity and confidence must be numbers in [0, 1]") from None
        try:
            fac = json.loads(factors) if isinstance(factors, str) else factors
        except json.JSONDecodeError as e:
            raise ValueError(f"row {kind!r}: factors are not valid JSON ({e.msg}), e.g. "
                             f"{json.dumps(EXAMPLE_FACTORS[kind])}") from None  # fmt: skip
        if not isinstance(fac, dict):
            raise ValueError(f"row {kind!r}: factors must be a JSON object, e.g. {json.dumps(EXAMPLE_FACTORS[kind])}")
        old = original.get(kind)
        if old is not None and [kind, True, sev, conf, fac] == _shown(old):
            degradations.append(old)  # untouched: keep the reasoner's unrounded numbers
            continue
        level = level_for(sev) if 0.0 <= sev <= 1.0 else "severe"  # out of range: the schema names the bound
        degradations.append({"kind": kind, "severity": sev, "level": level, "confidence": conf, "factors": fac})
    out = dict(record, degradations=degradations)
    unchanged = degradations == sorted(original.values(), key=lambda d: KINDS.index(d["kind"]))
    in_range = all(0.0 <= d["severity"] <= 1.0 for d in degradations)
    if in_range and not unchanged:
        out["overall_severity"] = round(combined_severity(_Sev(d["severity"]) for d in degradations), 6)
    return out


class _Sev:
    """Just enough of a degradation for :func:`combined_severity`."""

    def __init__(self, severity: float) -> None:
        self.severity = severity
