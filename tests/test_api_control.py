"""The Python API has the CLI's controls: strength, per-kind strength, only, skip, and faithful output files."""

import numpy as np
import pytest
from PIL import ExifTags, Image

from agent.batch import OutputOptions, run_batch
from agent.run import restore_image
from agent.state import Settings
from reasoner.imageio import load_image
from rl import degradations as D
from rl.photos import load_photo


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    img = D.apply(load_photo("coffee")[:96, :128], [D.NoiseParams(sigma=30, seed=1), D.JpegParams(quality=30)])
    exif = Image.Exif()
    exif[271], exif[33432] = "Nikon", "(c) A. Photographer"
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2023:01:02 03:04:05"
    Image.fromarray((img * 255).round().astype(np.uint8)).save(d / "shot.jpg", quality=92, exif=exif)
    return d / "shot.jpg"


def test_strength_zero_returns_the_input(shot, tmp_path):
    pixels, trace = restore_image(shot, settings=Settings(strength=0), out=tmp_path / "same.jpg")
    assert np.array_equal(pixels, load_image(shot).pixels) and trace.decision == "unchanged"
    assert (tmp_path / "same.jpg").read_bytes() == shot.read_bytes() and trace.output_file.copied


def test_only_and_skip(shot):
    kinds = {}
    for name, settings in (("only", Settings(only=["noise"], max_attempts=1)),
                           ("skip", Settings(skip=["noise"], max_attempts=1))):  # fmt: skip
        _, trace = restore_image(shot, settings=settings)
        kinds[name] = {k for a in trace.attempts for k in a.plan.kinds}
    assert kinds["only"] <= {"noise"} and "noise" not in kinds["skip"]


def test_per_kind_strength_reaches_the_plan(shot):
    _, trace = restore_image(shot, settings=Settings(kind_strength={"noise": 0.25}, max_attempts=1))
    first = {op.kind: op.strength for op in trace.attempts[0].plan.operations}
    _, plain = restore_image(shot, settings=Settings(max_attempts=1))
    base = {op.kind: op.strength for op in plain.attempts[0].plan.operations}
    assert first["noise"] == pytest.approx(base["noise"] * 0.25)


def test_out_writes_a_faithful_file(shot, tmp_path):
    _, trace = restore_image(shot, out=tmp_path / "restored", settings=Settings(max_attempts=1))
    written = tmp_path / "restored.jpg"  # no suffix given: the input's container and suffix
    with Image.open(written) as im:
        assert im.format == "JPEG" and im.getexif()[33432] == "(c) A. Photographer"
    assert trace.output_path == str(written) and trace.output_file.exif_kept
    _, trace = restore_image(shot, out=tmp_path / "r.webp", quality=80, settings=Settings(strength=0))
    assert Image.open(tmp_path / "r.webp").format == "WEBP" and trace.output_file.quality == 80


def test_run_batch_output_options(shot, tmp_path):
    summary = run_batch([shot], tmp_path / "out", settings=Settings(strength=0), output=OutputOptions("png"))
    assert summary.done[0]["output"] == "shot.png" and Image.open(tmp_path / "out" / "shot.png").format == "PNG"
    with pytest.raises(ValueError, match="png is lossless"):
        OutputOptions("png", 80)


@pytest.mark.parametrize(
    ("kw", "said"),
    [
        ({"reasoner": "qwen3vl"}, "reasoner 'qwen3vl' needs a model: pass reasoner_model="),
        ({"scorer": "qwen3vl"}, "scorer 'qwen3vl' needs a model: pass scorer_model="),
        ({"restorer": "qwen-image-edit"}, "restorer 'qwen-image-edit' needs a model: pass restorer_model="),
    ],
)
def test_the_python_api_never_picks_a_model(kw, said):
    # Refused before anything loads or any download is attempted (the hub is not reachable here anyway).
    import time

    t0 = time.perf_counter()
    with pytest.raises(ValueError) as e:
        restore_image(np.zeros((32, 32, 3), np.float32), **kw)
    assert str(e.value).startswith(said) and "\n" not in str(e.value)
    assert time.perf_counter() - t0 < 30
