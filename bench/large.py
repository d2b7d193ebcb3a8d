"""Big photos: ``rnr restore`` on 24 MP and 50 MP camera-sized JPEGs against a bare OpenCV non-local-means pass.

    python bench/large.py [--sizes 24,50] [--sigma 12] [--quality 40] [--out bench/out/large.json]

Each photo is a bundled one (``skimage.data.coffee``) up-scaled with ``cv2.resize`` (bicubic) to 6000x4000 (24 MP)
or 8640x5760 (50 MP), given Gaussian noise (``rl.degradations``, sigma on the 0-255 scale) and saved as a JPEG at
``--quality`` in a temporary folder (nothing is downloaded). The bare pass is ``cv2.fastNlMeansDenoisingColored``
with OpenCV's defaults (h = hColor = 10, 7 px patches, 21 px search) on the decoded JPEG. Both run as
subprocesses, one at a time, measured by wall time and peak resident memory of the whole process tree (psutil,
sampled every 50 ms; ``rnr restore`` runs its default single worker, a child process of the CLI, whose memory is
included). Photos this size are judged on crops and only the chosen plan runs at full size (:mod:`agent.crops`);
the table says so; a second ``rnr`` run forces the accept path (attempts judged by severities, so the chosen plan
runs at full size), its worst case. One run each: machines are noisy, read the ratio with the load printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

SIZES = {24: (6000, 4000), 50: (8640, 5760)}

_NLM = """
import sys, time, cv2
img = cv2.imread(sys.argv[1], cv2.IMREAD_COLOR)
t0 = time.perf_counter()
cv2.fastNlMeansDenoisingColored(img, None, 10, 10, 7, 21)
print(time.perf_counter() - t0)
"""


#: The accept path, forced: the same restore judged by the scorer's severities (which read the noise drop as better),
#: so the chosen plan runs at full size and is judged there; the worst case of a big photo's wall time.
_ACCEPT = """
import sys
from agent.run import restore_image
from agent.state import Settings
_, trace = restore_image(sys.argv[1], settings=Settings(artefact_scorer=False), out=sys.argv[2])
print(trace.model_dump_json())
"""


def build_photo(path: Path, size: tuple[int, int], sigma: float, quality: int) -> None:
    """A bundled photo up-scaled to ``size`` (W, H), noise ``sigma`` (0-255) added, saved as JPEG ``quality``."""
    from PIL import Image
    from skimage import data

    from rl.degradations import NoiseParams, apply_noise

    img = cv2.resize(data.coffee(), size, interpolation=cv2.INTER_CUBIC).astype(np.float32) / np.float32(255)
    img = apply_noise(img, NoiseParams(sigma=float(sigma), seed=0))
    np.multiply(img, 255, out=img)
    np.add(img, 0.5, out=img)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=int(quality))


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; its wall time (s), peak RSS of its process tree (GB) and stdout."""
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [proc, *proc.children(recursive=True)]
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, peak / 1e9, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="24,50", help="Megapixel sizes to run, among 24 and 50.")
    ap.add_argument("--sigma", type=float, default=12.0, help="Noise std (0-255) added before the JPEG.")
    ap.add_argument("--quality", type=int, default=40, help="JPEG quality of the test photos.")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "large.json")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnr-large-") as tmp:
        for mp in (int(s) for s in args.sizes.split(",")):
            photo = Path(tmp) / f"photo{mp}mp.jpg"
            build_photo(photo, SIZES[mp], args.sigma, args.quality)
            load = os.getloadavg()[0]
            nlm_s, nlm_gb, _ = run_measured([sys.executable, "-c", _NLM, str(photo)], env)
            out = Path(tmp) / f"out{mp}"
            cli = [sys.executable, "-c", "from agent.cli import app; app()", "restore", str(photo), "--out", str(out)]
            rnr_s, rnr_gb, _ = run_measured(cli, env)
            trace = json.loads((out / f"{photo.stem}.json").read_text())
            acc_s, acc_gb, acc_out = run_measured([sys.executable, "-c", _ACCEPT, str(photo), str(out / "forced.jpg")],
                                                  env)  # fmt: skip
            forced = json.loads(acc_out)
            kinds = [d["kind"] for d in trace["record_before"]["degradations"]]
            w, h = SIZES[mp]
            rows.append({
                "photo": photo.name, "mp": round(w * h / 1e6, 1), "nlm_s": round(nlm_s, 1), "rnr_s": round(rnr_s, 1),
                "ratio": round(rnr_s / nlm_s, 2), "rnr_peak_gb": round(rnr_gb, 2), "nlm_peak_gb": round(nlm_gb, 2),
                "kinds": kinds, "attempts": len(trace["attempts"]), "decision": trace["decision"],
                "timings": trace["timings"], "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
                "judged_on": "crops" if trace.get("full_size") else "whole photo",
                "full_size_verdict": (trace.get("full_size") or {}).get("verdict"),
                "attempt_verdicts": [f"{a['verdict']} ({a['reason'][:80]})" for a in trace["attempts"]],
                "accept_s": round(acc_s, 1), "accept_ratio": round(acc_s / nlm_s, 2),
                "accept_peak_gb": round(acc_gb, 2), "accept_decision": forced["decision"],
                "accept_full_size": (forced.get("full_size") or {}).get("verdict"),
                "accept_timings": forced["timings"],
            })  # fmt: skip
            print(json.dumps(rows[-1]), file=sys.stderr)
    cols = ("photo", "MP", "bare NLM s", "rnr s", "ratio", "rnr peak GB", "NLM peak GB")
    print(f"{cols[0]:<14}" + "".join(f"{c:>{len(c) + 2}}" for c in cols[1:]) + "  kinds")
    for r in rows:
        vals = (r["mp"], r["nlm_s"], r["rnr_s"], r["ratio"], r["rnr_peak_gb"], r["nlm_peak_gb"])
        line = f"{r['photo']:<14}" + "".join(f"{v:>{len(c) + 2}}" for v, c in zip(vals, cols[1:], strict=True))
        full = f", full size {r['full_size_verdict']}" if r["full_size_verdict"] else ""
        print(
            f"{line}  {', '.join(r['kinds'])} ({r['attempts']} attempts on the {r['judged_on']}{full}, "
            f"{r['decision']}, load {r['load_before']})"
        )
    print("accept path forced (restore_image, attempts judged by severities: a plan is chosen and runs at full size):")
    for r in rows:
        node = r["accept_timings"].get("full_size", 0)
        print(
            f"{r['photo']:<14}  {r['accept_s']:>6} s  ratio {r['accept_ratio']:>5}  peak {r['accept_peak_gb']} GB  "
            f"{r['accept_decision']}, full size {r['accept_full_size']}, full_size node {node:.1f} s"
        )
    print(f"{os.cpu_count()} CPUs; bare NLM: cv2.fastNlMeansDenoisingColored h=hColor=10, 7/21 (OpenCV defaults)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "cpus": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
