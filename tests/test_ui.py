"""``rnr ui`` without a browser: the edit table, the HTML fragments, upload checks and backend discovery."""

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


def by_kind(rows) -> dict:
    labels = {v: k for k, v in R.KIND_LABELS.items()}
    return {labels[r[0]]: r for r in rows}


def test_edit_rows_list_every_kind_in_plain_words_with_readable_settings(record):
    rows = R.edit_rows(record)
    assert [r[0] for r in rows] == [R.KIND_LABELS[k] for k in KINDS] and R.KIND_LABELS["jpeg"] == "JPEG blocking"
    ticked = {k: r for k, r in by_kind(rows).items() if r[1]}
    assert set(ticked) == {"noise", "jpeg"} and ticked["noise"][2] == 0.76
    assert ticked["noise"][3] == "sigma=24, model=gaussian" and ticked["jpeg"][3] == "quality=30"  # not JSON
    assert all(r[3] == "" and r[2] == 0.0 for k, r in by_kind(rows).items() if k not in ticked)


def test_untouched_table_gives_back_the_record_unchanged(record):
    # Rounded numbers shown in the table must not turn into spurious edits.
    assert R.apply_edits(record, R.edit_rows(record)) == record
    raw = {"headers": R.EDIT_HEADERS, "data": R.edit_rows(record), "metadata": None}  # Gradio's unprocessed value
    assert R.apply_edits(record, raw) == record


def test_a_severity_edit_moves_the_settings_and_the_overall(record):
    rows = R.edit_rows(record)
    by = by_kind(rows)
    by["noise"][2] = 0.2  # severity down: level and sigma follow
    by["jpeg"][1] = False  # untick: dropped
    by["haze"][1] = "true"  # tick a new kind, severity left at 0: the default, with default settings
    out = DiagnosisRecord.model_validate(R.apply_edits(record, rows))
    assert [(d.kind, d.level) for d in out.degradations] == [("haze", "moderate"), ("noise", "mild")]
    noise = out.degradations[1]
    assert noise.severity == pytest.approx(0.2) and noise.factors.sigma == pytest.approx(3 * (50 / 3) ** 0.2)
    assert out.overall_severity == pytest.approx(1 - 0.8 * 0.5, abs=1e-3)


def test_a_settings_edit_moves_the_severity(record):
    rows = R.edit_rows(record)
    by_kind(rows)["jpeg"][3] = "quality=10"
    out = DiagnosisRecord.model_validate(R.apply_edits(record, rows))
    jpeg = next(d for d in out.degradations if d.kind == "jpeg")
    assert jpeg.factors.quality == 10 and jpeg.severity == 1.0 and jpeg.level == "severe"
    rows = R.edit_rows(record)
    by_kind(rows)["jpeg"][3] = '{"quality": 55}'  # JSON still reads
    assert next(d for d in R.apply_edits(record, rows)["degradations"] if d["kind"] == "jpeg")["severity"] == 0.5


def test_ticking_jpeg_present_adds_it_at_the_severity_given(record):
    rows = R.edit_rows(record)
    by_kind(rows)["rain"][1:3] = [True, 0.4]
    out = DiagnosisRecord.model_validate(R.apply_edits(record, rows))
    rain = next(d for d in out.degradations if d.kind == "rain")
    assert rain.severity == pytest.approx(0.4) and rain.factors.density == pytest.approx(0.032)


