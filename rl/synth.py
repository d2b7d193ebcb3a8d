"""Supervised fine-tuning data: degraded crops of bundled photos with the exact completion a model should write.

Each sample is a random crop of a calibration photo (:data:`rl.photos.CALIBRATION_PHOTOS`), degraded by
:func:`rl.ground_truth.synthesize` (or left clean), and its training target: the chain of thought cites statistics
*measured* on the degraded 8-bit image (the ``measure`` reasoner's observations), while the inferences, the
degradation entries and their factors are the *ground truth*. So the model learns to ground its verdicts in evidence
it can see, and the verdicts are always right. Targets are :func:`reasoner.vlm_output.completion_json` of a
:class:`~reasoner.vlm_output.Completion`, the text every model-backed reasoner parses.

Scene semantics come from short captions of the bundled photos (a crop may miss part of what they name) plus
content flags measured on the clean crop where a caption does not settle them.

The set is a Hugging Face ``datasets`` folder (``Dataset.save_to_disk``), written atomically. Training reads it
through :func:`sft_dataset` (prompt-completion rows) and :func:`prompt_dataset` (GRPO prompts with the ground truth
and the regenerated clean crop). Heavy imports (``datasets``) live inside the functions.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from reasoner.calibration import load_calibration
from reasoner.features import global_view, measure_all
from reasoner.imageio import to_uint8
from reasoner.measure import EVIDENCE  # the measure backend's cited statistics, one template per kind
from reasoner.schema import KINDS, DiagnosisRecord, ReasoningStep, Semantics, level_for
from reasoner.semantics import describe, scene_stats
from reasoner.vlm_output import MAX_STEPS, Completion, completion_json, from_record
from rl.degradations import sample_ops
from rl.ground_truth import ground_truth, synthesize
from rl.photos import CALIBRATION_PHOTOS, load_photo

#: Columns of a written set, in order.
COLUMNS = ("image", "record", "target", "prompt_id", "width", "height", "seed", "photo", "kinds")
#: Absent kinds the calibration finds most likely get a step that rules them out (hard negatives).
N_RULED_OUT = 2

#: What each calibration photo shows: description, salient objects, and the content flags the photo settles
#: (flags left out are measured on the clean crop).
CAPTIONS: dict[str, tuple[str, list[str], dict[str, bool]]] = {
    "chelsea": ("A close-up of a tabby cat looking at the camera.", ["cat", "fur", "whiskers"],
                {"faces": False, "text": False, "sky": False, "fine_texture": True}),
    "rocket": ("A rocket on its launch pad at dusk between lattice towers, lit by floodlights, under a deep blue sky.",
               ["rocket", "launch towers", "floodlights", "sky"], {"faces": False, "text": False}),
    "coins": ("Ancient coins laid out in rows on a dark background.", ["coins"],
              {"faces": False, "text": False, "sky": False}),
    "brick": ("A brick wall seen straight on.", ["brick wall", "mortar joints"],
              {"faces": False, "text": False, "sky": False, "fine_texture": True}),
    "grass": ("A close-up of grass blades.", ["grass"],
              {"faces": False, "text": False, "sky": False, "fine_texture": True}),
    "gravel": ("A close-up of gravel.", ["gravel", "stones"],
               {"faces": False, "text": False, "sky": False, "fine_texture": True}),
    "moon": ("The cratered surface of the Moon.", ["moon surface", "craters"],
             {"faces": False, "text": False, "sky": False}),
    "hubble_deep_field": ("A deep-space telescope image: many small galaxies on a black background.",
                          ["galaxies", "stars"], {"faces": False, "text": False, "sky": False}),
    "page": ("A scanned page of printed text.", ["printed text", "paper"],
             {"faces": False, "text": True, "sky": False}),
    "sklearn_flower": ("A close-up of an orange dahlia in bloom against dark green foliage.",
                       ["dahlia", "petals", "foliage"], {"faces": False, "text": False, "sky": False}),
}  # fmt: skip


def _crop(img: np.ndarray, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A ``height`` x ``width`` crop (smaller where the photo is) at a random position, randomly mirrored."""
    h, w = img.shape[:2]
    ch, cw = min(height, h), min(width, w)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = img[y : y + ch, x : x + cw]
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def _draw_crop(
    seed: int, index: int, photos: Sequence[str], size: Sequence[int]
) -> tuple[np.random.Generator, str, np.ndarray, int]:
    """The first draws of sample ``index`` (:func:`make_sample` and :func:`clean_crop` share them).

    Returns the generator (for the draws that follow), the photo, the clean crop and the sample's degradation seed.
    """
    rng = np.random.default_rng([seed, index])
    photo = photos[int(rng.integers(len(photos)))]
    clean = _crop(load_photo(photo), rng, *size)
    return rng, photo, clean, int(rng.integers(2**31))


