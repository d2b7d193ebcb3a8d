"""``rnr report`` in a real browser: open the report of a run with one failure in headless Chromium and read it."""

import pytest
from chromium import MARKS, launch_chromium, screenshot

pytestmark = MARKS
sync_api = pytest.importorskip("playwright.sync_api")


def test_report_of_a_run_with_a_failure_shows_it(tmp_path):
    from agent.batch import run_batch
    from agent.ui.report import write_report
    from reasoner.imageio import save_image
    from rl import degradations as D
    from rl.photos import load_photo

    src = tmp_path / "in"
    src.mkdir()
    base = load_photo("astronaut")[96:224, 160:288]
    save_image(src / "noisy.png", D.apply(base, [D.NoiseParams(sigma=25, seed=1)]))
    save_image(src / "clean.png", load_photo("camera")[100:228, 100:228])
    (src / "broken <b>.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # markup in a name must stay text
    summary = run_batch([src], tmp_path / "run")
    assert len(summary.done) == 2 and len(summary.failed) == 1
    report = write_report(tmp_path / "run")

    with sync_api.sync_playwright() as p:
        ctx = launch_chromium(p, tmp_path / "profile")
        page = ctx.new_page()
        errors, outside = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        page.goto(report.as_uri())
        assert page.locator("#failures").inner_text() == "Failures (1)"
        failure = page.locator("#failures + table").inner_text()
        assert "broken <b>.png" in failure and summary.failed[0]["error"].split(": ", 1)[1][:40] in failure
        cards = page.locator("#cards > *")
        assert cards.count() == 3
        # What a reader sees first: one headline, the run's versions and timings folded, the failure first.
        assert page.locator("#headline").inner_text().startswith("3 images: ")
        assert not page.locator("#run table").is_visible()
        assert cards.nth(0).get_attribute("data-status") == "failed"
        ok = page.locator(".card:not(.failed)").first
        assert ok.locator(".said").inner_text().startswith("Found ")  # what was done, in one line
        assert ok.locator(".files a").all_inner_texts() == ["input", "output"]
        # A click on the pictures opens before/after at full size with a slider; Escape closes it.
        ok.locator("button.open").click()
        overlay = page.locator("#cmp")
        assert overlay.is_visible()
        page.wait_for_function(
            "document.querySelectorAll('#cmp .stack img').length == 2 && "
            "[...document.querySelectorAll('#cmp .stack img')].every(i => i.naturalWidth > 0)"
        )
        assert page.eval_on_selector("#cmp .stack img", "i => i.naturalWidth") == 128  # full size, not a thumbnail
        page.locator("#cmp input[type=range]").fill("20")
        assert "80%" in page.eval_on_selector("#cmp .stack img + img", "i => i.style.clipPath")
        screenshot(page, "report_compare.png")
        page.keyboard.press("Escape")
        assert not overlay.is_visible()
        # The thumbnails really decode (embedded JPEG), not just sit in the markup.
        widths = page.eval_on_selector_all("#cards img", "els => els.map(e => e.naturalWidth)")
        assert len(widths) >= 4 and all(w > 0 for w in widths)
        # Every chart label fits inside its chart (a one-kind chart once clipped its legend).
        overflow = page.eval_on_selector_all(
            "svg.chart",
            "svgs => svgs.flatMap(s => [...s.querySelectorAll('text')].filter(t => { const b = t.getBBox();"
            " return b.x < 0 || b.x + b.width > s.viewBox.baseVal.width; }).map(t => t.textContent))",
        )
        assert overflow == []
        page.select_option("#flt", "failed")  # the page's own filter: only the failed image remains
        visible = [c for c in range(cards.count()) if cards.nth(c).is_visible()]
        assert len(visible) == 1 and cards.nth(visible[0]).get_attribute("data-status") == "failed"
        page.select_option("#flt", "all")
        screenshot(page, "ui_report.png", full_page=True)
        ctx.close()
    assert errors == [] and outside == []
