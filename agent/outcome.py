"""What a run did to an image, in one plain line and a few numbers, for every place that reports it.

The CLI table, the HTML report, the UI and the manifest rows all say the same thing, from the trace: what was
found, what was removed in how many attempts, the artefact-aware scorer's estimate of the quality change with its
uncertainty, any artefact it found (never hidden behind an "after" severity of 0.00), what it could not check, and
when it is unsure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.trace import Trace
from reasoner.kinds import KINDS, check_table
from reasoner.quality.artefacts import BY_NAME, describe_unchecked
from reasoner.severity import LEVEL_THRESHOLDS, level_for

#: Above this error (one standard deviation, dB) the scorer's estimate is reported as unsure.
UNSURE_DB = 3.0

#: Each kind in the words of a sentence a photographer reads ("found mild JPEG blocking").
WORDS: dict[str, str] = check_table(
    {"noise": "noise", "blur": "blur", "motion_blur": "motion blur", "haze": "haze", "low_light": "underexposure",
     "jpeg": "JPEG blocking", "rain": "rain streaks", "low_resolution": "low resolution"},
    "agent.outcome.WORDS",
)  # fmt: skip


def listed(parts: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


@dataclass(frozen=True)
class Outcome:
    """The reportable result of one image."""

    line: str
    gain_db: float | None = None
    uncertainty_db: float | None = None
    artefacts: list[str] = field(default_factory=list)
    unsure: bool = False
    at_least_db: float | None = None
    appeared: list[str] = field(default_factory=list)
    #: What the checks could not see on the returned result, in words (:func:`reasoner.quality.describe_unchecked`).
    unchecked: list[str] = field(default_factory=list)

    def after_text(self, overall_after: float) -> str:
        """The "after" severity: never a bare 0.00 with artefacts found or a check blind, nor a rise left unsaid."""
        return after_text(overall_after, len(self.artefacts), self.appeared, len(self.unchecked))

    def gain_text(self) -> str:
        """The estimated quality change, e.g. "+2.1 dB ±1.3" or "-" without an estimate (see :func:`gain_text`)."""
        return gain_text(self.gain_db, self.uncertainty_db, self.unsure, self.at_least_db)


def after_text(
    overall_after: float, artefacts: int = 0, appeared: list[str] | tuple[str, ...] = (), unchecked: int = 0
) -> str:
    """:meth:`Outcome.after_text` from its numbers (a manifest row's, in the CLI table).

    >>> after_text(0.48, 0, ["haze"]), after_text(0.0, 2), after_text(0.31), after_text(0.0, 0, (), 1)
    ('0.48 (haze only after)', '0.00 + 2 artefacts', '0.31', '0.00, 1 check blind')
    """
    text = f"{overall_after:.2f}"
    if artefacts:
        text += f" + {artefacts} artefact{'s' if artefacts > 1 else ''}"
    if unchecked:
        text += f", {unchecked} check{'s' if unchecked > 1 else ''} blind"
    if appeared:
        text += f" ({listed([WORDS[k] for k in appeared])} only after)"
    return text


def appeared_kinds(trace: Trace) -> list[str]:
    """Kinds the returned result's re-scoring reports that the input's diagnosis did not, and no attempt restored.

    The "after" severity counts them, so without a word it reads as if the restoration had made the image worse: a
    hazy photo whose haze the input's diagnosis put just under its threshold, deblocked, then reads hazy (the
    deblocking did not add the haze; nor was it removed). An image returned unchanged has none.
    """
    if trace.decision == "unchanged" or trace.chosen_attempt is None:
        return []
    from agent.policy import lineage_strengths

    before = {d.kind for d in trace.record_before.detected()}
    restored = set(lineage_strengths(trace.attempts, trace.chosen_attempt))
    return [k for k in KINDS if trace.severity_after.get(k, 0.0) >= LEVEL_THRESHOLDS[0] and k not in before | restored]


def gain_text(gain: float | None, unc: float | None, unsure: bool, at_least: float | None = None) -> str:
    """:meth:`Outcome.gain_text` from its numbers (a manifest row's, in the CLI table).

    >>> gain_text(12.2, 14.8, True, 1.94), gain_text(2.1, 1.3, False), gain_text(None, None, False)
    ('+12.2 dB ±14.8 (unsure, at least +1.9)', '+2.1 dB ±1.3', '-')
    """
    if gain is None:
        return "-"
    text = f"{gain:+.1f} dB" + (f" ±{unc:.1f}" if unc is not None else "")
    if not unsure:
        return text
    return text + (f" (unsure, at least {at_least:+.1f})" if at_least is not None else " (unsure)")


def found_phrase(record) -> str:
    """What a diagnosis found, e.g. "found moderate noise and mild JPEG blocking" (or "found no degradation")."""
    found = record.detected()
    if not found:
        return "found no degradation"
    return "found " + listed([f"{d.level} {WORDS[d.kind]}" for d in found])


def _kinds_phrase(trace: Trace) -> str:
    said = found_phrase(trace.record_before)
    if trace.review is not None and trace.review.edited:  # a person's correction (the UI, or --add): say which
        said = f"as corrected ({'; '.join(trace.review.changes)}), {said}"
    return said


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
    said = said[:1].upper() + said[1:]  # not str.capitalize: it would lower "JPEG"
    if trace.decision == "unchanged":
        if not tried:
            line = f"{said}; the image is returned unchanged."
        else:
            line = (f"{said}; none of {tried} attempt{'s' if tried > 1 else ''} was clearly better, so "
                    "the image is returned unchanged.")  # fmt: skip
        return Outcome(line, 0.0 if gain is not None else None, 0.0 if unc is not None else None, [], False)
    chosen = trace.attempts[trace.chosen_attempt] if trace.chosen_attempt is not None else None
    from agent.policy import (
        COMB_BRIGHTENED,
        DEHAZED,
        DISK_DEBLURRED,
        MOTION_DEBLURRED,
        SHIFTED_BRIGHTENED,
        brightened_at_dose,
        deblurred_at_dose,
        denoised_and_deblocked_at_dose,
        inside_compression_cells,
        lineage_strengths,
        removed_white_noise,
    )
    from agent.policy import reread as is_reread
    from agent.state import Settings

    strengths = lineage_strengths(trace.attempts, trace.chosen_attempt)
    kinds = [WORDS[k] for k in strengths]
    removed = listed(kinds) if kinds else "it"
    line = f"{said}; restored {removed} (attempt {trace.chosen_attempt + 1} of {tried}"
    if chosen is not None and chosen.source is not None:
        revealed = listed([WORDS[k] for k in chosen.plan.kinds])
        line += f": the {revealed} showed once attempt {chosen.source + 1} had run, and was restored on top of it"
    elif chosen is not None and chosen.rule == "revealed":  # agent.policy.revealed_blur: planned from the input
        line += f": the blur showed once attempt {chosen.index} had deblocked it, and was restored with the deblocking"
    line += ")"
    # an "uncertain" re-read of haze under noise supersedes the first plan (agent.policy.unsure_reread), else it was
    # returned as likely better (agent.policy.likely_gain): not assured either way
    unsure_pick = chosen is not None and chosen.verdict == "uncertain"
    # (the settings only bound the attempts a split needs: a trace with a re-read had them)
    reread = unsure_pick and is_reread(chosen, trace.attempts, Settings())
    likely = unsure_pick and not reread
    unsure = likely or reread or (unc is not None and unc > UNSURE_DB)
    least = _at_least(trace) if unsure else None
    if gain is not None:
        line += f", estimated {gain:+.1f} dB"
        if unsure and least is not None:
            line += f" (±{unc:.1f}; the scorer is unsure how much, but its ensemble agrees on at least {least:+.1f})"
        else:
            line += f" (±{unc:.1f}; the scorer is unsure)" if unsure else (f" (±{unc:.1f})" if unc is not None else "")
    line += "."
    if reread:
        line += (" The scorer is unsure of it, but it is returned over the first plan: the haze it restores was read "
                 "again once the noise no longer hid it.")  # fmt: skip
    if likely:
        k = float(trace.settings.get("quality_likely_k", Settings().quality_likely_k))
        line += (" No attempt was clearly better; this one is returned because its estimate stands above "
                 f"{k:g} x its error with no sign of harm: likely better, not assured.")  # fmt: skip
    if chosen is not None and chosen.quality is not None:
        margin = float(trace.settings.get("quality_margin_db", Settings().quality_margin_db))
        if chosen.verdict == "better" and COMB_BRIGHTENED in chosen.reason:
            line += (" It inverted, at its own dose, the darkening curve the photo's 8-bit levels show (a comb of "
                     "empty levels in the highlights, widening towards white): the curve is measured, which the "
                     "scorer does not weigh, so its estimate here is not a loss to trust.")  # fmt: skip
        elif removed_white_noise(chosen.quality, chosen.plan.kinds):
            line += " What it removed looks like white noise of the diagnosed strength."
        elif inside_compression_cells(chosen.quality, chosen.plan.kinds, chosen.plan.strengths):
            line += " It changed only what the file's JPEG compression left uncertain."
        elif brightened_at_dose(chosen.quality, strengths, strengths):
            flagged = " with no artefact found"
            if chosen.quality.artefacts:
                flagged = "; what the scorer flagged moves with any large change of tone"
            line += f" It brightened at its own dose{flagged}; the scorer tends to underrate brightening."
        elif denoised_and_deblocked_at_dose(chosen.quality, strengths, strengths, margin):
            line += " It denoised and deblocked at their own dose with no artefact found."
        elif deblurred_at_dose(chosen.quality, strengths, strengths):
            line += (" It deblurred at its own dose with no ringing, ghosts or new texture found; the scorer tends to "
                     "underrate deblurring.")  # fmt: skip
        elif chosen.verdict == "better" and SHIFTED_BRIGHTENED in chosen.reason:
            line += (" It brightened, at its own dose with no artefact found, a photo whose shadows are clipped to "
                     "black while its highlights stop short of white: a darkening by its own evidence, which the "
                     "scorer does not weigh, so its estimate here is not a loss to trust.")  # fmt: skip
        elif chosen.verdict == "better" and DISK_DEBLURRED in chosen.reason:
            line += (" It deblurred a defocus disk the diagnosis was sure of, at its own dose with no ghosts or new "
                     "texture found; the scorer underrates such deblurrings, and its estimate here is not a loss "
                     "to trust.")  # fmt: skip
        elif chosen.verdict == "better" and MOTION_DEBLURRED in chosen.reason:
            line += (" It deconvolved, at its own dose with no artefact found, a straight motion whose zero lines the "
                     "photo's spectrum shows at the diagnosed length; the scorer underrates such deblurrings, and "
                     "its estimate here is not a loss to trust.")  # fmt: skip
        elif chosen.verdict == "better" and DEHAZED in chosen.reason:
            line += (" It dehazed at its own dose a frame dark enough for the dark-channel prior, with no artefact "
                     "found; the scorer tends to underrate dehazing.")  # fmt: skip
    new = appeared_kinds(trace)
    if new:
        sev = trace.severity_after
        which = listed([f"{level_for(sev[k])} {WORDS[k]} ({sev[k]:.2f})" for k in new])
        hint = " ".join(f"--add {k}" for k in new)
        line += (f" Its result reads as having {which}, which the input's diagnosis did not report (under its "
                 f"threshold there); left as it is (to restore it: {hint}, or tick it under Correct the "
                 "diagnosis).")  # fmt: skip
    if arts:
        line += f" Watch for: {'; '.join(arts)}."
    missed = describe_unchecked(q.unchecked) if q is not None else []  # a returned input has none
    if missed:
        line += f" {'; '.join(m[:1].upper() + m[1:] for m in missed)}: look at the result at 100%."
    return Outcome(line, gain, unc, arts, unsure, least, new, missed)


def _at_least(trace: Trace) -> float | None:
    """The positive gain the ensemble agrees on in signed log (``agent.policy.assured_gain``'s other bound) or None."""
    from agent.policy import agreed_gain
    from agent.state import Settings

    z = float(trace.settings.get("quality_z_log", Settings().quality_z_log))
    least = agreed_gain(trace.quality, z) if trace.quality is not None else None
    return round(least, 2) if least is not None and round(least, 1) > 0 else None  # never "at least +0.0"
