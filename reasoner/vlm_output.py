"""What a vision-language reasoner writes, and how it becomes a :class:`~reasoner.schema.DiagnosisRecord`.

A grammar can force JSON to follow a schema, but not invariants across fields: a level that matches its severity,
one entry per kind. So the model fills a *completion* schema in which those cannot be wrong: degradations are an
object with one key per kind (``null`` when absent) and no levels; strings are bounded by a pattern that also
excludes control characters, quotes and backslashes (grammar engines admit raw control characters under
``maxLength`` alone, which JSON parsers reject). The backend adds what it knows itself (image identity,
provenance, a thinking variant's free-form reasoning) and derives the rest (levels, overall severity).

Shared by every model-backed reasoner (transformers, vLLM offline, OpenAI-compatible servers) and by SFT targets,
so a fine-tuned model writes exactly what the backends parse. Imports only pydantic and the standard library.
"""

from __future__ import annotations

import json
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from reasoner.schema import (
    DEGRADATION_MODELS,
    KINDS,
    DegradationKind,
    DiagnosisRecord,
    ImageInfo,
    Provenance,
    ReasoningStep,
    Semantics,
    combined_severity,
    make_degradation,
)

#: Text the model may write: printable, no quote or backslash (so no JSON escapes), no angle brackets (so no
#: ``</think>`` that would confuse :func:`split_thinking`), bounded by the pattern itself (with a pattern, grammar
#: engines ignore ``maxLength``).
TEXT_PATTERN = r'^[^\x00-\x1f"\\<>]{1,300}$'
NAME_PATTERN = r'^[^\x00-\x1f"\\<>]{1,48}$'
MAX_STEPS = 8
MAX_OBJECTS = 8

