"""The batch report: one self-contained HTML page summarising a run folder, readable offline.

The page holds a run summary, before/after thumbnails, per-kind severity and overall-severity charts (inline
SVG), failures with their errors and per-image reasoning, plans and attempts. No network resources are
referenced: thumbnails are embedded as base64 JPEG (``embed=True``) or linked by relative path. All text from
traces and the manifest is HTML-escaped: file names and error messages are user data. What the page shows is read
by :func:`agent.report.load_run`; ``rnr report`` (:mod:`agent.cli.report`) and ``rnr restore`` write it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import statistics
from collections import Counter
from collections.abc import Callable
from html import escape
from pathlib import Path
from urllib.parse import quote

from agent.outcome import outcome
from agent.report import Entry, ReportError, Run, load_run

__all__ = ["REPORT_NAME", "ReportError", "kind_chart", "render_html", "severity_histogram", "write_report"]

REPORT_NAME = "report.html"
#: Above this many images, thumbnails are capped at this size (px) so the page stays light.
LARGE_RUN, LARGE_THUMB = 300, 160


def _e(x) -> str:
    return escape(str(x), quote=True)


def _thumb_uri(path: Path, size: int) -> str | None:
    """A base64 JPEG data URI of ``path`` fitted in ``size``×``size``, or None when it cannot be decoded."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.draft("RGB", (size * 2, size * 2))  # JPEG: decode at reduced scale, fast for large photos
            im = ImageOps.exif_transpose(im)
            if im.mode not in ("RGB", "L", "RGBA", "LA", "P"):
                raise ValueError(im.mode)  # 16-bit and float modes: let the project's loader scale them
            im = im.convert("RGBA").convert("RGB") if im.mode in ("RGBA", "LA", "P") else im.convert("RGB")
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
    except (OSError, ValueError, Image.DecompressionBombError):
        try:
            from reasoner.imageio import load_image, to_uint8

            im = Image.fromarray(to_uint8(load_image(path, max_pixels=64_000_000).pixels))
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
        except (OSError, ValueError):
            return None
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=82, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(path: Path | None, label: str, out_dir: Path, embed: bool, size: int, missing: str) -> str:
    if path is not None:
        if embed:
            src = _thumb_uri(path, size)
        else:
            src = quote(Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix())
        if src:
            return f'<img src="{_e(src)}" alt="{_e(label)}" loading="lazy" decoding="async">'
        missing = "cannot be decoded"
    return f'<div class="ph" title="{_e(missing)}">{_e(label)}<br><small>{_e(missing)}</small></div>'


def _bars_svg(groups: list[tuple[str, float, float, str]], title: str, ymax: float = 1.0, fmt: str = "{:.2f}") -> str:
    """Grouped before/after bars: ``groups`` holds (label, before, after, tooltip) with values in [0, ymax]."""
    if not groups:
        return f'<p class="muted">{_e(title)}: no data.</p>'
    ymax = ymax or 1.0
    gw, h, top, left = 64, 180, 14, 34
    w = max(left + gw * len(groups) + 10, left + 130)  # at least the legend's width, even for a single group
    parts = [f'<svg class="chart" viewBox="0 0 {w} {h + 46}" width="{w}" height="{h + 46}" role="img" '
             f'aria-label="{_e(title)}"><title>{_e(title)}</title>']  # fmt: skip
    for i in range(5):
        y = top + h - h * i / 4
        parts.append(f'<line class="grid" x1="{left}" x2="{w - 6}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="ax" x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">'
                     f"{_e(fmt.format(ymax * i / 4))}</text>")  # fmt: skip
    for j, (label, b, a, tip) in enumerate(groups):
        x = left + gw * j + 8
        for k, (v, cls) in enumerate(((b, "b"), (a, "a"))):
            bh = h * min(max(v / ymax, 0.0), 1.0)
            parts.append(f'<rect class="{cls}" x="{x + k * 23}" y="{top + h - bh:.1f}" width="21" height="{bh:.1f}">'
                         f"<title>{_e(label)} {'before' if k == 0 else 'after'}: {_e(fmt.format(v))}"
                         f"{_e(tip)}</title></rect>")  # fmt: skip
        parts.append(f'<text class="lb" x="{x + 22}" y="{top + h + 14}" text-anchor="middle">{_e(label)}</text>')
    parts.append(f'<rect class="b" x="{left}" y="{h + 30}" width="10" height="10"/>'
                 f'<text class="ax" x="{left + 14}" y="{h + 39}">before</text>'
                 f'<rect class="a" x="{left + 70}" y="{h + 30}" width="10" height="10"/>'
                 f'<text class="ax" x="{left + 84}" y="{h + 39}">after</text></svg>')  # fmt: skip
    return "".join(parts)


