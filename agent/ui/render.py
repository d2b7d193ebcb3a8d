"""What ``rnr ui`` shows, as HTML fragments, and the diagnosis table a person edits.

Pure functions of records, references and traces (no Gradio), so they are tested without a browser. Every string
that comes from a record, a file name or an error is HTML-escaped: they are user data.
"""

from __future__ import annotations

import json
from html import escape

from reasoner.edit import DEFAULT_FACTORS
from reasoner.kinds import check_table
from reasoner.schema import KINDS, DiagnosisRecord, combined_severity
from reasoner.severity import level_for

#: Columns of the editable diagnosis table.
EDIT_HEADERS = ["problem", "present", "severity (0-1)", "settings (change these or the severity)"]

#: The settings a kind ticked present starts from (its severity map's parameter then follows its severity).
EXAMPLE_FACTORS = DEFAULT_FACTORS

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
.rnr-table{border-collapse:collapse;width:100%;font-size:.9em;display:block;overflow-x:auto}
.rnr-table th,.rnr-table td{border-bottom:1px solid #e5e7eb;padding:.25em .5em;text-align:left;vertical-align:top}
.rnr-steps li{margin-bottom:.35em}
.rnr-note{color:#6b7280 !important;font-size:.9em}
.rnr-say{font-size:1.15em !important;font-weight:600;margin:.2em 0 !important}
#rnr-head h2{margin:0}#rnr-head p{margin:.2em 0 .4em}
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
            f"<tr><td>{a.index}</td><td>{'input' if a.source is None else f'attempt {a.source}'}"
            f"{f' ({esc(a.rule)})' if a.rule else ''}</td>"
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


#: Each kind as the review table names it: plain words first, the vocabulary name after (what traces say).
KIND_LABELS: dict[str, str] = check_table(
    {"noise": "noise (grain)", "blur": "blur (out of focus)", "motion_blur": "motion blur (shake)",
     "haze": "haze (washed out)", "low_light": "too dark (low light)", "jpeg": "JPEG blocking",
     "rain": "rain streaks", "low_resolution": "low resolution"},
    "agent.ui.render.KIND_LABELS",
)  # fmt: skip
_BY_LABEL = {v: k for k, v in KIND_LABELS.items()}


def number(x: float) -> str:
    """A factor as a person reads it: at most three significant digits, no exponent for ordinary values."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int) or float(x).is_integer():
        return str(int(x))
    return f"{x:.3g}" if abs(x) >= 1e-3 else f"{x:.2e}"


def factors_text(factors: dict) -> str:
    """Factors as one readable, editable line: ``sigma=16.2, model=gaussian`` (lists as space-separated numbers)."""

    def text(v) -> str:
        return " ".join(number(x) for x in v) if isinstance(v, list) else number(v)

    return ", ".join(f"{k}={text(v)}" for k, v in factors.items())


def parse_factors(text, kind: str) -> dict:
    """The factors written in a table cell: ``name=value, ...`` (numbers, words, space-separated lists) or JSON.

    Raises:
        ValueError: one line naming the kind and showing the form expected.

    """
    if isinstance(text, dict):
        return text
    text = str(text or "").strip()
    example = factors_text(EXAMPLE_FACTORS[kind])
    if text.startswith("{"):
        try:
            out = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{kind}: settings are not valid JSON ({e.msg}); write them as {example}") from None
        if not isinstance(out, dict):
            raise ValueError(f"{kind}: settings must be name=value pairs, e.g. {example}")
        return out
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise ValueError(f"{kind}: cannot read {part!r} in the settings; write them as {example}")
        words = value.split()
        nums = [_num(w) for w in words]
        if len(words) > 1:
            if any(isinstance(n, str) for n in nums):
                raise ValueError(f"{kind}: {name.strip()}={value.strip()!r} is not a list of numbers")
            out[name.strip()] = nums
        else:
            out[name.strip()] = nums[0]
    return out


def _num(word: str):
    try:
        f = float(word)
    except ValueError:
        return word
    return int(f) if f.is_integer() and "." not in word and "e" not in word.lower() else f


def _row(kind: str, d: dict | None) -> list:
    if d is None:
        return [KIND_LABELS[kind], False, 0.0, ""]
    return [KIND_LABELS[kind], True, round(d["severity"], 2), factors_text(d["factors"])]


def edit_rows(record: dict) -> list[list]:
    """The editable table for a record (JSON form): every kind of the vocabulary, reported ones ticked.

    Columns :data:`EDIT_HEADERS`: the kind in plain words, present, severity (two decimals) and its settings (the
    physical factors, as ``name=value``); a kind not reported has no settings until it is ticked.
    """
    have = {d["kind"]: d for d in record.get("degradations", [])}
    return [_row(kind, have.get(kind)) for kind in KINDS]


def _truthy(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes", "y", "x", "on")
    return bool(v)


def table_rows(rows) -> list[list]:
    """The rows of the table as Gradio hands them: a list of lists, a pandas DataFrame, or its raw JSON value."""
    if isinstance(rows, dict):  # the component's value unprocessed: {"headers": [...], "data": [[...]], ...}
        rows = rows.get("data", [])
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # a pandas DataFrame
        rows = rows.values.tolist()
    return [list(r) for r in rows]


def apply_edits(record: dict, rows, measured=None) -> dict:
    """The record (JSON form) after the edits in the table, each kind kept consistent by :func:`edit_degradation`.

    A changed severity moves the kind's settings (factors) and changed settings move its severity, a kind ticked
    present gets the reasoner's reading of it as present (``measured(kind)``: ``MeasureBackend.forced_entry``, the
    settings read off the photo) or, without one, default settings, at the severity typed (its own, or 0.5 for the
    defaults, when left at 0), and the overall severity follows. An edit that cannot take effect or cannot be read
    raises ``ValueError``: one line per refused kind, joined by "; ".
    """
    from reasoner.edit import EditRefused, edit_degradation

    original = {d["kind"]: d for d in record.get("degradations", [])}
    degradations, refused, seen = [], [], set()
    for row in table_rows(rows):
        if len(row) != len(EDIT_HEADERS):
            raise ValueError(f"row {row!r}: expected {len(EDIT_HEADERS)} columns ({', '.join(EDIT_HEADERS)})")
        label, present, severity, settings = row
        kind = _BY_LABEL.get(str(label).strip(), str(label).strip())
        if kind not in KINDS:
            raise ValueError(f"row {label!r}: unknown kind; use one of {', '.join(KINDS)}")
        if kind in seen:
            raise ValueError(f"row {label!r}: listed twice")
        seen.add(kind)
        old = original.get(kind)
        shown = _row(kind, old)
        try:
            sev = float(severity) if str(severity).strip() not in ("", "None") else None
        except (TypeError, ValueError):
            refused.append(f"{kind}: severity must be a number from 0 to 1, not {severity!r}")
            continue
        try:
            sev_edit = None if sev is None or sev == shown[2] else sev
            if old is None and sev == 0.0:
                sev_edit = None  # ticked and left at 0: the default severity
            fac_edit = None if str(settings or "").strip() == shown[3] else parse_factors(settings, kind)
            base = old
            if old is None and _truthy(present) and measured is not None:
                base = measured(kind)  # ticked: the photo's own reading of the kind, where the reasoner has one
            new = edit_degradation(base, kind=kind, present=_truthy(present), severity=sev_edit, factors=fac_edit)
        except (EditRefused, ValueError) as e:
            refused.append(str(e))
            continue
        if new is not None:
            degradations.append(old if new is old or new.model_dump(mode="json") == old else
                                new.model_dump(mode="json"))  # fmt: skip
    if refused:
        raise ValueError("; ".join(refused))
    degradations.sort(key=lambda d: KINDS.index(d["kind"]))
    out = dict(record, degradations=degradations)
    if degradations != sorted(original.values(), key=lambda d: KINDS.index(d["kind"])):
        out["overall_severity"] = round(combined_severity(_Sev(d["severity"]) for d in degradations), 6)
    return out


class _Sev:
    """Just enough of a degradation for :func:`combined_severity`."""

    def __init__(self, severity: float) -> None:
        self.severity = severity
