"""Fresh zoo crops no setting was chosen on: the agent's gain per pair of kinds, on held-out and calibration photos.

    python bench/zoo_crops.py [--pairs low_light+noise,haze+blur] [--n 60] [--out bench/out/zoo_crops.json]
                              [--against OTHER.json]

The protocols (``bench/protocols.py``) are what settings are chosen on; a change that gains only there has been fitted
to them. This draws other crops: for each split (the held-out photos, :data:`rl.photos.EVALUATION_PHOTOS`, seed
:data:`SEEDS` ``["held"]``; the calibration photos, seed ``["cal"]``) ``--n`` crops of 256 px, cycling through the
photos and through ``--pairs``; each kind of a pair drawn from every model the zoo has for it
(:data:`rl.degradations.MODELS`), applied in the pair's order and saved as 8 bits after each step. Each crop is
restored by ``agent.run.restore_image`` with the default backends; the gain is its PSNR minus the input's against the
clean crop, harm a gain below -0.5 dB.

It prints, per split and pair, the crops, the summed gain and the harmed count, and writes every crop's gain to
``--out``. ``--against`` a JSON this script wrote from another checkout (the same arguments) adds the summed
difference and every crop that moved by more than 0.01 dB: an A/B of two versions on crops neither was tuned on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

#: The generator seed of each split's crops and degradations.
SEEDS = {"held": 900, "cal": 901}
HARM_DB = -0.5


def crops(split: str, n: int, pairs: list[list[str]]):
    """``(name, clean, degraded)`` for ``n`` crops of ``split``, both float32 RGB on 8-bit levels."""
    from reasoner.imageio import to_uint8
    from rl.degradations import MODELS, apply, sample_ops
    from rl.photos import CALIBRATION_PHOTOS, EVALUATION_PHOTOS, load_photo, random_crop

    photos = EVALUATION_PHOTOS if split == "held" else CALIBRATION_PHOTOS
    rng = np.random.default_rng(SEEDS[split])

    def eight_bit(img):
        return to_uint8(img).astype(np.float32) / np.float32(255.0)

    for i in range(n):
        photo, pair = photos[i % len(photos)], pairs[i % len(pairs)]
        clean = img = eight_bit(random_crop(load_photo(photo), rng, 256))
        for kind in pair:
            img = eight_bit(apply(img, sample_ops(rng, kinds=[kind], models={kind: list(MODELS[kind])})))
        yield f"{split}_{i}_{photo}_{'+'.join(pair)}", clean, img


def run(n: int, pairs: list[list[str]]) -> dict[str, float]:
    """Every crop's gain (dB) by name."""
    from agent.run import restore_image
    from reasoner.imageio import to_uint8
    from restorer.metrics import psnr

    gains = {}
    for split in SEEDS:
        for name, clean, img in crops(split, n, pairs):
            out, _ = restore_image(img)
            ref = to_uint8(clean)
            gains[name] = psnr(ref, to_uint8(out)) - psnr(ref, to_uint8(img))
    return gains


def table(gains: dict[str, float], pairs: list[list[str]], other: dict[str, float] | None) -> Table:
    """Per split and pair: crops, summed gain, harmed, and with ``other`` the summed difference and crops moved."""
    t = Table(title="Fresh zoo crops: rnr gain over the input (dB)")
    extra = ("vs other", "moved up / down") if other else ()
    for col in ("split", "pair", "crops", "gain summed", "harmed", *extra):
        t.add_column(col, justify="left" if col in ("split", "pair") else "right")
    joined = ["+".join(p) for p in pairs]

    def pair_of(name: str) -> str | None:  # the longest pair the name ends with ("blur" is a suffix of "motion_blur")
        return max((p for p in joined if name.endswith(f"_{p}")), key=len, default=None)

    for split in SEEDS:
        for pair in joined:
            names = [k for k in gains if k.startswith(f"{split}_") and pair_of(k) == pair]
            row = [split, pair, str(len(names)), f"{sum(gains[k] for k in names):+.2f}",
                   str(sum(gains[k] < HARM_DB for k in names))]  # fmt: skip
            if other:
                diff = [gains[k] - other[k] for k in names if k in other]
                moved = [d for d in diff if abs(d) > 0.01]
                row += [f"{sum(diff):+.2f}", f"{sum(d > 0 for d in moved)} / {sum(d < 0 for d in moved)}"]
            t.add_row(*row)
    return t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="low_light+noise,haze+blur", help="kinds applied in order, '+'-joined")
    ap.add_argument("--n", type=int, default=60, help="crops per split")
    ap.add_argument("--out", type=Path, default=Path("bench/out/zoo_crops.json"))
    ap.add_argument("--against", type=Path, help="a JSON this script wrote from another checkout")
    args = ap.parse_args(argv)
    from reasoner.schema import KINDS

    pairs = [p.split("+") for p in args.pairs.split(",")]
    bad = sorted({k for p in pairs for k in p} - set(KINDS))
    if bad:
        ap.error(f"--pairs: unknown kinds {bad}; expected some of {sorted(KINDS)}")
    other = None
    if args.against:
        try:
            other = json.loads(args.against.read_text())["gains"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            ap.error(f"--against {args.against}: not a JSON this script wrote ({type(e).__name__}: {e})")
    gains = run(args.n, pairs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps({"pairs": args.pairs, "n": args.n, "seeds": SEEDS, "gains": gains}, indent=1) + "\n")
    tmp.replace(args.out)
    console = Console(width=120)
    console.print(table(gains, pairs, other))
    if other:
        moved = sorted((gains[k] - other[k], k) for k in gains if k in other and abs(gains[k] - other[k]) > 0.01)
        for d, k in moved:
            console.print(f"  {d:+.2f}  {k}")
    console.print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