def _semantics(photo: str, clean: np.ndarray) -> Semantics:
    small = global_view(clean)
    measured = describe(small, scene_stats(small), float(np.mean(small)))
    if photo not in CAPTIONS:
        return measured
    description, objects, flags = CAPTIONS[photo]
    fill = {k: flags.get(k, getattr(measured, k)) for k in ("faces", "text", "sky", "fine_texture")}
    return Semantics(description=description, objects=objects, coarse=False, **fill)


def _round_floats(x):
    """Four significant digits: the model should not spend tokens on float noise (bounds are round numbers)."""
    if isinstance(x, float):
        return float(f"{x:.4g}")
    if isinstance(x, dict):
        return {k: _round_floats(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_round_floats(v) for v in x]
    return x


def reasoning_steps(record: DiagnosisRecord, pixels: np.ndarray) -> list[ReasoningStep]:
    """The target chain of thought for ground truth ``record`` of the image ``pixels`` (what the model sees).

    One step per true kind (its measured statistics, then the true verdict), up to :data:`N_RULED_OUT` steps that
    rule out the absent kinds the calibrated statistics find most likely, and a conclusion with the restoration
    order; at most :data:`~reasoner.vlm_output.MAX_STEPS` in all.

    Args:
        record: the ground-truth record (``rl.ground_truth``).
        pixels: the degraded image as the model sees it, ``float32 HxWx3 RGB in [0, 1]`` (8-bit values).

    """
    feats = measure_all(pixels)
    values = feats | {f"pct_{k}": 100 * v for k, v in feats.items()}
    _, prob = load_calibration().predict(feats)
    degs = record.degradations

    def step(kind: str, inference: str) -> ReasoningStep:
        keys, template = EVIDENCE[kind]
        evidence = {k: round(float(feats[k]), 3) for k in keys}
        return ReasoningStep(
            observation=template.format(**values), evidence=evidence, inference=inference, kinds=[kind]
        )

    steps = [
        step(d.kind, f"{d.kind.replace('_', ' ')} present, {level_for(d.severity)} (severity {d.severity:.2f}).")
        for d in degs[: MAX_STEPS - 1]
    ]
    absent = sorted((k for k in KINDS if k not in {d.kind for d in degs}), key=lambda k: -prob[k])
    room = max(0, MAX_STEPS - 1 - len(steps))
    steps += [step(k, f"no significant {k.replace('_', ' ')}.") for k in absent[: min(N_RULED_OUT, room)]]
    found = ", ".join(f"{d.kind} ({d.level})" for d in degs) or "nothing significant"
    order = " -> ".join(d.kind for d in reversed(degs))
    steps.append(
        ReasoningStep(
            observation=f"Detected: {found}.",
            inference=f"Restore in reverse physical order: {order}." if degs else "Leave the image as it is.",
            kinds=[d.kind for d in degs],
        )
    )
    return steps


def target_completion(record: DiagnosisRecord, pixels: np.ndarray, semantics: Semantics | None = None) -> Completion:
    """The completion a model is trained to write for ``record`` (see :func:`reasoning_steps`); floats to 4 digits."""
    update = {"reasoning": reasoning_steps(record, pixels)}
    if semantics is not None:
        update["semantics"] = semantics
    c = from_record(record.model_copy(update=update))
    return Completion.model_validate(_round_floats(c.model_dump(mode="json")))


def make_sample(
    index: int,
    seed: int = 0,
    size: tuple[int, int] = (256, 384),
    kinds: Sequence[str] | None = None,
    n_kinds: int | tuple[int, int] = (1, 3),
    clean_fraction: float = 0.2,
    photos: Sequence[str] = CALIBRATION_PHOTOS,
    prompt_id: str = "diagnose/v1",
) -> dict:
    """Sample ``index`` of the set drawn with ``seed``: a row of :data:`COLUMNS`, the image as PNG bytes.

    Deterministic per ``(seed, index)``, whatever else is drawn. See :func:`write_dataset` for the arguments.
    """
    from PIL import Image

    rng, photo, clean, sample_seed = _draw_crop(seed, index, photos, size)
    if rng.random() < clean_fraction:
        degraded, record = clean, ground_truth([], clean, seed=sample_seed)
    else:
        syn = synthesize(clean, sample_seed, kinds=kinds, n_kinds=n_kinds)
        degraded, record = syn.image, syn.record
    u8 = to_uint8(degraded)
    seen = u8.astype(np.float32) / 255.0
    target = completion_json(target_completion(record, seen, _semantics(photo, clean)))
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="PNG")
    return {
        "image": {"bytes": buf.getvalue(), "path": None},
        "record": record.model_dump_json(),
        "target": target,
        "prompt_id": prompt_id,
        "width": int(u8.shape[1]),
        "height": int(u8.shape[0]),
        "seed": sample_seed,
        "photo": photo,
        "kinds": [d.kind for d in record.degradations],
    }


