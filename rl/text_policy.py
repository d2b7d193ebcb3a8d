"""The light GRPO policy: a text-only causal LM that reads the ``measure`` backend's statistics of the image.

The prompt is the ``diagnose`` prompt text followed by the statistics of :func:`reasoner.features.measure_all`
rendered as ``name value`` lines, so any small causal LM (a Qwen3-0.6B, or the tiny local model of
:mod:`rl.tiny_text`) can be trained without a vision tower. The completion is either the full completion JSON
(``completion: json``, exactly what the VLM writes) or, with ``completion: compact``, only the degradations as
``kind severity`` pairs (``"noise 0.35, blur 0.20"``, or ``"clean"``): :func:`expand_compact` turns them into the
full completion JSON (factors from the inverse severity maps, stock reasoning and semantics) before the rewards of
:mod:`rl.rewards` parse it, so every reward still runs on a schema-validated record.

Rows carry the degraded crop as ``pixels`` rather than ``image`` (an ``image`` column makes TRL treat the policy
as a vision-language model); :class:`TextReward` hands it to the wrapped reward as ``image``. Imports no torch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

from reasoner.kinds import KINDS, check_table
from reasoner.schema import DiagnosisRecord

#: Completion formats of the text policy.
COMPLETIONS = ("json", "compact")
#: Appended to the prompt in compact mode: the reply format replaces the JSON the diagnose prompt asks for.
COMPACT_HINT = (
    "Reply with only the degradations present, as `kind severity` pairs separated by commas, severities in "
    "[0, 1] with two decimals (for example `noise 0.35, blur 0.20`), or `clean` when there is none."
)
_PAIR = re.compile(r"^\s*([a-z_]+)\s+([01](?:\.\d+)?)\s*$")
#: Confidence given to the kinds a compact completion names (the plan's strength is weighted by it).
COMPACT_CONFIDENCE = 0.9


#: Prompt styles: the full ``diagnose`` prompt with the statistics appended, or only the statistics and the reply
#: format (``stats``, compact completions only: ~5x fewer tokens, which a small model reads far more easily).
PROMPTS = ("diagnose", "stats")
STATS_SYSTEM = "You diagnose the degradations of an image from statistics measured on it."


def render_stats(
    stats: dict[str, float], names: list[str] | None = None, bins: dict[str, list[float]] | None = None
) -> str:
    r"""Statistics as ``name value`` lines, in ``names`` order or the measured order.

    Values are written with 3 significant digits, or, for statistics in ``bins`` (ascending edges, e.g. from
    :func:`stat_bins`), as the index of their bin: one digit token at a fixed place, which a small model maps to a
    verdict far faster than it learns to compare multi-digit numbers.

    >>> render_stats({"noise_sigma_mid": 12.345, "edge_width": 2.0}, ["edge_width"])
    'Measured statistics:\nedge_width 2'
    >>> render_stats({"noise_sigma_mid": 12.345}, bins={"noise_sigma_mid": [2.0, 5.0, 20.0]})
    'Measured statistics (bins):\nnoise_sigma_mid 2'
    """
    keys = list(names) if names else list(stats)
    unknown = [k for k in keys if k not in stats]
    if unknown:
        raise ValueError(f"unknown statistic(s) {unknown} in text_stats; known: {sorted(stats)}")
    bins = bins or {}
    lines = [
        f"{k} {int(np.searchsorted(np.asarray(bins[k], float), stats[k], side='right'))}" if k in bins else
        f"{k} {stats[k]:.3g}"
        for k in keys
    ]  # fmt: skip
    return ("Measured statistics (bins):\n" if bins else "Measured statistics:\n") + "\n".join(lines)


def stat_bins(stats_rows: list[dict[str, float]], names: list[str], n: int = 10) -> dict[str, list[float]]:
    """Quantile bin edges (``n`` bins, ``n - 1`` inner edges) of each named statistic over a (training) set.

    Fit on training rows only and reuse them for held-out rows (like any input normalisation). Repeated edges
    (a statistic that is often constant) are merged.

    >>> stat_bins([{"a": float(v)} for v in range(10)], ["a"], n=2)
    {'a': [4.5]}
    """
    if not stats_rows:
        raise ValueError("stat_bins needs at least one row of statistics")
    out = {}
    for k in names:
        vals = np.asarray([row[k] for row in stats_rows], float)
        edges = np.unique(np.round(np.quantile(vals, np.linspace(0, 1, n + 1)[1:-1]), 6))
        out[k] = [float(e) for e in edges]
    return out


def parse_compact(text: str) -> list[tuple[str, float]] | None:
    """``[(kind, severity), ...]`` of a compact completion, or ``None`` when it is not one.

    >>> parse_compact("noise 0.35, blur 0.2"), parse_compact("clean"), parse_compact("noise high")
    ([('noise', 0.35), ('blur', 0.2)], [], None)
    """
    body = text.strip().rstrip(".").strip()
    if body.lower() == "clean":
        return []
    pairs, seen = [], set()
    for part in body.split(","):
        m = _PAIR.match(part)
        if not m or m.group(1) not in KINDS or m.group(1) in seen or not 0.0 <= float(m.group(2)) <= 1.0:
            return None
        seen.add(m.group(1))
        pairs.append((m.group(1), float(m.group(2))))
    return pairs or None


def compact_target(record: DiagnosisRecord | str) -> str:
    """The compact completion of a (ground-truth) record: detected kinds in physical order, or ``clean``."""
    if isinstance(record, str):
        record = DiagnosisRecord.model_validate_json(record)
    pairs = [f"{d.kind} {d.severity:.2f}" for d in record.detected()]
    return ", ".join(pairs) or "clean"


def _haze_factors(f: dict, stats: dict[str, float]) -> dict:
    import math

    from reasoner.measure import ASSUMED_MEAN_DEPTH

    t = min(max(f["transmission"], 0.02), 0.99)
    airlight = [min(max(stats.get(f"airlight_{c}", 1.0), 0.0), 1.0) for c in "rgb"]
    return {**f, "transmission": t, "airlight": airlight, "beta": -math.log(t) / ASSUMED_MEAN_DEPTH}


#: Per kind: the factors a severity alone cannot give (shapes, directions, colours), from defaults or statistics.
COMPLETE_FACTORS: dict[str, Callable[[dict, dict[str, float]], dict]] = check_table({
    "haze": _haze_factors,
    "rain": lambda f, stats: {**f, "angle": round(stats.get("rain_angle", 90.0) % 180, 1)},
    "motion_blur": lambda f, stats: {**f, "angle": round(stats.get("orient_min_angle", 0.0) % 180, 1)},
    "blur": lambda f, stats: {**f, "kernel": "gaussian"},
    "low_resolution": lambda f, stats: f,
    "low_light": lambda f, stats: f,
    "noise": lambda f, stats: {**f, "model": "gaussian"},
    "jpeg": lambda f, stats: f,
}, "rl.text_policy.COMPLETE_FACTORS")  # fmt: skip


def _factors(kind: str, severity: float, stats: dict[str, float]) -> dict:
    """Factors of ``kind`` at ``severity``: inverse severity maps, directions and colours from the statistics."""
    from reasoner.measure import implied_factors

    return COMPLETE_FACTORS[kind](implied_factors(kind, severity, stats), stats)


def expand_compact(text: str, stats: dict[str, float]) -> str:
    """The full completion JSON a compact completion stands for; ``text`` unchanged when it does not parse.

    Factors come from the inverse severity maps (as the ``measure`` backend's fallback does), so the restorer gets
    a plan of the claimed kinds and strengths; the reasoning and semantics are fixed placeholders (they do not
    enter the rewards).
    """
    from reasoner.vlm_output import Completion, completion_json

    pairs = parse_compact(text)
    if pairs is None:
        return text
    present = dict(pairs)
    try:
        degradations = {
            k: (
                {"severity": s, "confidence": COMPACT_CONFIDENCE, "factors": _factors(k, s, stats)}
                if (s := present.get(k)) is not None
                else None
            )
            for k in KINDS
        }
        completion = Completion.model_validate(
            {
                "reasoning": [
                    {
                        "observation": "Read from the measured statistics.",
                        "inference": ", ".join(present) or "No degradation.",
                        "kinds": list(present),
                    }
                ],
                "degradations": degradations,
                "semantics": {
                    "description": "A photograph.",
                    "objects": [],
                    "faces": False,
                    "text": False,
                    "sky": False,
                    "fine_texture": False,
                },
            }
        )
    except ValueError:  # factors out of the schema's bounds: not a valid completion
        return text
    return completion_json(completion)


class TextReward:
    """A reward of :mod:`rl.rewards` for the text policy: ``pixels`` become ``image``, compact replies are expanded.

    Picklable; ``__name__`` is the wrapped reward's, so TRL logs ``rewards/<name>/mean`` as for the VLM policy.
    """

    def __init__(self, inner, compact: bool) -> None:
        self.inner, self.compact = inner, bool(compact)
        self.__name__ = inner.__name__

    def __repr__(self) -> str:
        return f"TextReward({self.inner!r}, compact={self.compact})"

    def __call__(self, prompts, completions, *, pixels, stats=None, **kwargs) -> list[float | None]:
        """One score per completion."""
        from rl.rewards import completion_text

        if self.compact:
            completions = [
                expand_compact(completion_text(c), json.loads(s)) for c, s in zip(completions, stats, strict=True)
            ]
        return self.inner(prompts, completions, image=pixels, **kwargs)


@cache
def _stats_of(png: bytes) -> str:
    import io

    from PIL import Image

    from reasoner.features import measure_all

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32) / 255.0
    return json.dumps({k: float(v) for k, v in measure_all(rgb).items()})


def image_stats(image) -> dict[str, float]:
    """:func:`reasoner.features.measure_all` of a PIL image (cached by its PNG bytes)."""
    import io

    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return json.loads(_stats_of(buf.getvalue()))


def text_prompt_dataset(
    path: str | Path,
    max_samples: int | None,
    names: list[str] | None,
    completion: str,
    prompt: str = "diagnose",
    bins: dict[str, list[float]] | None = None,
):
    """The synth set as conversational text prompts with ``pixels``, ``record``, ``clean``, ``stats`` and ``target``.

    ``target`` is the text the policy should write (the compact or JSON completion of the ground truth), for
    warm-starting with supervised steps. ``prompt`` is one of :data:`PROMPTS`; ``bins`` renders the statistics it
    names as bin indices (:func:`render_stats`).
    """
    from rl.synth import prompt_dataset

    if completion not in COMPLETIONS:
        raise ValueError(f"completion={completion!r} is not one of {list(COMPLETIONS)}")
    if prompt not in PROMPTS or (prompt == "stats" and completion != "compact"):
        raise ValueError(f"prompt={prompt!r}: use diagnose, or stats with compact completions")
    base = prompt_dataset(path, max_samples)
    rows = {k: [] for k in ("prompt", "pixels", "record", "clean", "stats", "target")}
    for i in range(len(base)):
        row = base[i]
        stats = image_stats(row["image"])
        system, user = row["prompt"][0]["content"], row["prompt"][1]["content"]
        if prompt == "stats":
            system, user = STATS_SYSTEM, render_stats(stats, names, bins)
        else:
            user = f"{user}\n\n{render_stats(stats, names, bins)}"
        if completion == "compact":
            user += "\n\n" + COMPACT_HINT
        rows["prompt"].append([{"role": "system", "content": system}, {"role": "user", "content": user}])
        rows["pixels"].append(row["image"])
        rows["record"].append(row["record"])
        rows["clean"].append(row["clean"])
        rows["stats"].append(json.dumps(stats))
        rows["target"].append(
            compact_target(row["record"]) if completion == "compact" else _json_target(row["record"])
        )
    from datasets import Dataset, Features, Image, List, Value

    features = Features(
        {
            "prompt": List({"role": Value("string"), "content": Value("string")}),
            "pixels": Image(),
            "record": Value("string"),
            "clean": Image(),
            "stats": Value("string"),
            "target": Value("string"),
        }
    )
    return Dataset.from_dict(rows, features=features)


def _json_target(record_json: str) -> str:
    from reasoner.vlm_output import completion_json, from_record

    return completion_json(from_record(DiagnosisRecord.model_validate_json(record_json)))
