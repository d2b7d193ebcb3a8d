"""Human-readable rendering of records for the terminal (rich)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from reasoner.schema import DiagnosisRecord

_LEVEL_STYLE = {"none": "dim", "mild": "yellow", "moderate": "dark_orange", "severe": "bold red"}


def _bar(severity: float, width: int = 20) -> Text:
    full = round(severity * width)
    return Text("█" * full + "·" * (width - full), style="cyan")


def _factors(entry) -> str:
    parts = []
    for k, v in entry.factors.model_dump().items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.3g}")
        elif isinstance(v, list):
            parts.append(f"{k}=({', '.join(f'{x:.2f}' for x in v)})")
        else:
            parts.append(f"{k}={v}")
    return " ".join(parts)


def record_panel(rec: DiagnosisRecord) -> Panel:
    """A panel with the degradations table, the chain of thought and the scene summary."""
    table = Table(expand=False, box=None, pad_edge=False)
    for col in ("kind", "level", "severity", "", "conf.", "factors"):
        table.add_column(col)
    for d in rec.detected():
        table.add_row(
            d.kind,
            Text(d.level, style=_LEVEL_STYLE[d.level]),
            f"{d.severity:.2f}",
            _bar(d.severity),
            f"{d.confidence:.2f}",
            _factors(d),
        )
    if not rec.detected():
        table.add_row("—", Text("none", style="green"), "0.00", _bar(0.0), "", "no significant degradation")
    steps = Text()
    for i, s in enumerate(rec.reasoning, 1):
        steps.append(f"{i:>2}. ", style="bold")
        steps.append(s.observation + "\n")
        steps.append("    → " + s.inference + "\n", style="italic")
    sem = rec.semantics
    flags = [name for name in ("faces", "text", "sky", "fine_texture") if getattr(sem, name)]
    scene = Text(f"{sem.description} Flags: {', '.join(flags) or 'none'}.", style="dim")
    title = f"{rec.image.path or rec.image.sha256[:12]}  {rec.image.width}×{rec.image.height}"
    ms = rec.provenance.elapsed_s * 1000
    subtitle = f"overall severity {rec.overall_severity:.2f} · {rec.provenance.backend} · {ms:.0f} ms"
    return Panel(Group(table, Text(""), steps, scene), title=title, subtitle=subtitle, title_align="left")


def render_record(console: Console, rec: DiagnosisRecord) -> None:
    """Print ``rec`` as a readable trace."""
    console.print(record_panel(rec))


def render_update(console: Console, node: str, update: dict) -> None:
    """One line (or panel) per graph node update, for ``rnr restore --trace``."""
    if node == "diagnose" and update.get("record") is not None:
        console.print(record_panel(update["record"]))
    elif node == "retrieve":
        refs = update.get("references", [])
        names = ", ".join(f"{r.id} ({r.score:.2f})" for r in refs) or "none above threshold"
        console.print(f"[bold]retrieve[/] references: {names}")
    elif node == "plan" and update.get("plan") is not None:
        p = update["plan"]
        ops = " -> ".join(f"{op.kind}×{op.strength:.2f}" for op in p.operations) or "nothing to do"
        console.print(f"[bold]plan[/] {ops}")
    elif node == "rescore" and update.get("attempts"):
        a = update["attempts"][-1]
        console.print(
            f"[bold]rescore[/] attempt {a.index}: [cyan]{a.verdict}[/] — {a.reason}; structure {a.structure:.2f}"
        )
    elif node == "decide" and update.get("decision"):
        console.print(f"[bold]decide[/] {update['decision']}: {update.get('decision_reason', '')}")
    elif node == "full_size" and update.get("full_size") is not None:
        f = update["full_size"]
        said = f"[cyan]{f.verdict}[/] — {f.reason}" if "decision" not in update else update["decision_reason"]
        console.print(f"[bold]full size[/] attempt {f.attempt} on the whole photo: {said}")


def summary_table(summary, out) -> Table:
    """Per-image results of a batch run."""
    from agent.outcome import UNSURE_DB, after_text, gain_text

    t = Table(title=f"restored into {out}")
    for col in ("image", "status", "decision", "est. change", "severity before", "after", "artefacts", "seconds"):
        t.add_column(col)
    for row in summary.done:
        gain, unc, arts = row.get("gain_db"), row.get("uncertainty_db"), row.get("artefacts") or []
        unsure = row.get("unsure", unc is not None and unc > UNSURE_DB) and row.get("status") == "ok"  # older rows
        change = gain_text(gain, unc, unsure, row.get("at_least_db"))
        missed = row.get("unchecked") or []  # what the checks could not see (rows before it have none)
        after = after_text(row.get("overall_after", 0), len(arts), row.get("appeared") or [], len(missed))
        flagged = Text("; ".join(arts), style="yellow")
        if missed:
            flagged.append(("; " if arts else "") + "; ".join(missed), style="dim")
        t.add_row(row["name"], row["status"], row.get("decision", ""), change, f"{row.get('overall_before', 0):.2f}",
                  after, flagged, f"{row['seconds']:.2f}")  # fmt: skip
    for row in summary.failed:
        t.add_row(row["name"], Text("failed", style="red"), "", "", "", "", "", f"{row['seconds']:.2f}")
    if summary.skipped:
        t.caption = f"{len(summary.skipped)} already finished (skipped)"
    return t
