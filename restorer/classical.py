"""The default CPU restorer: classical OpenCV / scikit-image operators driven by the plan's physical factors.

Each operation of the plan runs, in the plan's order, its kind's operator from :data:`restorer.operators.OPERATORS`
with the record's factors (``op.params``) scaled by ``op.strength``; reference-guided colour transfer runs last.
Images above :data:`restorer.tiling.TILE_PIXELS` go through every operator tile by tile with overlap
(:mod:`restorer.tiling`), in place after the first step: denoising, deblocking, rain removal and the deconvolutions
are local as they are; brightening and dehazing get what they read from the whole image (tone curve, transmission
map, noise level) measured once on bounded proxies (``Operator.prepare``); the deconvolutions' stability guard is
judged once per image and the error level they are told measured once on crops spread over the frame. Reference
colour transfer (global statistics) still sees the whole image.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

import numpy as np

from reasoner.kinds import LOWPASS
from reasoner.schema import DiagnosisRecord
from restorer.base import ReferenceImage, RestoreOutput
from restorer.operators import OPERATORS, combine_psfs, deconvolve, estimate_noise, transfer_color
from restorer.operators.deconvolution import (
    WIENER_PER_VAR,
    GuardTally,
    clamp_overshoot,
    clamp_to_footprint,
    error_sigma,
    image_wide_guard,
)
from restorer.operators.denoise import denoise_deblock
from restorer.operators.derain import REACH as DERAIN_REACH
from restorer.operators.filters import CHROMA_RADIUS, WIENER_PATCH, as_image
from restorer.operators.low_light import BLOTCH_RADIUS
from restorer.plan import Operation, Plan
from restorer.tiling import (
    DECONV_TILE,
    TILE,
    TILE_PIXELS,
    map_tiles,
    map_tiles_inplace,
    needs_tiling,
    proxy_crops,
    tiles,
)

#: Kinds whose operator is local (its output at a pixel depends on a bounded neighbourhood), with that reach in px
#: for those that do not depend on a kernel: non-local means (3 px patches, 11 px search), rain removal (4 px
#: shifts and a 17 px line opening, per pass), brightening and dehazing once their curve or transmission map is
#: prepared; denoising reads the patches of its Wiener step around the non-local means (WIENER_PATCH px more), and
#: denoising and brightening also clean chroma over nested windows (3 * CHROMA_RADIUS px more), brightening its
#: coarse colour blotches too (3 * BLOTCH_RADIUS px more).
#: The low-pass kinds reach as far as their kernel, times the iterations.
NLM_REACH = 8
LOCAL_REACH = {"noise": NLM_REACH + WIENER_PATCH + 3 * CHROMA_RADIUS, "jpeg": NLM_REACH, "rain": DERAIN_REACH,
               "low_light": NLM_REACH + 3 * CHROMA_RADIUS + 3 * BLOTCH_RADIUS, "haze": 16}  # fmt: skip
#: Tiles a tiled deconvolution runs first to judge its stability guard for the whole image (a bounded sample; their
#: results are kept when the guard does not bind, so the sample costs nothing then).
GUARD_SAMPLE_TILES = 6


class ClassicalRestorer:
    """Runs the plan with classical operators; reference colour transfer when a reference is relevant enough.

    Args:
        color_transfer_min_score: least relevance score of the top reference for colour transfer to run.
        color_transfer_max_weight: blend weight of the transfer at score 1; it rises linearly from 0 at
            ``color_transfer_min_score``.
        tile_pixels: images with more pixels than this are restored tile by tile (:mod:`restorer.tiling`).
        tile: core side (px) of the tiles for non-local means and rain removal.
        deconv_tile: core side (px) of the tiles for Wiener deconvolutions (symmetric PSFs, whose FFTs of the
            mirrored tile take many tile-sized arrays); Richardson-Lucy takes ``tile``.

    """

    name = "classical"
    #: Every operator's output at a pixel depends on a bounded neighbourhood (plus image-wide estimates): the graph may
    #: judge a big photo's attempts on crops of it and run only the chosen plan at full size (:mod:`agent.crops`).
    local = True

    def __init__(
        self,
        *,
        color_transfer_min_score: float = 0.6,
        color_transfer_max_weight: float = 0.5,
        tile_pixels: int = TILE_PIXELS,
        tile: int = TILE,
        deconv_tile: int = DECONV_TILE,
    ) -> None:
        if not 0.0 <= color_transfer_min_score <= 1.0:
            raise ValueError(f"color_transfer_min_score must be in [0, 1], got {color_transfer_min_score!r}")
        if not 0.0 <= color_transfer_max_weight <= 1.0:
            raise ValueError(f"color_transfer_max_weight must be in [0, 1], got {color_transfer_max_weight!r}")
        self.color_transfer_min_score = float(color_transfer_min_score)
        self.color_transfer_max_weight = float(color_transfer_max_weight)
        self.tile_pixels, self.tile, self.deconv_tile = int(tile_pixels), int(tile), int(deconv_tile)

    def restore(
        self, image: np.ndarray, record: DiagnosisRecord, references: Sequence[ReferenceImage], plan: Plan
    ) -> RestoreOutput:
        """Restore ``image`` (float32 HxWx3 RGB in [0, 1], not modified); the pixels are a new image of its shape.

        Operations with strength 0 are skipped; an empty plan (and no colour transfer) returns an exact copy.
        Factors missing from ``op.params`` are taken from the record's entry for that kind. ``run`` is None.
        """
        tiled = needs_tiling(np.shape(image), self.tile_pixels)
        x = as_image(image) if not tiled else image  # tiles are checked one by one; the input is only read
        owned = not tiled  # whether x may be overwritten (never the caller's image)
        noise_left: float | None = None  # std (0-255) of the noise a denoise step left, for the deconvolutions
        quality = _jpeg_quality(plan, record)  # the compression error regularises deconvolutions too
        ops = [op for op in plan.operations if op.strength > 0]
        lowpass = [op for op in ops if op.kind in LOWPASS]
        folded = _foldable(ops, record)
        filtered = False  # whether a step so far filtered noise or compression out (see Operator.after_filtering)
        for op in ops:
            if folded is not None and op is folded[1]:
                continue  # removed with the compression error in the jpeg step's single pass
            if folded is not None and op is folded[0]:
                (quality_f,) = _factors(op, record, OPERATORS["jpeg"].factors)
                sigma, model = _factors(folded[1], record, OPERATORS["noise"].factors)
                jpeg_strength = op.strength * (DEBLOCK_BEFORE_DECONVOLUTION if lowpass else 1.0)
                fn = functools.partial(denoise_deblock, sigma=sigma, quality=quality_f, strength=folded[1].strength,
                                       jpeg_strength=jpeg_strength)  # fmt: skip
                if tiled:
                    x, owned = self._tiled(fn, x, owned, self.tile, NLM_REACH), True  # one NLM pass, no clean-up
                else:
                    x, owned = fn(x), True
                noise_left = OPERATORS["noise"].leaves_noise(sigma, model, strength=folded[1].strength)
                filtered = True
                continue
            operator = OPERATORS[op.kind]
            params = _factors(op, record, operator.factors)
            strength = op.strength
            if op.kind == "jpeg" and lowpass:
                strength *= DEBLOCK_BEFORE_DECONVOLUTION
            if op.kind in LOWPASS and len(lowpass) > 1:
                if op is lowpass[0]:
                    if tiled:
                        noise_left = _proxy_noise(x) if noise_left is None else noise_left
                        fn = lambda t: _joint_deconvolution(t, lowpass, record, noise_left, quality)  # noqa: E731
                        psf = _joint_psf(lowpass, record)[0]
                        size = self.deconv_tile if _symmetric(psf) else self.tile
                        x, owned = self._tiled(fn, x, owned, size, _deconv_reach(psf), guard=True), True
                    else:
                        x = _joint_deconvolution(x, lowpass, record, noise_left, quality)
                continue
            extra = {"noise": noise_left, "quality": quality} if operator.error_aware else {}
            if operator.after_filtering:
                extra["filtered"] = filtered
            if operator.from_input is not None:
                extra |= operator.from_input(image)
            if tiled and operator.prepare is not None:  # global quantities measured once, the rest per tile
                kw = {**extra, **operator.prepare(x, *params, strength=strength, **extra)}
                fn = functools.partial(_run_tile, operator.run, params, strength, kw, x.shape[:2])
                x, owned = self._tiled(fn, x, owned, self.tile, LOCAL_REACH[op.kind], boxed=True), True
            elif tiled and (op.kind in LOCAL_REACH or operator.psf is not None):
                if operator.error_aware and noise_left is None:  # measured once, not per tile
                    noise_left = extra["noise"] = _proxy_noise(x)
                reach, size = LOCAL_REACH.get(op.kind), self.tile
                if reach is None:
                    psf = operator.psf(*params)[0]
                    reach, size = _deconv_reach(psf), self.deconv_tile if _symmetric(psf) else self.tile
                fn = lambda t, run=operator.run, p=params, s=strength, e=extra: run(t, *p, strength=s, **e)  # noqa: E731
                x, owned = self._tiled(fn, x, owned, size, reach, guard=operator.psf is not None), True
            else:  # global operators (reference colour transfer aside, none today) see the whole image
                x, owned = operator.run(x, *params, strength=strength, **extra), True
            if operator.leaves_noise is not None:
                noise_left = operator.leaves_noise(*params, strength=strength)
            filtered = filtered or op.kind in ("noise", "jpeg")
        if tiled and not owned:  # nothing ran: the result is still a new array
            x = as_image(image)
        weight = self.color_transfer_weight(references) if plan.use_references else 0.0
        if weight > 0:
            x = transfer_color(x, max(references, key=lambda r: r.score).pixels, weight)
        return RestoreOutput(x)

    def _tiled(
        self, fn, x: np.ndarray, owned: bool, tile: int, overlap: int, guard: bool = False, boxed: bool = False
    ) -> np.ndarray:
        """``fn`` over ``x`` tile by tile: in place when ``x`` is the restorer's own, else into a new image.

        ``guard``: ``fn`` deconvolves; its stability guard is judged once for the image, on up to
        :data:`GUARD_SAMPLE_TILES` tiles spread over it, and that verdict applied to every tile.
        """
        overlap = min(overlap, tile // 2)
        if guard:
            tally = GuardTally()
            boxes = [padded for padded, _ in tiles(*x.shape[:2], tile, overlap)]
            pick = np.linspace(0, len(boxes) - 1, min(GUARD_SAMPLE_TILES, len(boxes))).round().astype(int)
            sampled = {}
            with image_wide_guard(tally):
                for i in np.unique(pick):
                    sampled[_key(boxes[i])] = fn(np.ascontiguousarray(x[boxes[i]]))
            if tally.freeze() < 1.0:  # the guard binds: every tile is computed again under it
                sampled.clear()

            def reuse(t, box):  # a sampled tile's result is final when the guard does not bind
                hit = sampled.pop(_key(box), None)
                return hit if hit is not None else fn(t)

            with image_wide_guard(tally):
                return self._tiled(reuse, x, owned, tile, overlap, boxed=True)
        if owned:
            return map_tiles_inplace(fn, x, tile=tile, overlap=overlap, boxed=boxed)
        return map_tiles(fn, x, tile=tile, overlap=overlap, boxed=boxed)

    def color_transfer_weight(self, references: Sequence[ReferenceImage]) -> float:
        """Blend weight of the colour transfer for these references: 0 below the threshold score, then linear."""
        if not references:
            return 0.0
        score = max(float(r.score) for r in references)
        lo = self.color_transfer_min_score
        if score < lo:
            return 0.0
        frac = 1.0 if lo >= 1.0 else (score - lo) / (1.0 - lo)
        return self.color_transfer_max_weight * min(frac, 1.0)


#: Share of the deblocking strength used when a deconvolution follows (tuned): that deconvolution is regularised by
#: the compression error itself, and a full deblocking pass flattens the little detail a blurred image has left.
DEBLOCK_BEFORE_DECONVOLUTION = 0.4
#: Overshoot clamp radius of a joint deconvolution that includes low resolution (as :func:`sharpen_resolution`).
_JOINT_CLAMP = 1


def _joint_deconvolution(x, ops: list[Operation], record: DiagnosisRecord, noise, quality) -> np.ndarray:
    """Several low-pass degradations undone by one deconvolution of their combined PSF.

    Deconvolving them one after the other would amplify, in the second, what the first could not restore (a
    defocus inverted on a down-sampled image rings at the frequencies the down-sampling removed). Each PSF enters
    at its operation's strength (an unsure detection as a partial blur, :func:`combine_psfs`); the prior is the
    strongest of their least balances plus the error term.
    """
    psf, floor = _joint_psf(ops, record)
    sigma = error_sigma(noise, quality, x)
    boost = max(max(op.strength for op in ops), 1.0)
    out = deconvolve(x, psf, balance=(floor + WIENER_PER_VAR * sigma**2) / boost**2)
    if any(op.kind == "low_resolution" for op in ops):
        out = clamp_overshoot(out, x, _JOINT_CLAMP)
    if any(op.kind == "motion_blur" for op in ops):
        out = clamp_to_footprint(out, x, psf)
    return out


def _key(box: tuple[slice, slice]) -> tuple[int, int, int, int]:
    return box[0].start, box[0].stop, box[1].start, box[1].stop


def _run_tile(
    run, params: list, strength: float, kw: dict, shape: tuple[int, int], tile: np.ndarray, box
) -> np.ndarray:
    """``run`` on one tile, with the prepared per-pixel maps (arrays of the image's height and width) cut alike.

    An operator that takes ``origin`` (one working on a grid of the whole image) is given the tile's top-left corner.
    """
    cut = {k: v[box] if isinstance(v, np.ndarray) and v.shape[:2] == shape else v for k, v in kw.items()}
    if "origin" in inspect.signature(run).parameters:
        cut["origin"] = (box[0].start or 0, box[1].start or 0)
    return run(tile, *params, strength=strength, **cut)


def _joint_psf(ops: list[Operation], record: DiagnosisRecord) -> tuple[np.ndarray, float]:
    """The combined PSF of several low-pass operations (each at its strength) and the strongest least balance."""
    parts, floor = [], 0.0
    for op in ops:
        operator = OPERATORS[op.kind]
        psf, least = operator.psf(*_factors(op, record, operator.factors))
        parts.append((psf, op.strength))
        floor = max(floor, least)
    return combine_psfs(parts), floor


def _symmetric(psf: np.ndarray) -> bool:
    """Whether :func:`deconvolve` takes the Wiener path for ``psf`` (FFTs of the mirrored tile: smaller tiles)."""
    return bool(np.allclose(psf, psf[::-1], atol=1e-9) and np.allclose(psf, psf[:, ::-1], atol=1e-9))


def _deconv_reach(psf: np.ndarray) -> int:
    """Context (px) a deconvolution tile needs around its core.

    Richardson-Lucy spreads by the kernel radius per iteration and Wiener's inverse decays over a few kernel
    widths; the mirrored tile border must sit beyond both.
    """
    return int(max(32, 4 * max(psf.shape)))


def _proxy_noise(x: np.ndarray) -> float:
    """The noise std (0-255) of a large image, measured on crops spread over it (a block quantile: crops suffice)."""
    return estimate_noise(proxy_crops(x))


def _jpeg_quality(plan: Plan, record: DiagnosisRecord) -> float | None:
    """The JPEG quality of the plan's compression step (None without one), dosed like the step itself."""
    op = next((op for op in plan.operations if op.kind == "jpeg" and op.strength > 0), None)
    if op is None:
        return None
    (quality,) = _factors(op, record, OPERATORS["jpeg"].factors)
    # A weakly dosed (unsure) detection counts as lighter compression, as the deblocking step treats it.
    return max(1.0, 100.0 - (100.0 - float(quality)) * min(op.strength, 1.0))


def _foldable(ops: list[Operation], record: DiagnosisRecord) -> tuple[Operation, Operation] | None:
    """``(jpeg, noise)`` when the plan deblocks then removes Gaussian noise, one step after the other; else None.

    Both errors are then removed in one pass (:func:`restorer.operators.denoise.denoise_deblock`; before a
    deconvolution with the deblocking share :data:`DEBLOCK_BEFORE_DECONVOLUTION`, as two passes would).
    """
    kinds = [op.kind for op in ops]
    if "jpeg" not in kinds or "noise" not in kinds:
        return None
    i, j = kinds.index("jpeg"), kinds.index("noise")
    if j != i + 1:
        return None
    (model,) = _factors(ops[j], record, ("model",))
    return (ops[i], ops[j]) if model == "gaussian" else None


def _factors(op: Operation, record: DiagnosisRecord, names: tuple[str, ...]) -> list:
    entry = next((d for d in getattr(record, "degradations", ()) if d.kind == op.kind), None)
    fallback = entry.factors.model_dump() if entry is not None else {}
    merged = {**fallback, **op.params}
    missing = [n for n in names if n not in merged]
    if missing:
        raise ValueError(
            f"{op.kind} operation lacks factors {missing}: give them in op.params or in the record's {op.kind} entry"
        )
    return [merged[n] for n in names]