def test_a_ticked_kind_starts_from_the_photos_own_reading_where_the_reasoner_has_one(record):
    # MeasureBackend.forced_entry's reading (here a stand-in): its angle kept, a typed severity moving only density
    from reasoner.schema import make_degradation

    read = make_degradation("rain", 0.3, 1.0, density=0.024, angle=71.0)
    rows = R.edit_rows(record)
    by_kind(rows)["rain"][1] = True
    rain = next(d for d in R.apply_edits(record, rows, lambda kind: read)["degradations"] if d["kind"] == "rain")
    assert rain["factors"] == {"density": 0.024, "angle": 71.0} and rain["severity"] == 0.3
    by_kind(rows)["rain"][2] = 0.5
    rain = next(d for d in R.apply_edits(record, rows, lambda kind: read)["degradations"] if d["kind"] == "rain")
    assert rain["factors"]["angle"] == 71.0 and rain["severity"] == pytest.approx(0.5)
    assert rain["factors"]["density"] != 0.024


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda by: by["noise"].__setitem__(3, "sigma 3"), "noise: cannot read 'sigma 3' in the settings; write"),
        (lambda by: by["noise"].__setitem__(3, "[1, 2]"), "noise: cannot read '[1' in the settings"),
        (lambda by: by["noise"].__setitem__(3, "{sigma: 3"), "noise: settings are not valid JSON"),
        (lambda by: by["noise"].__setitem__(3, "sigma=900, model=gaussian"), "noise: sigma: Input should be less"),
        (lambda by: by["noise"].__setitem__(2, "lots"), "noise: severity must be a number"),
        (lambda by: by["noise"].__setitem__(2, 1.5), "noise: severity must be from 0 to 1, not 1.5"),
        (lambda by: by["haze"].__setitem__(1, True) or by["haze"].__setitem__(2, 0.05), "below 0.10 (mild)"),
        (lambda by: by["rain"].__setitem__(2, 0.5), "rain: not marked present"),
        (lambda by: by["noise"].__setitem__(0, "fog"), "row 'fog': unknown kind"),
    ],
)
def test_edits_that_cannot_take_effect_are_refused_naming_the_kind(record, change, message):
    rows = R.edit_rows(record)
    change(by_kind(rows))
    with pytest.raises(ValueError) as e:
        R.apply_edits(record, rows)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_edit_the_restorer_does_not_use_is_found_on_the_photo(tmp_path):
    # The derain operator uses density only as on/off: a severity edit on rain would change nothing, and is refused.
    from test_schema import make_record

    from agent.backends import make_context
    from agent.ui.runs import controlled, ineffective_edits
    from reasoner.edit import edit_degradation
    from rl import degradations as D

    img = D.apply(load_photo("astronaut")[:160, :160], D.sample_ops(__import__("numpy").random.default_rng(0),
                                                                    kinds=("rain",)))  # fmt: skip
    ctx = controlled(make_context(), 1.0, {})
    rain = edit_degradation(None, kind="rain", present=True, severity=0.4)
    noise = edit_degradation(None, kind="noise", present=True, severity=0.4)
    proposed = make_record(degradations=[rain, noise], overall_severity=0.64).model_dump(mode="json")
    edited = R.apply_edits(proposed, [[R.KIND_LABELS["rain"], True, 0.7, R.factors_text(rain.factors.model_dump())]]
                           + [r for r in R.edit_rows(proposed) if r[0] != R.KIND_LABELS["rain"]])  # fmt: skip
    (why,) = ineffective_edits(ctx, img, proposed, edited)
    assert why.startswith("rain: this change leaves the restored image as it was") and "strength slider" in why
    edited = R.apply_edits(proposed, [[R.KIND_LABELS["noise"], True, 0.7, R.factors_text(noise.factors.model_dump())]]
                           + [r for r in R.edit_rows(proposed) if r[0] != R.KIND_LABELS["noise"]])  # fmt: skip
    assert ineffective_edits(ctx, img, proposed, edited) == []  # a noise edit does change it


def test_the_crop_preview_follows_the_strength(tmp_path):
    from test_schema import make_record

    from agent.backends import make_context
    from agent.ui.runs import PREVIEW_CROP, controlled, detail_window, restore_area
    from reasoner.edit import edit_degradation
    from rl import degradations as D

    img = D.apply(load_photo("astronaut")[:300, :300], [D.NoiseParams(sigma=25, seed=1)])
    ys, xs = detail_window(img, PREVIEW_CROP)
    crop = img[ys, xs]
    assert crop.shape == (256, 256, 3)
    noise = edit_degradation(None, kind="noise", present=True, severity=0.7)
    rec = make_record(degradations=[noise], overall_severity=0.7).model_dump(mode="json")
    outs = [restore_area(controlled(make_context(), 1.0, {"noise": s}), crop, rec) for s in (0.0, 0.5, 1.0, 2.0)]
    assert (outs[0] == crop).all()  # 0: the crop untouched
    diffs = [float(abs(o - crop).mean()) for o in outs]
    assert diffs[0] < diffs[1] < diffs[2] < diffs[3]  # stronger, further from the input
    assert (restore_area(controlled(make_context(), 0.0, {}), crop, rec) == crop).all()


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


def test_the_download_is_written_like_the_upload_and_the_slider_gets_a_png(tmp_path):
    # A camera JPEG uploaded comes back a JPEG with its EXIF (not a PNG without it); the slider shows a PNG copy.
    import numpy as np
    from PIL import Image

    from agent.run import stream_run
    from agent.ui.runs import UIRuns
    from rl import degradations as D

    exif = Image.Exif()
    exif[271], exif[33432] = "Canon", "(c) Jane Doe"
    shot = tmp_path / "IMG_0002.jpg"
    noisy = D.apply(load_photo("astronaut")[:192, :256], [D.NoiseParams(sigma=20, seed=2)])
    Image.fromarray(np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)).save(shot, quality=90, exif=exif)
    before = shot.read_bytes()
    runs = UIRuns(tmp_path / "ui")
    key, ctx = runs.context("measure", "", "measure", "", "classical", "", None, 1)
    sess = runs.new_session(str(shot), key)
    steps = list(stream_run(shot, ctx, sess["work"], checkpointer=runs.saver, thread=sess["thread"]))
    assert steps[-1][0] == "__interrupt__"  # the review question: accepted as proposed
    list(stream_run(shot, ctx, sess["work"], checkpointer=runs.saver, thread=sess["thread"], resume=None))
    image, shown, trace_path, preview, trace = runs.export(sess)
    assert image.name == "IMG_0002_restored.jpg" and shown.suffix == ".png" and shown != image
    with Image.open(image) as im:
        assert im.format == "JPEG" and im.getexif()[33432] == "(c) Jane Doe"
    with Image.open(shown) as im:
        assert im.format == "PNG" and im.size == (256, 192)
    assert trace.output_path == str(image) and trace.output_file.container == "jpeg" and trace.output_file.exif_kept
    assert shot.read_bytes() == before  # the upload itself is only read
