"""Screenshots of ``rnr ui`` and of the batch report at desktop (1280 px) and phone (390 px) width, to be looked at.

    python bench/ui_screenshots.py            # writes bench/out/ui_*.png and bench/out/report_*.png

Uses Debian's headless Chromium (/usr/bin/chromium) through Playwright, offline. The UI is driven as a newcomer
would: the first screen, an example restored, a photo diagnosed with the folded panels opened, and an edit the page
refuses; the report is that of a small batch with one failure, as first seen and with one image opened full size.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

OUT = ROOT / "bench" / "out"
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ui_shots(p, tmp: Path) -> list[Path]:
    from chromium import ARGS, CHROMIUM

    from agent.ui.page import launch
    from reasoner.imageio import save_image
    from rl import degradations as D
    from rl.photos import load_photo

    ops = [D.NoiseParams(sigma=20, seed=2), D.JpegParams(quality=30)]
    photo = save_image(tmp / "noisy jpeg.png", D.apply(load_photo("coffee")[:320, :400], ops))
    port = _port()
    app = launch(port=port, block=False, work_dir=tmp / "ui")
    shots = []
    try:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        for name, (w, h) in WIDTHS.items():
            page = browser.new_page(viewport={"width": w, "height": h}, device_scale_factor=1)
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#rnr-run")
            page.wait_for_timeout(800)
            shots.append(_shot(page, f"ui_first_{name}.png"))
            page.locator("#rnr-examples button, #rnr-examples .gallery-item, #rnr-examples td").first.click()
            page.wait_for_timeout(800)
            page.click("#rnr-run")
            page.locator("#rnr-image-file a").first.wait_for(timeout=120000)
            page.wait_for_timeout(800)
            shots.append(_shot(page, f"ui_restored_{name}.png"))
            page.locator("#rnr-upload input[type=file]").set_input_files(str(photo))
            page.wait_for_timeout(800)
            page.click("#rnr-diagnose")
            page.locator("#rnr-status .rnr-say", has_text="Press Restore").wait_for(timeout=120000)
            for panel in ("#rnr-adjust", "#rnr-review", "#rnr-details"):
                page.locator(f"{panel} > button").first.click()
            page.wait_for_timeout(1000)
            shots.append(_shot(page, f"ui_diagnosed_{name}.png", full_page=True))
            page.close()
        browser.close()
    finally:
        app.close()
    return shots


def report_shots(p, tmp: Path) -> list[Path]:
    from chromium import ARGS, CHROMIUM

    from agent.batch import run_batch
    from agent.ui.report import write_report
    from reasoner.imageio import save_image
    from rl import degradations as D
    from rl.photos import load_photo

    src = tmp / "in"
    src.mkdir()
    save_image(src / "noisy astronaut.png", D.apply(load_photo("astronaut")[64:320, 128:384],
                                                    [D.NoiseParams(sigma=25, seed=1)]))  # fmt: skip
    save_image(src / "coffee q20.png", D.apply(load_photo("coffee")[:256, 100:356], [D.JpegParams(quality=20)]))
    save_image(src / "clean camera.png", load_photo("camera")[100:356, 100:356])
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    run_batch([src], tmp / "run")
    report = write_report(tmp / "run")
    shots = []
    browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
    for name, (w, h) in WIDTHS.items():
        page = browser.new_page(viewport={"width": w, "height": h}, device_scale_factor=1)
        page.goto(report.as_uri())
        page.wait_for_timeout(500)
        shots.append(_shot(page, f"report_{name}.png"))
        shots.append(_shot(page, f"report_full_{name}.png", full_page=True))
        page.locator(".card:not(.failed) .open").first.click()
        page.wait_for_timeout(500)
        shots.append(_shot(page, f"report_compare_{name}.png"))
        page.close()
    browser.close()
    return shots


def _shot(page, name: str, **kw) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUT / name), **kw)
    return OUT / name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["ui", "report"], help="Take only these screenshots.")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as d, sync_playwright() as p:
        tmp = Path(d)
        shots = []
        if args.only in (None, "report"):
            shots += report_shots(p, tmp)
        if args.only in (None, "ui"):
            shots += ui_shots(p, tmp)
    for s in shots:
        print(s.relative_to(ROOT))


if __name__ == "__main__":
    main()
