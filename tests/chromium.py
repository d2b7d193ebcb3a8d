"""Shared set-up of the real-browser tests: Debian's headless Chromium driven by Playwright, offline."""

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: Module marks of a browser test: slow, and skipped with the fix when the system browser is missing.
MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
    ),  # fmt: skip
]
#: Screenshots land here (gitignored) to be looked at.
SHOTS = Path(__file__).resolve().parents[1] / "bench" / "out"
#: Offline and quiet: no sandbox (containers), no GPU, no background fetches of any kind.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def launch_chromium(p, profile: Path):
    """A fresh headless Chromium context on the system browser (no ``playwright install`` download)."""
    return p.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=ARGS, accept_downloads=True,
        viewport={"width": 1400, "height": 1000},
    )  # fmt: skip


def screenshot(page, name: str, **kw) -> None:
    """Save ``page`` as ``bench/out/<name>``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), **kw)
