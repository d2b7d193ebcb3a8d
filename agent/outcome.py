"""What a run did to an image, in one plain line and a few numbers, for every place that reports it.

The CLI table, the HTML report, the UI and the manifest rows all say the same thing, from the trace: what was
found, what was removed in how many attempts, the artefact-aware scorer's estimate of the quality change with its
uncertainty, any artefact it found (never hidden behind an "after" severity of 0.00), and when it is unsure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.trace import Trace
from reasoner.quality.artefacts import BY_NAME

#: Above this error (one standard deviation, dB) the scorer's estimate is reported as unsure.
UNSURE_DB = 3.0


@dataclass(frozen=True)
class Outcome:
    """The reportable result of one image."""

    line: str
    gain_db: float | None = None
    uncertainty_db: float | None = None
    artefacts: list[str] = field(default_factory=list)
    unsure: bool = False

    def after_text(self, overall_after: float) -> str:
        """The "after" severity as shown: never a bare 0.00 when artefacts were found."""
        text = f"{overall_after:.2f}"
        if self.artefacts:
            n = len(self.artefacts)
            text += f" + {n} artefact{'s' if n > 1 else ''}"
        return text

    def gain_text(self) -> str:
        """The estimated quality change, e.g. "+2.1 dB ±1.3", "unsure (±4.5 dB)", or "-" without an estimate."""
        if self.gain_db is None:
            return "-"
        unc = f" ±{self.uncertainty_db:.1f}" if self.uncertainty_db is not None else ""
        text = f"{self.gain_db:+.1f} dB{unc}"
        return f"{text} (unsure)" if self.unsure else text


def _kinds_phrase(trace: Trace) -> str:
    found = [d for d in trace.record_before.detected()]
    if not found:
        return "found no degradation"
    parts = [f"{d.level} {d.kind.replace('_', ' ')}" for d in found]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"found {listed}"


def outcome(trace: Trace) -> Outcome:
    """The :class:`Outcome` of a finished trace.

    >>> outcome.__name__
    'outcome'
    """
    q = trace.quality
    gain = q.gain_db if q is not None else None
    unc = q.uncertainty_db if q is not None else None
    arts = [BY_NAME[a].words if a in BY_NAME else a for a in (q.artefacts if q is not None else {})]
    tried = len(trace.attempts)
    said = _kinds_phrase(trace)
    if trace.decision == "unchanged":
        if not tried:
            line = f"{said.capitalize()}; the image is returned unchanged."
        else:
            line = (f"{said.capitalize()}; none of {tried} attempt{'s' if tried > 1 else ''} was clearly better, so "
                    "the image is returned unchanged.")  # fmt: skip
        return Outcome(line, 0.0 if gain is not None else None, 0.0 if unc is not None else None, [], False)
    chosen = trace.attempts[trace.chosen_attempt] if trace.chosen_attempt is not None else None
    kinds = [k.replace("_", " ") for k in (chosen.plan.kinds if chosen else [])]
    removed = ", ".join(kinds) if kinds else "it"
    line = f"{said.capitalize()}; restored {removed} (attempt {trace.chosen_attempt + 1} of {tried})"
    unsure = unc is not None and unc > UNSURE_DB
    if gain is not None:
        line += f", estimated {gain:+.1f} dB"
        line += f" (±{unc:.1f}; the scorer is unsure)" if unsure else (f" (±{unc:.1f})" if unc is not None else "")
    line += "."
    if arts:
        line += f" Watch for: {'; '.join(arts)}."
    return Outcome(line, gain, unc, arts, unsure)
