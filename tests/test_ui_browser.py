"""``rnr ui`` in a real browser: Debian's headless Chromium, driven by Playwright, against the page on loopback.

Load an image, watch the nodes stream in, edit a severity at the review interrupt, resume, download the trace and
validate it against the committed schema; and refuse a file that is not an image, or one that declares more pixels
than the limit. Screenshots go to bench/out/.
"""

import json
import socket

import pytest
from chromium import MARKS, launch_chromium, screenshot

pytestmark = MARKS
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio")

#: The page's pixel limit (``rnr ui --max-pixels``): far above the test images, far below a decompression bomb.
LIMIT = 50_000_000


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_api.sync_playwright() as p:
        ctx = launch_chromium(p, tmp_path_factory.mktemp("profile"))
        yield ctx
        ctx.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from agent.ui.page import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = launch(port=port, block=False, work_dir=tmp_path_factory.mktemp("ui"), max_pixels=LIMIT)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page()
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((server, "data:", "blob:")) else None)
    page.goto(server)
    page.wait_for_selector("#rnr-run")
    yield page
    page.close()
    assert outside == [], f"the page fetched from outside the server: {outside}"


def test_non_image_upload_gets_a_clear_message(page, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("meeting notes, not pixels\n")
    page.locator("#rnr-upload input[type=file]").set_input_files(str(fake))
    status = page.locator("#rnr-status .rnr-error")
    status.wait_for(timeout=15000)
    assert status.inner_text().startswith("\u26a0 notes.png cannot be used: not a recognised image")
    page.click("#rnr-run")  # diagnosing it anyway gives the same line, and nothing runs
    page.wait_for_timeout(500)
    assert "notes.png cannot be used" in page.locator("#rnr-status").inner_text()
    assert page.locator("#rnr-steps li").count() == 0
    assert "Traceback" not in page.content()
    screenshot(page, "ui_refused.png")


def test_an_image_over_the_pixel_limit_gets_one_line_naming_the_limit(page, tmp_path, monkeypatch):
    from test_ui_security import bomb_png, spy_on_decoding

    decoded = spy_on_decoding(monkeypatch, LIMIT)
    page.locator("#rnr-upload input[type=file]").set_input_files(str(bomb_png(tmp_path / "huge.png")))
    status = page.locator("#rnr-status .rnr-error")
    status.wait_for(timeout=15000)
    assert status.inner_text() == (
        f"\u26a0 huge.png cannot be used: image is 11500x11500 = 132,250,000 pixels, over the {LIMIT:,}-pixel limit "
        "(--max-pixels); if the file is trusted and memory allows, raise it with --max-pixels or RNR_MAX_PIXELS"
    )
    assert page.locator("#rnr-status .rnr-error").count() == 1 and page.locator("#rnr-preview img").count() == 0
    assert decoded == []  # refused on the header


def test_diagnose_review_edit_resume_and_download_the_trace(page, tmp_path):
    from jsonschema import Draft202012Validator

    from agent.trace import TRACE_SCHEMA_PATH, Trace
    from reasoner.imageio import load_image, save_image
    from reasoner.schema import KINDS
    from rl import degradations as D
    from rl.photos import load_photo

    img = save_image(tmp_path / "noisy.png", D.apply(load_photo("astronaut")[96:352, 128:384],
                                                     [D.NoiseParams(sigma=25, seed=1)]))  # fmt: skip
    page.locator("#rnr-upload input[type=file]").set_input_files(str(img))
    page.click("#rnr-run")
    # The run stops at the review node with diagnose and retrieve already on the page, nothing restored yet.
    page.locator("#rnr-edit").wait_for(state="visible", timeout=30000)
    assert page.locator("#rnr-steps li").count() >= 3
    assert "noise" in page.locator("#rnr-record-table").inner_text()
    assert "No references" in page.locator("#rnr-refs").inner_text()
    assert page.locator("#rnr-attempts-table").count() == 0
    assert "Waiting for your review" in page.locator("#rnr-status").inner_text()
    screenshot(page, "ui_review.png", full_page=True)

    row = KINDS.index("noise")
    cell = page.locator(f"#rnr-edit [data-testid=cell-{row}-2]")
    proposed = float(cell.inner_text())
    cell.dblclick()
    page.keyboard.press("Control+A")
    page.keyboard.type("0.3")
    page.keyboard.press("Enter")
    assert cell.locator("span[data-editable]").inner_text().strip() == "0.3"  # committed, not just typed
    page.click("#rnr-resume")
    page.locator("#rnr-severity-table").wait_for(timeout=30000)
    summary = page.locator("#rnr-severity").inner_text()
    assert f"noise: severity {proposed:.2f} -> 0.30" in summary and "Decision: accepted" in summary
    assert page.locator("#rnr-attempts-table").count() == 1
    assert not page.locator("#rnr-review").is_visible()
    screenshot(page, "ui_restored.png", full_page=True)

    with page.expect_download() as info:
        page.locator("#rnr-trace-file a").first.click()
    trace_path = tmp_path / info.value.suggested_filename
    info.value.save_as(trace_path)
    data = json.loads(trace_path.read_text())
    Draft202012Validator(json.loads(TRACE_SCHEMA_PATH.read_text())).validate(data)
    trace = Trace.model_validate(data)
    assert trace.review.edited and trace.review.changes == [f"noise: severity {proposed:.2f} -> 0.30"]
    assert trace.review.record_proposed.severity("noise") == pytest.approx(proposed, abs=5e-4)
    assert trace.record_before.severity("noise") == 0.3 and trace.decision == "accepted"

    with page.expect_download() as info:
        page.locator("#rnr-image-file a").first.click()
    out = tmp_path / info.value.suggested_filename
    info.value.save_as(out)
    assert load_image(out).pixels.shape == load_image(img).pixels.shape


def _noisy(tmp_path):
    from reasoner.imageio import save_image
    from rl import degradations as D
    from rl.photos import load_photo

    return save_image(tmp_path / "jpeg.png", D.apply(load_photo("coffee")[:192, :192], [D.JpegParams(quality=15)]))


def test_an_edit_the_schema_refuses_is_shown_and_can_be_fixed(page, tmp_path):
    from reasoner.schema import KINDS

    page.locator("#rnr-upload input[type=file]").set_input_files(str(_noisy(tmp_path)))
    page.click("#rnr-run")
    page.locator("#rnr-edit").wait_for(state="visible", timeout=30000)
    cell = page.locator(f"#rnr-edit [data-testid=cell-{KINDS.index('jpeg')}-2]")
    for value in ("1.5", "0.5"):  # out of range, refused by the review node's schema check; then a valid one
        cell.dblclick()
        page.keyboard.press("Control+A")
        page.keyboard.type(value)
        page.keyboard.press("Enter")
        page.click("#rnr-resume")
        if value == "1.5":
            msg = page.locator("#rnr-review-msg .rnr-error")
            msg.wait_for(timeout=30000)
            assert "Not accepted" in msg.inner_text() and "less than or equal to 1" in msg.inner_text()
            assert cell.locator("span[data-editable]").inner_text().strip() == "1.5"  # the edit is kept to fix
    page.locator("#rnr-severity-table").wait_for(timeout=30000)
    assert "jpeg: severity" in page.locator("#rnr-severity").inner_text()


def test_without_review_the_run_goes_straight_through(page, tmp_path):
    page.get_by_label("Let me review the diagnosis before restoring").uncheck()
    page.locator("#rnr-upload input[type=file]").set_input_files(str(_noisy(tmp_path)))
    page.click("#rnr-run")
    page.locator("#rnr-severity-table").wait_for(timeout=30000)
    assert not page.locator("#rnr-review").is_visible()
    text = page.locator("#rnr-severity").inner_text()
    assert "edited by a person" not in text and "jpeg" in text


#: The names in an open Gradio dropdown (the selected one carries a check mark).
OPTIONS = "els => els.map(e => e.textContent.replace('\u2713', '').trim())"


def test_backends_offered_are_the_installed_ones_and_model_backends_ask_for_a_model(page, tmp_path):
    import importlib.util

    page.get_by_text("Backends").click()
    page.locator("#rnr-restorer input").click()
    offered = page.eval_on_selector_all("[role=option]", OPTIONS)
    assert offered[0] == "classical" and "diffusion" in offered
    page.get_by_role("option", name="diffusion").click()
    page.locator("#rnr-reasoner input").click()
    reasoners = page.eval_on_selector_all("[role=option]", OPTIONS)
    assert "measure" in reasoners and ("vllm" in reasoners) == (importlib.util.find_spec("vllm") is not None)
    page.keyboard.press("Escape")
    page.locator("#rnr-upload input[type=file]").set_input_files(str(_noisy(tmp_path)))
    page.click("#rnr-run")
    msg = page.locator("#rnr-status .rnr-error")
    msg.wait_for(timeout=15000)
    assert msg.inner_text() == "\u26a0 diffusion needs a model id or folder in 'Restorer model'"
