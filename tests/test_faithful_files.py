"""Faithful output files: container, bit depth, EXIF/ICC/XMP and names kept; --format/--quality; real control."""

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, JpegImagePlugin
from typer.testing import CliRunner

from agent.cli import app
from reasoner.imagefile import probe_source, read_source, write_like
from reasoner.imageio import load_image
from rl import degradations as D
from rl.photos import load_photo

runner = CliRunner()
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/>'
       b"</rdf:RDF></x:xmpmeta>")  # fmt: skip
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _noisy(h=96, w=128, sigma=20) -> np.ndarray:
    return D.apply(load_photo("coffee")[:h, :w], [D.NoiseParams(sigma=sigma, seed=1)])


def _camera_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise
    exif[271], exif[272], exif[33432] = "Canon", "EOS R5", "(c) Jane Doe"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2024:05:06 07:08:09"
    return exif


def _restore(*args: str):
    res = runner.invoke(app, ["restore", *args])
    assert res.exit_code == 0, res.output
    return res


def _trace(out: Path, name: str) -> dict:
    return json.loads((out / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def camera_jpeg(tmp_path_factory) -> Path:
    """A JPEG as a camera writes it: EXIF (rotated, camera, date, copyright), an ICC profile and XMP."""
    d = tmp_path_factory.mktemp("camera")
    rgb = (_noisy(sigma=30) * 255).round().astype(np.uint8)  # noisy enough that a restoration is returned
    Image.fromarray(rgb).save(d / "IMG_0001.jpg", quality=92, exif=_camera_exif(), icc_profile=SRGB, xmp=XMP)
    return d / "IMG_0001.jpg"


@pytest.mark.parametrize("container", ["png", "jpeg", "webp", "tiff"])
def test_each_container_round_trips_with_metadata(camera_jpeg, tmp_path, container):
    # Written like the camera's JPEG into every container: EXIF (orientation 1), ICC and XMP read back.
    source, _ = read_source(camera_jpeg)
    pixels = load_image(camera_jpeg).pixels
    written = write_like(tmp_path / f"out.{container}", pixels, source, container=container)
    with Image.open(written.path) as im:
        assert im.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}[container]
        exif = im.getexif()
        assert exif[0x0112] == 1 and exif[271] == "Canon" and exif[33432] == "(c) Jane Doe"
        assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == "2024:05:06 07:08:09"
        assert im.info.get("icc_profile") == SRGB
    back = probe_source(written.path.read_bytes(), written.path)
    assert back.xmp is not None and b'tiff:Orientation="1"' in back.xmp
    err = np.abs(load_image(written.path).pixels - pixels).max()
    assert err == 0 if container in ("png", "tiff") else err < 0.15
    assert written.exif_kept and written.icc_kept and written.xmp_kept and written.orientation_normalised


@pytest.mark.parametrize("container", ["png", "tiff"])
def test_16_bit_values_survive_the_writer(tmp_path, container):
    a = np.random.default_rng(0).integers(0, 65536, (40, 50, 3)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), a[..., ::-1])
    source, _ = read_source(tmp_path / "deep.png")
    assert source.bit_depth == 16
    written = write_like(tmp_path / f"o.{container}", load_image(tmp_path / "deep.png").pixels, source,
                         container=container)  # fmt: skip
    back = cv2.imread(str(written.path), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert back.dtype == np.uint16 and np.array_equal(back, a)


def test_jpeg_in_jpeg_out_keeps_what_photographers_care_about(camera_jpeg, tmp_path):
    out = tmp_path / "out"
    _restore(str(camera_jpeg), "--out", str(out))
    result = out / "IMG_0001.jpg"
    trace = _trace(out, "IMG_0001")
    assert trace["output_path"] == "IMG_0001.jpg" and trace["decision"] != "unchanged"
    with Image.open(result) as im:
        assert im.format == "JPEG" and im.size == (96, 128)  # written upright: the EXIF rotation applied
        assert JpegImagePlugin.get_sampling(im) == 0  # 4:4:4 chroma
        exif = im.getexif()
        assert (exif[0x0112], exif[271], exif[272], exif[33432]) == (1, "Canon", "EOS R5", "(c) Jane Doe")
        assert exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == "2024:05:06 07:08:09"
        assert im.info["icc_profile"] == SRGB
    f = trace["output_file"]
    assert f["container"] == "jpeg" and f["input_container"] == "jpeg" and f["bit_depth"] == 8 and not f["copied"]
    assert f["quality"] == 95 and f["subsampling"] == "4:4:4" and f["orientation_normalised"]
    assert f["exif_kept"] and f["icc_kept"] and f["xmp_kept"] and "input's" in f["color_space"]
    row = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    assert row["output"] == "IMG_0001.jpg"
    # resume finds the output under its own extension
    res = _restore(str(camera_jpeg), "--out", str(out), "--resume")
    assert "1 of 1 image(s) already done" in res.stderr


def test_small_jpeg_does_not_become_a_huge_png(tmp_path):
    rgb = (_noisy(256, 320, sigma=8) * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "small.jpg", quality=25)
    out = tmp_path / "out"
    _restore(str(tmp_path / "small.jpg"), "--out", str(out), "--max-attempts", "1")
    assert sorted(p.name for p in out.glob("small.*")) == ["small.jpg", "small.json"]
    png = io.BytesIO()
    Image.open(out / "small.jpg").save(png, "PNG")
    assert (out / "small.jpg").stat().st_size < len(png.getvalue()) / 2


def test_strength_zero_returns_the_input_bit_exact(tmp_path):
    deep = (np.random.default_rng(1).integers(0, 65536, (64, 80, 3))).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep[..., ::-1])
    Image.fromarray((_noisy(64, 80) * 255).astype(np.uint8)).save(tmp_path / "shot.jpg", quality=70,
                                                                 exif=_camera_exif())  # fmt: skip
    out = tmp_path / "out"
    _restore(str(tmp_path), "--out", str(out), "--strength", "0")
    for name in ("deep.png", "shot.jpg"):
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes()
        trace = _trace(out, Path(name).stem)
        assert trace["decision"] == "unchanged" and trace["output_file"]["copied"]
        assert trace["settings"]["strength"] == 0
    # another container: re-encoded, 16 bits and values kept
    out2 = tmp_path / "out2"
    _restore(str(tmp_path / "deep.png"), "--out", str(out2), "--strength", "0", "--format", "tiff")
    back = cv2.imread(str(out2 / "deep.tif"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert back.dtype == np.uint16 and np.array_equal(back, deep)
    assert _trace(out2, "deep")["output_file"]["bit_depth"] == 16


def test_format_and_quality_are_honoured(camera_jpeg, tmp_path):
    out = tmp_path / "png"
    _restore(str(camera_jpeg), "--out", str(out), "--format", "png", "--strength", "0")
    assert Image.open(out / "IMG_0001.png").format == "PNG"
    assert _trace(out, "IMG_0001")["output_file"]["container"] == "png"
    sizes = {}
    for q in ("40", "95"):
        out = tmp_path / f"q{q}"
        _restore(str(camera_jpeg), "--out", str(out), "--format", "webp", "--quality", q, "--strength", "0")
        assert _trace(out, "IMG_0001")["output_file"]["quality"] == int(q)
        sizes[q] = (out / "IMG_0001.webp").stat().st_size
    assert sizes["40"] < sizes["95"]


def test_a_resume_with_other_output_options_writes_the_images_again(camera_jpeg, tmp_path):
    from agent.manifest import read_manifest

    out = tmp_path / "out"
    _restore(str(camera_jpeg), "--out", str(out), "--strength", "0")
    first = (out / "IMG_0001.jpg").read_bytes()
    res = _restore(str(camera_jpeg), "--out", str(out), "--resume", "--format", "webp", "--quality", "80",
                   "--strength", "0")  # fmt: skip
    said = [line for line in res.output.splitlines() if "written earlier" in line]
    assert (
        len(said) == 1
        and "IMG_0001.jpg (each input's own container); writing it again as webp, quality 80" in (said[0])
    )
    assert Image.open(out / "IMG_0001.webp").format == "WEBP"
    assert (out / "IMG_0001.jpg").read_bytes() == first  # the earlier output is kept, not deleted
    row = read_manifest(out)["IMG_0001"]
    assert row["output"] == "IMG_0001.webp" and row["output_options"] == {"format": "webp", "quality": 80}
    assert _trace(out, "IMG_0001")["output_file"]["container"] == "webp"
    res = _restore(str(camera_jpeg), "--out", str(out), "--resume", "--format", "webp", "--quality", "80",
                   "--strength", "0")  # fmt: skip
    assert "written earlier" not in res.output and "1 already finished" in res.output  # the same options: skipped


def test_names_keep_letters_of_any_script(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    img = (_noisy(48, 64) * 255).astype(np.uint8)
    for name in ("東京.png", "spaced name ünïcode.png"):
        Image.fromarray(img).save(d / name)
    out = tmp_path / "out"
    _restore(str(d), "--out", str(out), "--strength", "0")
    assert {p.name for p in out.glob("*.png")} == {"東京.png", "spaced name ünïcode.png"}
    assert {p.name for p in out.glob("*.json")} == {"東京.json", "spaced name ünïcode.json"}


def test_only_and_skip_choose_the_kinds_restored(tmp_path):
    img = D.apply(load_photo("coffee")[:96, :128], [D.NoiseParams(sigma=25, seed=2), D.JpegParams(quality=20)])
    Image.fromarray((img * 255).round().astype(np.uint8)).save(tmp_path / "both.png")
    planned = {}
    for flag in ("--only", "--skip"):
        out = tmp_path / flag.strip("-")
        _restore(str(tmp_path / "both.png"), "--out", str(out), flag, "noise", "--max-attempts", "1")
        trace = _trace(out, "both")
        planned[flag] = {op["kind"] for a in trace["attempts"] for op in a["plan"]["operations"]}
        assert trace["settings"][flag.strip("-")] == ["noise"]
    assert planned["--only"] == {"noise"}
    assert "noise" not in planned["--skip"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--strength", "3"], "from 0 to 2"),  # out of range
        (["--strength", "fog=0.5"], "not a degradation kind"),  # unknown kind
        (["--only", "fog"], "not a degradation kind"),
        (["--strength", "noise=x"], "from 0 to 2"),  # not a number
        (["--restorer-opt", "strength=0.5"], "use --strength"),  # the old way: pointed at the new one
        (["--format", "gif"], "choose png, jpeg, webp or tiff"),
        (["--quality", "0"], "1..100"),
        (["--format", "png", "--quality", "80"], "png is lossless"),
        (["--max-attempts", "0"], "--max-attempts 0"),  # no pydantic dump
    ],
)
def test_bad_control_values_are_one_line(tmp_path, args, words):
    (tmp_path / "a.png").write_bytes(b"not read")
    res = runner.invoke(app, ["restore", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), *args])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()