def kind_chart(entries: list[Entry]) -> str:
    """Mean severity before and after per kind, over the images where the kind was detected before."""
    from reasoner.schema import KINDS

    groups = []
    for kind in KINDS:
        pairs = [(t.severity_before.get(kind, 0.0), t.severity_after.get(kind, 0.0))
                 for t in (e.trace for e in entries if e.trace is not None)
                 if any(d.kind == kind for d in t.record_before.detected())]  # fmt: skip
        if pairs:
            b, a = statistics.fmean(p[0] for p in pairs), statistics.fmean(p[1] for p in pairs)
            groups.append((kind, b, a, f" (mean of {len(pairs)} image{'s' * (len(pairs) != 1)})"))
    return _bars_svg(groups, "mean severity per kind, before vs after")


def severity_histogram(entries: list[Entry], bins: int = 10) -> str:
    """Counts of images per overall-severity bin, before and after."""
    traces = [e.trace for e in entries if e.trace is not None]
    if not traces:
        return _bars_svg([], "overall severity distribution")
    cb, ca = [0] * bins, [0] * bins
    for t in traces:
        cb[min(int(t.overall_before * bins), bins - 1)] += 1
        ca[min(int(t.overall_after * bins), bins - 1)] += 1
    groups = [(f"{i / bins:.1f}", cb[i], ca[i], f" image(s) in [{i / bins:.1f}, {(i + 1) / bins:.1f})")
              for i in range(bins)]  # fmt: skip
    ymax = -(-max(cb + ca) // 4) * 4  # a multiple of 4 keeps the four gridlines on whole counts
    return _bars_svg(groups, "overall severity distribution (images per bin)", ymax=ymax, fmt="{:.0f}")


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1400px;padding:16px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse}
td,th{padding:3px 8px;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}
.kv td:first-child{color:#666}.muted,small{color:#777}.bad{color:#b00020}.notes li{color:#8a5a00}
.grid{stroke:#e2e2e2}.ax,.lb{font-size:10px;fill:#555}rect.b{fill:#d9822b}rect.a{fill:#2b7bd9}
.charts{display:flex;flex-wrap:wrap;gap:24px}figure{margin:0}.chart{background:#fff;border:1px solid #e4e4e4}
figcaption{font-size:12px;color:#555;margin-top:4px;max-width:420px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px}
.card{background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px}.card.failed{border-color:#b00020}
.pair{display:flex;gap:4px}.pair>*{flex:1;min-width:0}.pair img{width:100%;height:150px;object-fit:contain;
background:#eee}.ph{height:150px;background:#eee;color:#777;display:flex;flex-direction:column;
align-items:center;justify-content:center;text-align:center;font-size:12px}
.tag{display:inline-block;padding:0 6px;border-radius:8px;font-size:12px;background:#eee;margin-right:3px}
.accepted{background:#d6f0d6}.rolled_back{background:#fbe9c6}.unchanged{background:#e6e6e6}
.failed .tag.st{background:#f6d0d6}
details{background:#fff;border:1px solid #e4e4e4;margin:4px 0;padding:4px 8px}summary{cursor:pointer}
pre{white-space:pre-wrap;word-break:break-word;background:#f4f4f4;padding:6px;max-height:300px;overflow:auto}
.name{font-weight:600;word-break:break-all}.controls{margin:6px 0}
button.open{display:block;width:100%;padding:0;border:0;background:none;cursor:zoom-in;text-align:inherit}
.files a{margin-right:8px}.said{margin:4px 0;font-size:14px}
#cmp{position:fixed;inset:0;background:rgba(20,20,20,.92);z-index:9;display:none;flex-direction:column;color:#eee}
#cmp.on{display:flex}#cmp header{display:flex;gap:10px;align-items:center;padding:8px;flex-wrap:wrap}
#cmp header b{flex:1;min-width:140px;word-break:break-all}#cmp input{flex:2;min-width:140px}
#cmp button{font-size:16px}#cmp .view{overflow:auto;flex:1}#cmp .stack{position:relative;display:inline-block}
#cmp .stack img{display:block;max-width:none}#cmp .stack img+img{position:absolute;left:0;top:0}
#cmp small{color:#bbb}
@media (max-width:600px){body{padding:8px}.cards{grid-template-columns:1fr}h1{font-size:18px;word-break:break-all}
table{display:block;overflow-x:auto;max-width:100%}td{word-break:break-word}}
"""

# Filtering and sorting the grid only; the page reads fine without it.
_JS = """
function rnrApply(){const f=document.getElementById('flt').value,s=document.getElementById('srt').value,
g=document.getElementById('cards'),cs=[...g.children];cs.forEach(c=>c.hidden=f!=='all'&&c.dataset.status!==f);
const k={name:c=>c.dataset.name,before:c=>-parseFloat(c.dataset.before||-1),
gain:c=>-(parseFloat(c.dataset.before||0)-parseFloat(c.dataset.after||0))}[s];
cs.sort((a,b)=>{const x=k(a),y=k(b);return x<y?-1:x>y?1:0}).forEach(c=>g.appendChild(c));}
// The before/after comparison at 100%: the after image below, the before on top clipped at the slider.
function rnrOpen(b){const o=document.getElementById('cmp'),v=o.querySelector('.stack');v.textContent='';
const a=new Image(),f=new Image();a.src=b.dataset.after;f.src=b.dataset.before;f.alt='before';a.alt='after';
f.onload=()=>{f.style.width=a.naturalWidth?a.naturalWidth+'px':'';};v.append(a,f);
o.querySelector('b').textContent=b.dataset.name;o.querySelector('small').textContent=b.dataset.note||'';
const r=o.querySelector('input');r.value=50;rnrCut(50);o.classList.add('on');r.focus();}
function rnrCut(x){const f=document.querySelector('#cmp .stack img+img');
if(f)f.style.clipPath='inset(0 '+(100-x)+'% 0 0)';}
function rnrClose(){document.getElementById('cmp').classList.remove('on');}
document.addEventListener('keydown',e=>{if(e.key==='Escape')rnrClose();});
"""
#: The comparison overlay: one for the page, filled by ``rnrOpen`` (images are made by the script, not in markup).
_OVERLAY = ('<div id="cmp" role="dialog" aria-label="before and after at 100%"><header><b></b>'
            '<input type="range" min="0" max="100" value="50" aria-label="before / after" '
            'oninput="rnrCut(this.value)"><span>before | after</span><button onclick="rnrClose()">close</button>'
            '<small></small></header><div class="view"><div class="stack"></div></div></div>')  # fmt: skip
#: Formats a browser shows in an <img> (the input is linked as the "before" at full size only in these).
_SHOWN = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".avif"}


def _median_timings(traces: list) -> dict[str, float]:
    nodes: dict[str, list[float]] = {}
    for t in traces:
        for node, s in t.timings.items():
            nodes.setdefault(node, []).append(s)
    return {n: statistics.median(v) for n, v in nodes.items()}


def _distinct(traces: list, attr: str) -> list[str]:
    seen = Counter(json.dumps(getattr(t, attr), sort_keys=True) for t in traces)
    return [f"{', '.join(f'{k}={v}' for k, v in json.loads(s).items())} ({n})" for s, n in seen.most_common()]


def _summary(run: Run) -> str:
    ents = run.entries
    traces = [e.trace for e in ents if e.trace is not None]
    status = Counter(e.row.get("status", "?") for e in ents)
    decisions = Counter(t.decision for t in traces)
    med = _median_timings(traces)
    wall = sum(float(e.row.get("seconds", 0) or 0) for e in ents)
    rows = [
        ("images", f"{len(ents)}: " + ", ".join(f"{n} {s}" for s, n in sorted(status.items()))),
        ("decisions", ", ".join(f"{n} {d}" for d, n in decisions.most_common()) or "—"),
        ("backends", "; ".join(_distinct(traces, "backends")) or "—"),
        ("versions", "; ".join(_distinct(traces, "versions")) or "—"),
        ("settings", "; ".join(_distinct(traces, "settings")) or "—"),
        ("time", f"{wall:.2f} s summed over images; median per image {med.get('total', 0):.3f} s"),
        ("median per node", ", ".join(f"{n} {s * 1000:.1f} ms" for n, s in med.items() if n != "total") or "—"),
    ]
    if traces:
        mb = statistics.fmean(t.overall_before for t in traces)
        ma = statistics.fmean(t.overall_after for t in traces)
        rows.insert(2, ("mean overall severity", f"{mb:.3f} → {ma:.3f}"))
    table = '<table class="kv">' + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows) + "</table>"
    restored = sum(1 for t in traces if t.decision in ("accepted", "rolled_back"))
    line = (f"{len(ents)} image{'s' * (len(ents) != 1)}: {restored} restored, "
            f"{sum(1 for t in traces if t.decision == 'unchanged')} returned unchanged, "
            f"{status.get('failed', 0)} failed. Click a picture to compare before and after at full "
            "size.")  # fmt: skip
    return (
        f'<p class="said" id="headline">{_e(line)}</p><details id="run"><summary>Run details: backends, '
        f"versions, settings, timings</summary>{table}</details>"
    )


def _kinds_text(t) -> str:
    det = t.record_before.detected()
    if not det:
        return "no degradation detected"
    return ", ".join(f"{d.kind} {d.severity:.2f}→{t.severity_after.get(d.kind, 0.0):.2f}" for d in det)


def _href(path: Path, out_dir: Path) -> str:
    """A link to ``path`` relative to the page's folder."""
    return quote(Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix())


def _input_uri(row: dict) -> str | None:
    """A ``file:`` link to the run's input (user data: only linked, never read), or None without a path."""
    src = row.get("input")
    if not src or not isinstance(src, str):
        return None
    return Path(os.path.abspath(src)).as_uri()


def _card(i: int, ent: Entry, out_dir: Path, embed: bool, size: int) -> str:
    t, row = ent.trace, ent.row
    status = row.get("status", "?")
    attrs = f'data-status="{_e(status)}" data-name="{_e(ent.name)}"'
    if t is not None:
        attrs += f' data-before="{t.overall_before:.4f}" data-after="{t.overall_after:.4f}"'
    head = f'<div class="name">{_e(ent.name)}</div>'
    source = _input_uri(row)
    files = f'<a href="{_e(source)}">input</a>' if source else ""
    if status == "failed":
        body = f'<div class="pair"><div class="ph">failed<br><small>{_e(row.get("error", ""))}</small></div></div>'
        tags = f'<span class="tag st">failed</span><div class="said bad">{_e(row.get("error", ""))}</div>'
    else:
        missing = ent.note or "not available"
        pair = (f'<div class="pair">{_img(ent.before, "before", out_dir, embed, size, missing)}'
                f'{_img(ent.after, "after", out_dir, embed, size, "restored image missing")}</div>')  # fmt: skip
        body = pair
        if ent.after is not None:
            after = _href(ent.after, out_dir)
            shown = source and Path(str(row.get("input"))).suffix.lower() in _SHOWN
            before = source if shown else (_href(ent.before, out_dir) if ent.before is not None else after)
            note = "" if shown else "before: the run's preview of the input, scaled to the output's size"
            body = (f'<button class="open" onclick="rnrOpen(this)" title="open before/after at full size" '
                    f'data-name="{_e(ent.name)}" data-before="{_e(before)}" data-after="{_e(after)}" '
                    f'data-note="{_e(note)}">{pair}</button>')  # fmt: skip
            files += f'<a href="{_e(after)}">output</a>'
        if t is not None:
            said = outcome(t)
            tags = (f'<div class="said">{_e(said.line)}</div>'
                    f'<span class="tag {_e(t.decision)}">{_e(t.decision)}</span>'
                    f"<span>overall {t.overall_before:.2f} → {_e(said.after_text(t.overall_after))}</span>"
                    f"<div><small>{_e(_kinds_text(t))}</small></div>"
                    f'<a href="#d{i}"><small>details</small></a>')  # fmt: skip
            if said.artefacts:
                tags += f'<div class="bad"><small>artefacts: {_e("; ".join(said.artefacts))}</small></div>'
            if said.unchecked:
                tags += f'<div class="bad"><small>{_e("; ".join(said.unchecked))}</small></div>'
        else:
            tags = f'<span class="tag">{_e(status)}</span><small> trace unreadable</small>'
        if ent.note:
            tags += f'<div class="bad"><small>{_e(ent.note)}</small></div>'
    links = f'<div class="files"><small>{files}</small></div>' if files else ""
    return f'<div class="card {_e(status)}" {attrs}>{head}{body}<div>{tags}</div>{links}</div>'


def _plan_text(plan) -> str:
    ops = " → ".join(
        f"{op.kind}×{op.strength:.2f} (" + ", ".join(f"{k}={v}" for k, v in op.params.items()) + ")"
        for op in plan.operations
    )
    return ops or "nothing to do"


def _details(i: int, ent: Entry) -> str:
    t = ent.trace
    rec = t.record_before
    steps = "".join(
        f"<li>{_e(s.observation)}<br><i>→ {_e(s.inference)}</i>"
        + (f" <small>{_e(', '.join(f'{k}={v:.3g}' for k, v in s.evidence.items()))}</small>" if s.evidence else "")
        + "</li>"
        for s in rec.reasoning
    )
    degr = "".join(f"<tr><td>{_e(d.kind)}</td><td>{_e(d.level)}</td><td>{d.severity:.2f}</td>"
                   f"<td>{t.severity_after.get(d.kind, 0.0):.2f}</td><td>{d.confidence:.2f}</td>"
                   f"<td>{_e(json.dumps(d.factors.model_dump()))}</td></tr>" for d in rec.degradations)  # fmt: skip
    attempts = "".join(f"<tr><td>{a.index}</td><td>{'' if a.source is None else a.source}"
                       f"{f' ({_e(a.rule)})' if a.rule else ''}</td>"
                       f"<td>{_e(_plan_text(a.plan))}</td><td>{_e(a.verdict)}</td><td>{a.overall_after:.2f}</td>"
                       f"<td>{a.structure:.3f}</td><td>{a.elapsed_s:.2f}</td><td>{_e(a.reason)}</td></tr>"
                       for a in t.attempts)  # fmt: skip
    refs = ", ".join(f"{r.id} ({r.score:.2f})" for r in t.references) or "none"
    parts = [
        f'<details id="d{i}"><summary><b>{_e(ent.name)}</b> — {_e(t.decision)}: {_e(t.decision_reason)}</summary>',
        f"<p><small>input {_e(t.input.path or t.input.sha256[:12])} {t.input.width}×{t.input.height}; "
        f"trace {_e(t.version)}; {_e(rec.provenance.backend)}</small></p>",
        f"<p>{_e(rec.semantics.description)}</p>",
        f"<h4>Chain of thought</h4><ol>{steps}</ol>" if steps else "",
        f"<details><summary>thinking</summary><pre>{_e(rec.thinking)}</pre></details>" if rec.thinking else "",
        "<h4>Diagnosis</h4><table><tr><th>kind</th><th>level</th><th>before</th><th>after</th><th>conf.</th>"
        f"<th>factors</th></tr>{degr}</table>"
        if degr
        else "",
        f"<p>references: {_e(refs)}</p>",
        "<h4>Attempts</h4><table><tr><th>#</th><th>from</th><th>plan</th><th>verdict</th><th>overall</th>"
        f"<th>structure</th><th>s</th><th>reason</th></tr>{attempts}</table>"
        if attempts
        else "<p>no attempts</p>",
        f"<p><small>plan instruction: {_e(t.attempts[0].plan.instruction)}</small></p>" if t.attempts else "",
        "</details>",
    ]
    return "".join(parts)


def render_html(run: Run, out_dir: Path, *, embed: bool = True, thumb: int = 256) -> str:
    """The report page for ``run``; relative links (``embed=False``) are relative to ``out_dir``."""
    ents = run.entries
    size = min(thumb, LARGE_THUMB) if len(ents) > LARGE_RUN else thumb
    failed = [e for e in ents if e.row.get("status") == "failed"]
    notes = list(run.notes) + [f"{e.name}: {e.note}" for e in ents if e.note]
    order = sorted(range(len(ents)), key=lambda i: ents[i].row.get("status") != "failed")  # the failures first
    cards = "".join(_card(i, ents[i], out_dir, embed, size) for i in order)
    details = "".join(_details(i, e) for i, e in enumerate(ents) if e.trace is not None)
    fail_rows = "".join(f"<tr><td>{_e(e.name)}</td><td>{_e(e.row.get('input', ''))}</td>"
                        f'<td class="bad">{_e(e.row.get("error", ""))}</td></tr>' for e in failed)  # fmt: skip
    opts = "".join(f'<option value="{s}">{s}</option>' for s in ("all", "ok", "unchanged", "failed"))
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>rnr report — {_e(run.root.name)}</title><style>{_CSS}</style><script>{_JS}</script></head><body>",
        f"<h1>Restoration report: {_e(run.root)}</h1>{_summary(run)}",
        f'<h2 id="failures">Failures ({len(failed)})</h2>',
        f"<table><tr><th>image</th><th>input</th><th>error</th></tr>{fail_rows}</table>" if failed
        else '<p class="muted">none</p>',
        '<h2 id="images">Images</h2><div class="controls">show <select id="flt" onchange="rnrApply()">'
        f'{opts}</select> sort <select id="srt" onchange="rnrApply()"><option value="name">name</option>'
        '<option value="before">severity before</option><option value="gain">severity reduction</option>'
        f'</select></div><div class="cards" id="cards">{cards}</div>',
        '<h2 id="notes">Notes</h2><ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"
        if notes else "",
        f'<h2 id="charts">Severity</h2><div class="charts">'
        f"<figure>{kind_chart(ents)}<figcaption>Mean severity per kind, before and after (images where the kind "
        f"was detected)</figcaption></figure>"
        f"<figure>{severity_histogram(ents)}<figcaption>Overall severity: number of images per bin, before and "
        f"after</figcaption></figure></div>",
        f'<h2 id="details">Details</h2>{details or "<p class=muted>no readable traces</p>"}',
        _OVERLAY,
        "</body></html>\n",
    ])  # fmt: skip


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    embed: bool = True,
    thumb: int = 256,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Write the HTML report of the run in ``run_dir`` (default ``run_dir/report.html``) atomically.

    Args:
        run_dir: The ``--out`` folder of an ``rnr restore`` run.
        out: Where to write the page; relative image links are computed from its folder.
        embed: Embed thumbnails as base64 JPEG (self-contained page); otherwise link the images by relative path.
        thumb: Thumbnail bounding box in pixels (capped at 160 for runs of more than 300 images).
        warn: Called with each note on what could not be read (a manifest line, a trace), as the page lists them.

    Returns:
        The path written.

    Raises:
        ReportError: ``run_dir`` is not a folder or holds no run.

    """
    from reasoner.files import write_bytes_atomic

    run = load_run(run_dir, warn)
    out = Path(out) if out is not None else run.root / REPORT_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    html = render_html(run, out.parent, embed=embed, thumb=thumb)
    return write_bytes_atomic(out, html.encode("utf-8"))
