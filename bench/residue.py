"""What a restoration left: how often the re-scoring reports a restored kind on the output, and on outputs with none.

    python bench/residue.py [--crops 3] [--seed 0] [--workers 2]

The evidence behind :data:`reasoner.measure.backend.RESIDUE_SHARE` (an output is read for each kind restored on the
way to it from a lower presence than an input is). Crops (256 px) of the calibration photos (where the share was
chosen) and of the held-out photos (the protocols' scenes, gradio's photos among them when installed), per kind:

* **null**: the kind's operator run on the clean crop, the diagnosis forced as a person would force it
  (:meth:`~reasoner.measure.backend.MeasureReasoner.forced_entry`): nothing was there to remove, so a residue read
  on the output is a false one;
* **restored**: the crop under each of the kind's zoo models, 8-bit, diagnosed and, when the kind is found,
  restored with the diagnosis' plan (:func:`restorer.plan.plan_from_record`).

Each output is re-scored as the agent re-scores it (``restored=True``), once as before (the input's presence) and
once reading what is left of the kind (``residue_of``). Prints, per split and kind, the share of outputs reporting
the kind each way, and for the restored crops the true PSNR change of those reported with a residue and of those
without (8-bit, ``restorer.metrics.psnr``): a residue read should mark outputs the operator did less for.
"""

from __future__ import annotations

import argparse
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

KINDS = ("haze", "rain", "motion_blur", "blur", "low_resolution", "low_light", "noise", "jpeg")


def photo_rows(job: tuple[str, str, int, int]) -> list[dict]:
    """Every null and restored output of ``crops`` crops of one photo (``job``: split, name, seed, crops)."""
    from reasoner import load_reasoner
    from reasoner.imageio import to_uint8
    from restorer.classical import ClassicalRestorer
    from restorer.metrics import psnr
    from restorer.plan import plan_from_record
    from rl.degradations import MODELS
    from rl.photos import random_crop

    split, name, seed, crops = job
    measure, restorer = load_reasoner("measure"), ClassicalRestorer()
    rng = np.random.default_rng(seed)

    def reported(out: np.ndarray, kind: str) -> tuple[bool, bool]:
        def found(residue: tuple[str, ...]) -> bool:
            record = measure.diagnose_measured(out, restored=True, residue_of=residue)[0]
            return any(d.kind == kind for d in record.degradations)

        return found(()), found((kind,))

    photo, out_rows = _photos(split)[name], []
    for _ in range(crops):
        clean = random_crop(photo, rng, 256)
        base = measure.diagnose(clean)
        for kind in KINDS:
            entry = measure.forced_entry(clean, kind)
            if entry is None:
                continue
            record = base.model_copy(update={"degradations": [entry]})
            out = restorer.restore(clean, record, [], plan_from_record(record)).pixels
            usual, residue = reported(out, kind)
            out_rows.append(dict(split=split, kind=kind, model="null", usual=usual, residue=residue))
            for model_name, model in MODELS[kind].items():
                x = to_uint8(np.clip(model.apply(clean, model.sample(rng)), 0, 1)).astype(np.float32) / 255
                record = measure.diagnose(x)
                if kind not in {d.kind for d in record.degradations}:
                    continue
                out = restorer.restore(x, record, [], plan_from_record(record)).pixels
                usual, residue = reported(out, kind)
                gain = psnr(to_uint8(clean), to_uint8(out)) - psnr(to_uint8(clean), to_uint8(x))
                out_rows.append(dict(split=split, kind=kind, model=model_name, usual=usual, residue=residue,
                                     gain=float(gain)))  # fmt: skip
    return out_rows


def _photos(split: str) -> dict[str, np.ndarray]:
    from protocols import held_out_photos

    from rl.photos import CALIBRATION_PHOTOS, load_photo

    return {n: load_photo(n) for n in CALIBRATION_PHOTOS} if split == "calibration" else held_out_photos()


def table(rows: list[dict]) -> Table:
    t = Table(title="Residue read on restorations' outputs (share of outputs reporting the restored kind)")
    for col in ("split", "kind", "null n", "null: as input", "null: residue", "restored n", "restored: as input",
                "restored: residue", "gain dB, residue / none"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("split", "kind") else "right")
    for split in ("calibration", "held-out"):
        for kind in KINDS:
            null = [r for r in rows if r["split"] == split and r["kind"] == kind and r["model"] == "null"]
            done = [r for r in rows if r["split"] == split and r["kind"] == kind and r["model"] != "null"]

            def share(rs: list[dict], key: str) -> str:
                return f"{np.mean([r[key] for r in rs]):.0%}" if rs else "-"

            def gain(rs: list[dict]) -> str:
                return f"{np.mean([r['gain'] for r in rs]):+.2f}" if rs else "-"

            with_residue = [r for r in done if r["residue"]]
            without = [r for r in done if not r["residue"]]
            t.add_row(split, kind, str(len(null)), share(null, "usual"), share(null, "residue"), str(len(done)),
                      share(done, "usual"), share(done, "residue"),
                      f"{gain(with_residue)} / {gain(without)}")  # fmt: skip
    return t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=3, help="crops per photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    from rl.photos import CALIBRATION_PHOTOS

    jobs = [("calibration", n, args.seed * 1000 + i, args.crops) for i, n in enumerate(CALIBRATION_PHOTOS)]
    jobs += [("held-out", n, args.seed * 1000 + 100 + i, args.crops) for i, n in enumerate(_photos("held-out"))]
    t0 = time.perf_counter()
    with Pool(args.workers) as pool:
        rows = [r for rs in pool.map(photo_rows, jobs) for r in rs]
    console = Console(width=160)
    console.print(table(rows))
    console.print(f"{len(rows)} outputs in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
