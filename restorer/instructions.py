"""The edit instruction for image-editing restorers, rendered from the diagnosis record and the plan.

What to remove comes from the plan's operations (kind, severity level, the record's physical factors, and the
strength the agent chose for this attempt); what to keep comes from the record's semantics (faces, text, sky, fine
texture, salient objects); the role of each reference picture is spelled out so the editor borrows texture, not
content. The text goes through the ``edit`` prompt template, so its wording is versioned and snapshot-tested.

    >>> from restorer.plan import Operation, Plan
    >>> remove_lines(Plan(operations=[Operation(kind="jpeg", severity=0.5, params={"quality": 20})]))
    ['- Remove the moderate JPEG blocking and ringing (quality about 20).']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prompts import load_prompt
from reasoner.kinds import check_table
from reasoner.schema import DiagnosisRecord
from reasoner.severity import level_for
from restorer.plan import Operation, Plan

#: What the model is told to avoid (passed as the negative prompt when classifier-free guidance is on).
NEGATIVE_PROMPT = (
    "noise, grain, blur, compression artefacts, haze, rain streaks, over-sharpened halos, plastic skin, "
    "garbled text, extra objects, changed composition, colour shift, oversaturated"
)
#: Strength (the agent's multiplier on the diagnosed dose) below which the instruction says "gently", and above
#: which it says "thoroughly".
GENTLE_BELOW, FIRM_ABOVE = 0.75, 1.25


def _f(params: dict, name: str, default: float = 0.0) -> float:
    value = params.get(name, default)
    return float(value) if isinstance(value, int | float) else default


#: kind -> its phrase from (level word, the operation's factors); level words: "slight" / "moderate" / "heavy".
PHRASES: dict[str, Callable[[str, dict], str]] = {
    "jpeg": lambda lv, p: f"Remove the {lv} JPEG blocking and ringing (quality about {int(_f(p, 'quality', 50))})",
    "noise": lambda lv, p: (
        f"Remove the {lv} {'sensor (signal-dependent)' if p.get('model') == 'poisson_gaussian' else 'Gaussian'} "
        f"noise (std about {_f(p, 'sigma'):.0f} of 255)"
    ),
    "rain": lambda lv, p: f"Remove the {lv} rain streaks (running at about {_f(p, 'angle', 90):.0f} degrees)",
    "blur": lambda lv, p: (
        f"Sharpen the {lv} {'defocus' if p.get('kernel') == 'defocus' else 'Gaussian'} blur "
        f"(about {_f(p, 'sigma'):.1f} px)"
    ),
    "motion_blur": lambda lv, p: (
        f"Remove the {lv} motion blur (streaks of about {_f(p, 'length'):.0f} px at {_f(p, 'angle'):.0f} degrees)"
    ),
    "low_resolution": lambda lv, p: (
        f"Recover the fine detail lost to {lv} downsampling (about {_f(p, 'scale', 2):.1f}x) without inventing any"
    ),
    "low_light": lambda lv, p: (
        f"Brighten the {lv} underexposure (exposure about {_f(p, 'exposure', 1):.2f}) without clipping highlights"
    ),
    "haze": lambda lv, p: (
        f"Remove the {lv} haze (transmission about {_f(p, 'transmission', 1):.2f}) and restore distant contrast"
    ),
}
check_table(PHRASES, "restorer.instructions.PHRASES")
_LEVEL_WORDS = {"none": "slight", "mild": "slight", "moderate": "moderate", "severe": "heavy"}


def remove_line(op: Operation) -> str:
    """One instruction line for ``op``: the kind, how bad it is, its physical factors, and how strongly to act."""
    phrase = PHRASES[op.kind](_LEVEL_WORDS[level_for(op.severity)], op.params)
    if op.strength < GENTLE_BELOW:
        phrase += ", gently"
    elif op.strength > FIRM_ABOVE:
        phrase += ", thoroughly"
    return f"- {phrase}."


def remove_lines(plan: Plan) -> list[str]:
    """Instruction lines for the plan's operations that run (strength > 0), in the plan's order."""
    return [remove_line(op) for op in plan.operations if op.strength > 0]


def preserve_lines(record: DiagnosisRecord) -> list[str]:
    """What to keep, from the record's semantics flags and salient objects."""
    s = record.semantics
    lines = []
    if s.faces:
        lines.append("- Keep every face and its identity exactly; do not smooth skin or change expressions.")
    if s.text:
        lines.append("- Keep text and line-art legible and unchanged; do not invent or alter letters.")
    if s.fine_texture:
        lines.append("- Keep fine texture (foliage, fabric, hair) crisp; do not paint over it.")
    if s.sky:
        lines.append("- Keep the sky's gradients smooth, without banding or new clouds.")
    if s.objects:
        lines.append(f"- Keep these where and as they are: {', '.join(s.objects)}.")
    lines.append("- Keep the colours, white balance and framing of Picture 1.")
    return lines


def reference_lines(scores: Sequence[float]) -> list[str]:
    """The role of each reference picture (Picture 2, 3, ... after the image to restore), with its relevance."""
    if not scores:
        return []
    pics = [f"Picture {i + 2}" for i in range(len(scores))]
    rel = ", ".join(f"{s:.2f}" for s in scores)
    names = pics[0] if len(pics) == 1 else f"{', '.join(pics[:-1])} and {pics[-1]}"
    verb = (
        "is a clean reference photo of a similar scene"
        if len(pics) == 1
        else "are clean reference photos of similar scenes"
    )
    return [
        f"{names} {verb} (relevance {rel}): match their sharpness, texture and noise-free detail only; "
        "do not copy their objects, layout or colours."
    ]


@dataclass(frozen=True)
class EditPrompt:
    """A rendered edit instruction: the template id, its system and user parts, and the text sent to the model."""

    template: str
    system: str
    user: str
    negative: str

    @property
    def text(self) -> str:
        """System and user parts joined: editing pipelines take one prompt (their own system prompt wraps it)."""
        return f"{self.system}\n{self.user}"


def render_instruction(
    record: DiagnosisRecord,
    plan: Plan,
    reference_scores: Sequence[float] = (),
    *,
    version: str | None = None,
    negative: str = NEGATIVE_PROMPT,
) -> EditPrompt:
    """The edit prompt for ``plan`` on the image ``record`` describes, given the scores of the references passed.

    Args:
        record: Diagnosis of the image being restored (semantics drive what to keep).
        plan: The attempt's plan (operations drive what to remove and how strongly).
        reference_scores: Relevance of each reference picture that goes to the model, in the order it is passed.
        version: ``edit`` template version (default: the newest).
        negative: Negative prompt recorded alongside.

    Returns:
        The rendered :class:`EditPrompt`.

    """
    lines = remove_lines(plan) or ["- Nothing needs removing: reproduce Picture 1 unchanged."]
    prompt = load_prompt("edit", version)
    system, user = prompt.render(
        instruction="\n".join(lines),
        preserve="\n".join(preserve_lines(record)),
        description=record.semantics.description or "a photograph",
        references="\n".join(reference_lines(reference_scores)),
    )
    return EditPrompt(prompt.id, system, user, negative)