Text = Annotated[str, Field(pattern=TEXT_PATTERN, description="Plain text, at most 300 characters.")]
Name = Annotated[str, Field(pattern=NAME_PATTERN, description="A short name, at most 48 characters.")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepOut(_Strict):
    """One step of the chain of thought."""

    observation: Text = Field(description="What is seen in the image, concretely.")
    inference: Text = Field(description="What the observation implies about a degradation or the scene.")
    kinds: list[DegradationKind] = Field(max_length=8, description="Degradation kinds the step is about.")


def _entry(kind: str) -> type[BaseModel]:
    """The completion model of one kind's estimate: severity, confidence and the kind's factor model."""
    factors = DEGRADATION_MODELS[kind].model_fields["factors"].annotation
    return type(
        "".join(part.capitalize() for part in kind.split("_")) + "Out",
        (_Strict,),
        {
            "__doc__": f"Estimate for one kind; factors as in {factors.__name__}.",
            "__annotations__": {"severity": float, "confidence": float, "factors": factors},
            "severity": Field(ge=0, le=1, description="Severity in [0, 1] (0.1 mild, 0.35 moderate, 0.65 severe)."),
            "confidence": Field(ge=0, le=1, description="Probability that this kind is present."),
            "__module__": __name__,
        },
    )


#: The completion model of each kind's estimate (``NoiseOut``, ``MotionBlurOut``, ...).
ENTRY_MODELS: dict[str, type[BaseModel]] = {kind: _entry(kind) for kind in KINDS}

#: Built from the kinds, so a new kind gets its key (the model's docstring is what the JSON Schema describes).
DegradationsOut: type[BaseModel] = create_model(
    "DegradationsOut",
    __base__=_Strict,
    __doc__="One key per kind, in physical order; ``null`` when the kind is absent.",
    __module__=__name__,
    **{kind: (model | None, ...) for kind, model in ENTRY_MODELS.items()},
)


class SemanticsOut(_Strict):
    """What the scene contains, as far as it changes how to restore it."""

    description: Text = Field(description="One or two sentences describing the scene.")
    objects: list[Name] = Field(max_length=MAX_OBJECTS, description="Salient objects or regions.")
    faces: bool
    text: bool
    sky: bool
    fine_texture: bool


class Completion(_Strict):
    """The JSON a vision-language reasoner writes (after any free-form thinking)."""

    reasoning: list[StepOut] = Field(min_length=1, max_length=MAX_STEPS, description="Ordered chain of thought.")
    degradations: DegradationsOut
    semantics: SemanticsOut


class CompletionError(ValueError):
    """A model's reply that is not a valid completion; the message is one line."""


def completion_schema() -> dict:
    """JSON Schema of :class:`Completion`, for grammar-guided decoding and structured-output requests."""
    return Completion.model_json_schema()


_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def split_thinking(text: str) -> tuple[str | None, str]:
    """Split a reply into (thinking, JSON text).

    Thinking variants write ``<think>...</think>`` first (the opening tag may sit in the prompt, so a lone
    ``</think>`` counts too); anything else before the first ``{`` is treated as thinking as well.
    """
    thinking = None
    m = _THINK.search(text)
    if m:
        thinking, text = m.group(1), text[m.end() :]
    elif "</think>" in text:
        thinking, _, text = text.partition("</think>")
    start = text.find("{")
    if start > 0 and text[:start].strip():
        thinking = "\n".join(t for t in (thinking, text[:start]) if t and t.strip())
    text = text[start:] if start >= 0 else text
    thinking = thinking.strip() if thinking and thinking.strip() else None
    return thinking, text.strip()


def parse_completion(text: str) -> tuple[str | None, Completion]:
    """Parse a model reply into (thinking, completion); :class:`CompletionError` with one line if it is invalid."""
    thinking, body = split_thinking(text)
    try:
        return thinking, Completion.model_validate_json(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise CompletionError(
            f"model reply is not a valid completion ({e.error_count()} errors; first at {where}: {first['msg']})"
        ) from None


def to_record(
    completion: Completion, image: ImageInfo, provenance: Provenance, thinking: str | None = None
) -> DiagnosisRecord:
    """Assemble the full record: levels and overall severity derived, entries in physical order.

    Numbers reach the record through :func:`~reasoner.schema.make_degradation`, which stores them under the record's
    bounds (angles wrapped into [0, 180)), so every completion the completion schema admits yields a valid record.
    """
    degs = []
    for kind in KINDS:
        est = getattr(completion.degradations, kind)
        if est is not None:
            degs.append(make_degradation(kind, est.severity, est.confidence, **est.factors.model_dump()))
    sem = completion.semantics
    return DiagnosisRecord(
        image=image,
        reasoning=[
            ReasoningStep(observation=s.observation, inference=s.inference, kinds=list(s.kinds))
            for s in completion.reasoning
        ],
        degradations=degs,
        semantics=Semantics(
            description=sem.description,
            objects=list(sem.objects),
            faces=sem.faces,
            text=sem.text,
            sky=sem.sky,
            fine_texture=sem.fine_texture,
            coarse=False,
        ),
        thinking=thinking[:32_000] if thinking else None,
        overall_severity=combined_severity(degs),
        provenance=provenance,
    )


def from_record(record: DiagnosisRecord) -> Completion:
    """The completion that describes ``record`` (SFT targets, few-shot examples); texts clipped to fit."""

    def text(s: str, n: int = 300) -> str:
        s = re.sub(r'[\x00-\x1f"\\<>]', " ", s).strip() or "-"
        return s[:n]

    by_kind = {d.kind: d for d in record.degradations}
    degs = {
        k: (
            {"severity": d.severity, "confidence": d.confidence, "factors": d.factors.model_dump()}
            if (d := by_kind.get(k))
            else None
        )
        for k in KINDS
    }
    steps = [
        {"observation": text(s.observation), "inference": text(s.inference), "kinds": list(s.kinds)}
        for s in record.reasoning[:MAX_STEPS]
    ] or [{"observation": "No degradation is visible.", "inference": "The image is clean.", "kinds": []}]
    sem = record.semantics
    return Completion.model_validate(
        {
            "reasoning": steps,
            "degradations": degs,
            "semantics": {
                "description": text(sem.description or "A photograph."),
                "objects": [text(o, 48) for o in sem.objects[:MAX_OBJECTS]],
                "faces": sem.faces,
                "text": sem.text,
                "sky": sem.sky,
                "fine_texture": sem.fine_texture,
            },
        }
    )


def completion_json(completion: Completion) -> str:
    """Compact JSON, the exact text a model is trained to write."""
    return json.dumps(completion.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)
