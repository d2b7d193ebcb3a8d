"""``rnr ui`` without a browser: the edit table, the HTML fragments, upload checks and backend discovery."""

import json

import pytest

pytest.importorskip("gradio")

from agent.ui import render as R  # noqa: E402
from agent.ui.runs import backend_status, image_error  # noqa: E402
from reasoner.imageio import save_image  # noqa: E402
from reasoner.schema import KINDS, DiagnosisRecord, make_degradation  # noqa: E402
from rl.photos import load_photo  # noqa: E402


@pytest.fixture
def record() -> dict:
    from test_schema import make_record

    degs = [make_degradation("noise", 0.7612, 0.9, sigma=24.0, model="gaussian"),
            make_degradation("jpeg", 0.3, 0.8, quality=30)]  # fmt: skip
    return make_record(degradations=degs, overall_severity=0.83284).model_dump(mode="json")


def test_edit_rows_list_every_kind_with_reported_ones_ticked(record):
    rows = R.edit_rows(record)
    assert [r[0] for r in rows] == list(KINDS)
    ticked = {r[0]: r for r in rows if r[1]}
    assert set(ticked) == {"noise", "jpeg"} and ticked["noise"][2] == 0.761
    for r in rows:  # every row's factors parse, so ticking a kind on starts from a valid entry
        assert isinstance(json.loads(r[4]), dict)


def test_untouched_table_gives_back_the_record_unchanged(record):
    # Rounded numbers shown in the table must not turn into spurious edits.
    assert R.apply_edits(record, R.edit_rows(record)) == record


def test_edits_recompute_level_and_overall_and_validate(record):
    rows = R.edit_rows(record)
    by = {r[0]: r for r in rows}
    by["noise"][2] = 0.2  # severity down: level follows
    by["jpeg"][1] = False  # untick: dropped
    by["haze"][1], by["haze"][2] = "true", 0.5  # tick a new kind with the offered factors (text cell from a browser)
    out = DiagnosisRecord.model_validate(R.apply_edits(record, rows))
    assert [(d.kind, d.level) for d in out.degradations] == [("haze", "moderate"), ("noise", "mild")]
    assert out.overall_severity == pytest.approx(1 - 0.8 * 0.5)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda by: by["noise"].__setitem__(4, "{sigma: 3"), "row 'noise': factors are not valid JSON"),
        (lambda by: by["noise"].__setitem__(4, "[1, 2]"), "row 'noise': factors must be a JSON object"),
        (lambda by: by["noise"].__setitem__(2, "lots"), "row 'noise': severity and confidence must be numbers"),
        (lambda by: by["noise"].__setitem__(0, "fog"), "row 'fog': unknown kind"),
    ],
)
def test_bad_rows_are_named(record, change, message):
    rows = R.edit_rows(record)
    change({r[0]: r for r in rows})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        R.apply_edits(record, rows)


def test_out_of_range_severity_is_left_to_the_schema(record):
    rows = R.edit_rows(record)
    next(r for r in rows if r[0] == "noise")[2] = 1.5
    with pytest.raises(ValueError, match="less than or equal to 1"):
        DiagnosisRecord.model_validate(R.apply_edits(record, rows))


def test_fragments_escape_user_text(record):
    record["reasoning"][0]["observation"] = "<script>alert(1)</script>"
    rec = DiagnosisRecord.model_validate(record)
    html = R.steps_html(rec) + R.record_html(rec)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count('class="rnr-bar"') == 3  # two kinds and the overall


def test_severity_compare_shows_the_reasoner_and_the_persons_numbers(tmp_path):
    from agent.run import restore_image
    from agent.trace import ReviewTrace
    from rl import degradations as D

    img = D.apply(load_photo("astronaut")[:128, :128], [D.NoiseParams(25.0, seed=3)])
    _, trace = restore_image(img)
    plain = R.severity_compare_html(trace)
    assert "<th>before</th><th>after</th>" in plain and "edited by a person" not in plain
    reviewed = trace.model_copy(update={"review": ReviewTrace(edited=True, changes=["noise: severity 0.76 -> 0.30"],
                                                              record_proposed=trace.record_before)})  # fmt: skip
    html = R.severity_compare_html(reviewed)
    assert "<th>reasoner</th><th>edited (before)</th><th>after</th>" in html
    assert "noise: severity 0.76 -&gt; 0.30" in html


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("photo.png", None, None),  # a real image
        ("notes.png", b"just some text, not pixels\n", "not a recognised image"),  # text renamed .png
        ("paper.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "not a recognised image"),  # a PDF
        ("empty.jpg", b"", "empty file"),  # empty file
        ("big.png", "big", "image is 80x60 = 4,800 pixels, over the 4,000-pixel limit (--max-pixels)"),  # over limit
        ("pipe.png", "fifo", "is a FIFO (named pipe)"),  # a FIFO: refused on stat, never opened (would block)
    ],
)
def test_uploads_rnr_cannot_use_get_one_line_naming_the_file(tmp_path, name, data, reason):
    import os

    path = tmp_path / name
    if data is None:
        save_image(path, load_photo("camera")[:32, :32])
    elif data == "big":
        save_image(path, load_photo("camera")[:60, :80])
    elif data == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(data)
    err = image_error(str(path), 4000)
    if reason is None:
        assert err is None
    else:
        assert err.startswith(f"{name} cannot be used: ") and reason in err and "\n" not in err
    assert image_error(None).startswith("No image yet")


def test_backend_status_reads_imports_without_importing():
    status = backend_status({"measure": "reasoner.measure:MeasureReasoner", "ghost": "no_such_pkg_xyz.mod:Cls"})
    assert status["measure"] == [] and status["ghost"] == ["no_such_pkg_xyz.mod:Cls"]
    from reasoner.registry import REASONERS

    status = backend_status(REASONERS)
    vllm_installed = __import__("importlib").util.find_spec("vllm") is not None
    assert (status["vllm"] == []) == vllm_installed


def test_ui_command_rejects_bad_options_and_passes_the_pixel_limit(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    import agent.ui.page
    from agent.cli.ui import ui_command

    launched = []  # a bad option that slipped through would start a server here instead of blocking the test
    monkeypatch.setattr(agent.ui.page, "launch", lambda **kw: launched.append(kw))
    app = typer.Typer()
    app.command()(ui_command)
    for args, env, message in (
        (["--port", "70000"], {}, "a TCP port is 1..65535"),
        (["--index", str(tmp_path / "nope")], {}, "no such reference library folder"),
        (["--max-pixels", "0"], {}, "--max-pixels 0: must be a positive number of pixels"),
        ([], {"RNR_MAX_PIXELS": "lots"}, "RNR_MAX_PIXELS='lots' is not a positive integer; fix or unset it"),
    ):
        res = CliRunner().invoke(app, args, env=env)
        text = " ".join(res.output.replace("\u2502", " ").split())  # rich wraps the message in a box
        assert res.exit_code == 2 and message in text, text
    assert launched == []
    for args, limit, why in (([], 7000, "RNR_MAX_PIXELS"), (["--max-pixels", "5000"], 5000, "--max-pixels")):
        env = {"RNR_MAX_PIXELS": "7000"}  # the option wins over the variable
        res = CliRunner().invoke(app, args, env=env)
        assert res.exit_code == 0, res.output
        assert launched[-1]["max_pixels"] == limit and launched[-1]["max_pixels"].why == why
