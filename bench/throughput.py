"""Throughput benchmark: images/s of the local and the Ray batch engines, and where each image's time goes.

    python bench/throughput.py [--n 200] [--workers 1,2] [--engines local,ray] [--out bench/out/throughput.json]

Both engines restore the same ``N`` synthetic 512x512 cases (held-out bundled photos, ``rl.photos``, cropped, resized
and degraded with ``rl.ground_truth.synthesize``; every eighth left clean) with the default backends, written once
as PNGs to a temporary folder. Ray runs on a warm local runtime: ``ray.init`` is timed apart, before the runs, so
images/s compares the engines and not Ray's start-up; each run still includes loading the backends in its workers,
as a user's run does. The per-stage split (diagnose, retrieve, restore, rescore, I/O, and the rest: plan, decide,
graph, checkpoints) comes from the manifest rows' trace timings. Prints tables, writes JSON and a PNG bar chart.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

STAGES = ("diagnose", "retrieve", "restore", "rescore", "io")
#: Ray on one machine may cost at most this share of the local engine's images/s at the same worker count.
RAY_MAX_LOSS = 0.15
#: 1 -> 2 workers counts as near-linear from this speed-up on.
MIN_SCALING = 1.8
COLORS = {
    "diagnose": (66, 133, 244), "retrieve": (251, 188, 5), "restore": (52, 168, 83), "rescore": (234, 67, 53),
    "io": (154, 160, 166), "other": (171, 71, 188),
}  # fmt: skip


def write_cases(folder: Path, n: int, seed: int = 0, size: int = 512) -> list[Path]:
    """Write ``n`` degraded ``size`` x ``size`` PNG cases into ``folder``, deterministic in ``seed``."""
    from reasoner.imageio import save_image
    from rl.ground_truth import synthesize
    from rl.photos import EVALUATION_PHOTOS, load_photo, random_crop

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        photo = EVALUATION_PHOTOS[i % len(EVALUATION_PHOTOS)]
        crop = random_crop(load_photo(photo), rng, size)
        # Some bundled photos are smaller than 512 px on a side: upscale those (bicubic overshoots, so clip).
        interp = cv2.INTER_CUBIC if min(crop.shape[:2]) < size else cv2.INTER_AREA
        crop = np.clip(cv2.resize(crop, (size, size), interpolation=interp), 0.0, 1.0)
        img = crop if i % 8 == 7 else synthesize(crop, rng, n_kinds=(1, 2)).image
        paths.append(save_image(folder / f"{i:04d}_{photo}.png", img))
    return paths


def run_engine(engine: str, workers: int, src: Path, out: Path) -> dict:
    """One timed batch run; returns images/s, start-up estimate and mean seconds per image by stage."""
    t0 = time.perf_counter()
    if engine == "ray":
        from agent.ray_engine import run_batch_ray

        summary = run_batch_ray([src], out, workers=workers)
    else:
        from agent.batch import run_batch

        summary = run_batch([src], out, workers=workers)
    wall = time.perf_counter() - t0
    rows = summary.done
    busy = sum(r["seconds"] for r in rows)
    stages = {s: sum(r["timings"].get(s, 0.0) for r in rows) / max(len(rows), 1) for s in STAGES}
    stages["other"] = busy / max(len(rows), 1) - sum(stages.values())
    return {
        "engine": engine,
        "workers": workers,
        "images": len(rows),
        "failed": len(summary.failed),
        "wall_s": wall,
        "images_per_s": len(rows) / wall,
        # Wall time not covered by per-image work spread over the workers: pool and backend start-up, scheduling.
        "startup_s": max(0.0, wall - busy / workers),
        "s_per_image": busy / max(len(rows), 1),
        "stages_s": stages,
    }


def targets(runs: list[dict]) -> list[dict]:
    """Ray-vs-local ratio per worker count and the 1->2 worker speed-up per engine, each with its target."""
    ips = {(r["engine"], r["workers"]): r["images_per_s"] for r in runs}
    out = []
    for (eng, w), v in ips.items():
        if eng == "ray" and ("local", w) in ips:
            ratio = v / ips[("local", w)]
            out.append({"metric": f"ray/local at {w} worker(s)", "value": ratio, "target": f">= {1 - RAY_MAX_LOSS}",
                        "met": ratio >= 1 - RAY_MAX_LOSS})  # fmt: skip
    for eng in dict.fromkeys(e for e, _ in ips):
        if (eng, 1) in ips and (eng, 2) in ips:
            s = ips[(eng, 2)] / ips[(eng, 1)]
            out.append({"metric": f"{eng} scaling 1->2 workers", "value": s, "target": f">= {MIN_SCALING}",
                        "met": s >= MIN_SCALING})  # fmt: skip
    return out


def chart(runs: list[dict], path: Path) -> None:
    """Two panels: images/s per engine and workers, and the stacked mean seconds per image by stage."""
    w, h, pad = 1000, 420, 50
    im = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(im)
    labels = [f"{r['engine']} x{r['workers']}" for r in runs]
    # Left: images/s.
    d.text((pad, 12), "images/s", fill="black")
    top = max(r["images_per_s"] for r in runs) or 1.0
    x0, x1, y0, y1 = pad, w // 2 - pad // 2, 40, h - 50
    bw = (x1 - x0) / max(len(runs), 1)
    for i, (r, lab) in enumerate(zip(runs, labels, strict=True)):
        bh = (y1 - y0) * r["images_per_s"] / top
        bx = x0 + i * bw + bw * 0.15
        d.rectangle([bx, y1 - bh, bx + bw * 0.7, y1], fill=(66, 133, 244) if r["engine"] == "local" else (234, 67, 53))
        d.text((bx, y1 - bh - 14), f"{r['images_per_s']:.2f}", fill="black")
        d.text((bx, y1 + 6), lab, fill="black")
    d.line([x0, y1, x1, y1], fill="black")
    # Right: stacked seconds per image.
    d.text((w // 2 + pad // 2, 12), "mean s/image by stage", fill="black")
    parts = ("diagnose", "retrieve", "restore", "rescore", "io", "other")
    top = max(sum(max(0.0, r["stages_s"][p]) for p in parts) for r in runs) or 1.0
    x0, x1 = w // 2 + pad // 2, w - pad
    bw = (x1 - x0) / max(len(runs), 1)
    for i, (r, lab) in enumerate(zip(runs, labels, strict=True)):
        bx, y = x0 + i * bw + bw * 0.15, float(y1)
        for p in parts:
            bh = (y1 - y0) * max(0.0, r["stages_s"][p]) / top
            d.rectangle([bx, y - bh, bx + bw * 0.7, y], fill=COLORS[p])
            y -= bh
        d.text((bx, y - 14), f"{r['s_per_image']:.3f}", fill="black")
        d.text((bx, y1 + 6), lab, fill="black")
    d.line([x0, y1, x1, y1], fill="black")
    for i, p in enumerate(parts):
        lx = x0 + i * (x1 - x0) / len(parts)
        d.rectangle([lx, h - 22, lx + 10, h - 12], fill=COLORS[p])
        d.text((lx + 14, h - 24), p, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def main(argv=None) -> int:
    """Run the benchmark; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="synthetic 512x512 cases (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--engines", default="local,ray", help="comma-separated: local, ray")
    ap.add_argument("--out", type=Path, default=Path("bench/out/throughput.json"))
    args = ap.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    engines = [e.strip() for e in args.engines.split(",")]
    # Wide enough for every column even when piped to a file (rich falls back to 80 columns there).
    con = Console(width=None if sys.stdout.isatty() else 160)

    # Import the agent once up front, so the first timed run does not pay for module loading the others skip.
    import agent.run  # noqa: F401

    result = {"n": args.n, "seed": args.seed, "cpus": os.cpu_count(), "backends": "defaults", "runs": []}
    with tempfile.TemporaryDirectory(prefix="rnr-throughput-") as tmp:
        src = Path(tmp) / "in"
        t0 = time.perf_counter()
        write_cases(src, args.n, args.seed)
        con.print(f"{args.n} cases written in {time.perf_counter() - t0:.1f} s", style="dim")
        for engine in engines:
            if engine == "ray":
                from agent.ray_engine import require_ray

                ray = require_ray()
                t0 = time.perf_counter()
                # One more CPU than the largest pool leaves room for Ray Data's own tasks, as the engine itself does.
                ray.init(num_cpus=max(workers) + 1, include_dashboard=False, logging_level=logging.WARNING)
                result["ray_init_s"] = time.perf_counter() - t0
            try:
                for w in workers:
                    r = run_engine(engine, w, src, Path(tmp) / f"out-{engine}-{w}")
                    con.print(f"{engine} x{w}: {r['images_per_s']:.2f} images/s", style="dim")
                    result["runs"].append(r)
            finally:
                if engine == "ray":
                    ray.shutdown()
    runs = result["runs"]
    result["targets"] = targets(runs)

    t = Table(title=f"throughput on {args.n} synthetic 512x512 cases, default backends ({os.cpu_count()} CPUs)")
    for col in ("engine", "workers", "images", "failed", "wall s", "images/s", "start-up s", "s/image",
                *STAGES, "other"):  # fmt: skip
        t.add_column(col, justify="left" if col == "engine" else "right")
    for r in runs:
        t.add_row(r["engine"], str(r["workers"]), str(r["images"]), str(r["failed"]), f"{r['wall_s']:.1f}",
                  f"{r['images_per_s']:.2f}", f"{r['startup_s']:.1f}", f"{r['s_per_image']:.3f}",
                  *(f"{r['stages_s'][s]:.3f}" for s in (*STAGES, "other")))  # fmt: skip
    con.print(t)
    if "ray_init_s" in result:
        con.print(f"ray.init (warm runtime, not in images/s): {result['ray_init_s']:.1f} s")
    s = Table(title="targets")
    for col in ("metric", "measured", "target", "met"):
        s.add_column(col)
    for row in result["targets"]:
        s.add_row(row["metric"], f"{row['value']:.3f}", row["target"], "yes" if row["met"] else "NO")
    con.print(s)

    png = args.out.with_suffix(".png")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    chart(runs, png)
    con.print(f"written {args.out} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
