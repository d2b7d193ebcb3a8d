"""The batch-run HTML report, built from a real small run (three restored images and one corrupt file)."""

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from agent.batch import MANIFEST, read_manifest, run_batch
from agent.cli.report import report_command
from agent.ui.report import ReportError, write_report
from reasoner.imageio import save_image
from rl import degradations as D
from rl.photos import load_photo

# A file name that would inject markup if any text reached the page unescaped; it ends up in the failure's error.
EVIL = "<img src=x onerror=alert(1)>&.png"
VOID = {"meta", "img", "br", "input", "link", "hr", "rect", "line"}  # rect/line are self-closed in the SVG


class Page(HTMLParser):
    """Collects what the tests look at, and checks that non-void elements are balanced."""

    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.cards, self.stack, self.errors = [], [], [], [], []
        self.svgs = 0
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        if "href" in a or ("src" in a and tag != "img"):
            self.links.append(a.get("href") or a.get("src"))
        if tag == "div" and "card" in a.get("class", "").split():
            self.cards.append(a)
        self.svgs += tag == "svg"
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> tuple[str, Page]:
    html = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    page.close()
    assert not page.errors and not page.stack, (page.errors, page.stack)
    return html, page


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("in")
    base = load_photo("astronaut")[96:224, 160:288]
    save_image(src / "noisy.png", D.apply(base, [D.NoiseParams(sigma=25, seed=1)]))
    save_image(src / "dark.png", D.apply(base, [D.LowLightParams(exposure=0.35, gamma=1.2)]))
    save_image(src / "clean.png", load_photo("camera")[100:228, 100:228])
    (src / EVIL).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path_factory.mktemp("run")
    summary = run_batch([src], out)
    assert len(summary.done) == 3 and len(summary.failed) == 1
    return out


def test_embedded_report_has_every_image_chart_and_failure(run_dir, tmp_path):
    out = write_report(run_dir, tmp_path / "report.html")
    html, page = parse(out)
    rows = read_manifest(run_dir)
    assert {c["data-name"] for c in page.cards} == set(rows)
    ok = [r for r in rows.values() if r["status"] != "failed"]
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert len(ok) == 3 and len(failed) == 1
    assert sum(c["data-status"] == "failed" for c in page.cards) == 1
    text = "".join(page.text)
    assert failed[0]["error"] in text  # the error reaches the reader intact, as text
    assert page.svgs == 2 and "mean severity per kind" in html and "overall severity distribution" in html
    # Before and after thumbnail per restored image, each a decodable JPEG within the bounding box.
    assert len(page.imgs) == 2 * len(ok)
    for img in page.imgs:
        assert img["loading"] == "lazy"
        prefix, data = img["src"].split(",", 1)
        assert prefix == "data:image/jpeg;base64"
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        assert im.format == "JPEG" and max(im.size) <= 256
    # Offline: nothing is fetched from anywhere, no external stylesheet or script.
    assert not [u for u in page.links if re.match(r"\s*(https?:)?//", u)]
    assert not re.search(r"<(link|script)[^>]*\s(src|href)=", html)
    # Escaping: the hostile file name appears only as text, never as markup.
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;&amp;.png" in html
    assert len(page.imgs) == html.count("<img ")
    for name in ("noisy", "dark", "clean"):
        assert '<details id="d' in html and f"<b>{name}</b>" in html


def test_relative_report_links_exist(run_dir, tmp_path):
    out = write_report(run_dir, tmp_path / "sub" / "rel.html", embed=False)
    html, page = parse(out)
    assert "base64" not in html and len(page.imgs) == 6
    for img in page.imgs:
        assert not Path(unquote(img["src"])).is_absolute()
        assert (out.parent / unquote(img["src"])).resolve().is_file(), img["src"]


def test_moved_inputs_old_and_broken_traces_are_reported_not_fatal(run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    rows = [json.loads(line) for line in (run / MANIFEST).read_text().splitlines()]
    by_name = {r["name"]: r for r in rows}
    by_name["noisy"]["input"] = str(tmp_path / "gone" / "noisy.png")  # the input was moved after the run
    (run / ".rnr" / "previews" / "clean.jpg").unlink()  # a run folder without one of its previews
    (run / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in rows))
    dark = json.loads((run / "dark.json").read_text())
    dark["version"] = "1.0.0"  # an older minor version still loads
    dark["record_before"]["reasoning"][0]["observation"] = "<script>alert('x')</script>"
    (run / "dark.json").write_text(json.dumps(dark))
    clean = json.loads((run / "clean.json").read_text())
    clean["version"] = "2.0.0"  # an unknown major version is skipped with a note
    (run / "clean.json").write_text(json.dumps(clean))

    html, page = parse(write_report(run))
    assert (run / "report.html").is_file()
    text = "".join(page.text)
    assert "clean: no preview of the input" in text
    assert "clean.json: unreadable trace" in text and "2.0.0" in text
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    cards = {c["data-name"]: c for c in page.cards}
    assert set(cards) == set(by_name) and "data-before" not in cards["clean"]
    # The moved input still shows (its preview lives in the run folder); the missing preview is a placeholder.
    assert sum(img["alt"] == "before" for img in page.imgs) == 2 and len(page.imgs) == 5


def test_empty_run_is_one_line_error(tmp_path):
    with pytest.raises(ReportError, match="no run found") as e:
        write_report(tmp_path)
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)
    with pytest.raises(ReportError, match="not a folder"):
        write_report(tmp_path / "missing")


def test_report_command(run_dir, tmp_path):
    app = typer.Typer()
    app.command()(report_command)
    app.command("noop")(lambda: None)  # two commands keep `report` as a named subcommand
    res = CliRunner().invoke(app, ["report-command", str(run_dir), "--out", str(tmp_path / "r.html"), "--relative"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(tmp_path / "r.html") and (tmp_path / "r.html").is_file()
    res = CliRunner().invoke(app, ["report-command", str(tmp_path / "empty")])
    assert res.exit_code == 2 and res.stderr.strip().count("\n") == 0 and "error:" in res.stderr