def _chunk(args: tuple[range, dict]) -> list[dict]:
    indices, kwargs = args
    return [make_sample(i, **kwargs) for i in indices]


class _Opaque:
    """A progress callable that ``datasets``' fingerprinting can pickle (it pickles generator arguments).

    A rich console cannot be pickled; the fingerprint does not matter here, as each write has its own cache folder.
    """

    def __init__(self, fn=None):
        self.fn = fn

    def __reduce__(self):
        return (_Opaque, ())


def _rows(n: int, workers: int, kwargs: dict, progress: _Opaque, chunk: int = 16) -> Iterator[dict]:
    jobs = [(range(i, min(i + chunk, n)), kwargs) for i in range(0, n, chunk)]
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        # in order, so the set does not depend on the worker count
        chunks = pool.map(_chunk, jobs) if pool else map(_chunk, jobs)
        done = 0
        for rows in chunks:
            yield from rows
            done += len(rows)
            if progress.fn is not None:
                progress.fn(done, n)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def write_dataset(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    size: tuple[int, int] = (256, 384),
    kinds: Sequence[str] | None = None,
    n_kinds: int | tuple[int, int] = (1, 3),
    clean_fraction: float = 0.2,
    photos: Sequence[str] = CALIBRATION_PHOTOS,
    workers: int = 1,
    overwrite: bool = False,
    prompt_version: str | None = None,
    progress=None,
) -> Path:
    """Write an SFT set of ``n`` samples as a ``datasets`` folder (``Dataset.load_from_disk`` reads it).

    Columns (:data:`COLUMNS`): ``image`` (the degraded crop, PNG), ``record`` (ground-truth DiagnosisRecord JSON),
    ``target`` (the exact assistant text), ``prompt_id`` (``diagnose/vN``), ``width``, ``height``, ``seed`` (the
    sample's degradation seed, also in the record's settings), ``photo`` (source photo), ``kinds`` (true kinds).

    Args:
        out_dir: folder to create; it must not exist or be empty unless ``overwrite``.
        n: number of samples (at least 1).
        seed: set seed; sample ``i`` depends only on ``(seed, i)``.
        size: crop ``(height, width)`` in pixels (smaller where a photo is).
        kinds: kinds to synthesise on every degraded sample (``None`` draws them).
        n_kinds: how many kinds to draw, or an inclusive range, when ``kinds`` is ``None``.
        clean_fraction: probability that a sample is left clean.
        photos: source photos (names for :func:`rl.photos.load_photo`); keep evaluation photos out.
        workers: processes that synthesise samples (the result does not depend on it).
        overwrite: replace a non-empty ``out_dir``.
        prompt_version: diagnose prompt version recorded per sample (default: the newest).
        progress: optional ``callable(done, total)`` called as samples are written.

    Returns:
        The written folder.

    """
    import datasets
    from datasets import Dataset, Features, Image, List, Value

    from prompts import load_prompt

    out = Path(out_dir)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0.0 <= clean_fraction <= 1.0:
        raise ValueError(f"clean_fraction must be in [0, 1], got {clean_fraction}")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; choose another output folder or pass overwrite=True")
    for p in photos:
        load_photo(p)  # fail on an unknown name before any work
    sample_ops(np.random.default_rng(0), kinds, n_kinds)  # likewise for bad kinds or counts
    kwargs = {
        "seed": seed,
        "size": tuple(size),
        "kinds": list(kinds) if kinds is not None else None,
        "n_kinds": n_kinds if isinstance(n_kinds, int) else tuple(n_kinds),
        "clean_fraction": clean_fraction,
        "photos": tuple(photos),
        "prompt_id": load_prompt("diagnose", prompt_version).id,
    }
    features = Features(
        {
            "image": Image(),
            "record": Value("string"),
            "target": Value("string"),
            "prompt_id": Value("string"),
            "width": Value("int32"),
            "height": Value("int32"),
            "seed": Value("int64"),
            "photo": Value("string"),
            "kinds": List(Value("string")),
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # progress is the caller's to show (stdout/stderr stay clean for --json)
    try:
        # A private cache folder: the generator's fingerprint never hits a stale cache, and rows go to disk as they
        # come instead of piling up in memory.
        ds = Dataset.from_generator(
            _rows,
            features=features,
            gen_kwargs={"n": n, "workers": workers, "kwargs": kwargs, "progress": _Opaque(progress)},
            cache_dir=str(work / "cache"),
        )
        ds.info.description = json.dumps({"generator": "rl.synth.write_dataset", "n": n, **kwargs})
        ds.save_to_disk(str(work / "data"))
        del ds
        if out.exists():
            # Swap, then delete: the old set stays whole until the new one is in place.
            os.replace(out, work / "old")
        os.replace(work / "data", out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if bars:
            datasets.enable_progress_bars()
    return out


def load_dataset(path: str | Path):
    """Load a set written by :func:`write_dataset` (a ``datasets.Dataset``); one-line error when it is not one."""
    from datasets import load_from_disk

    path = Path(path)
    if not (path / "dataset_info.json").is_file():
        raise FileNotFoundError(f"{path} is not a dataset folder; write one with `rnr synth --out {path}`")
    ds = load_from_disk(str(path))
    missing = [c for c in ("image", "target", "prompt_id", "width", "height") if c not in ds.column_names]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; write it with `rnr synth`")
    return ds


# ------------------------------------------------------------------------------------- training views of a set


def _chat(prompts: dict, prompt_id: str, width: int, height: int) -> list[dict]:
    # A string user turn: TRL puts the image block before its text, the order the backends send.
    system, user = prompts[prompt_id].render(width=width, height=height)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _open(path: str | Path, max_samples: int | None):
    from prompts import load_prompt

    ds = load_dataset(path)
    if max_samples is not None:
        ds = ds.select(range(min(int(max_samples), len(ds))))
    return ds, {pid: load_prompt(*pid.split("/", 1)) for pid in set(ds["prompt_id"])}


def sft_dataset(path: str | Path, max_samples: int | None = None):
    """The set as TRL conversational prompt-completion rows with one ``image`` each (supervised fine-tuning).

    The prompt is the ``diagnose`` prompt the set was written for, exactly as the backends send it; the completion
    is the ``target``. Rows are built on access (``with_transform``), so nothing is copied next to the set.
    """
    ds, prompts = _open(path, max_samples)

    def to_chat(batch: dict) -> dict:
        rows = zip(batch["prompt_id"], batch["width"], batch["height"], batch["target"], strict=True)
        prompt, completion = [], []
        for pid, width, height, target in rows:
            prompt.append(_chat(prompts, pid, width, height))
            completion.append([{"role": "assistant", "content": target}])
        return {"image": batch["image"], "prompt": prompt, "completion": completion}

    return ds.with_transform(to_chat, columns=["image", "prompt_id", "width", "height", "target"])


def generator_settings(ds) -> dict | None:
    """The :func:`write_dataset` settings a set was drawn with (seed, size, photos, ...), or ``None`` if unknown."""
    try:
        info = json.loads(ds.info.description or "")
    except (TypeError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("generator") == "rl.synth.write_dataset" else None


def clean_crop(generator: dict, index: int, photo: str, seed: int) -> np.ndarray | None:
    """The clean crop of sample ``index`` as ``uint8``, or ``None`` when it cannot be reproduced.

    Repeats :func:`make_sample`'s draws from ``(generator seed, index)``; the redrawn photo and sample seed must
    equal the row's, which checks the crop is the one the sample was made from.
    """
    _, drawn, clean, sample_seed = _draw_crop(
        int(generator["seed"]), int(index), list(generator["photos"]), generator["size"]
    )
    return to_uint8(clean) if drawn == photo and sample_seed == int(seed) else None


def prompt_dataset(path: str | Path, max_samples: int | None = None):
    """The set as TRL conversational prompts with ``image``, ``record`` and ``clean`` (PIL or None) columns (GRPO).

    ``clean`` is the clean crop, regenerated from the set's generator settings (:func:`clean_crop`), for the
    fidelity reward; ``None`` where it cannot be reproduced.
    """
    from PIL import Image

    ds, prompts = _open(path, max_samples)
    if "record" not in ds.column_names:
        raise ValueError(f"{path} lacks the record column; write it with `rnr synth`")
    generator = generator_settings(ds)
    ds = ds.add_column("index", list(range(len(ds))))

    def to_chat(batch: dict) -> dict:
        prompt, clean = [], []
        for i, pid, width, height, photo, seed in zip(
            batch["index"], batch["prompt_id"], batch["width"], batch["height"], batch["photo"], batch["seed"],
            strict=True,
        ):  # fmt: skip
            prompt.append(_chat(prompts, pid, width, height))
            crop = clean_crop(generator, i, photo, seed) if generator else None
            clean.append(None if crop is None or crop.shape[:2] != (height, width) else Image.fromarray(crop))
        return {"prompt": prompt, "image": batch["image"], "record": batch["record"], "clean": clean}

    return ds.with_transform(
        to_chat, columns=["index", "image", "record", "prompt_id", "width", "height", "photo", "seed"]
    )
