import hashlib
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import PIL
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageOps
from skimage import data as skdata

from reasoner.imageio import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageLoadError,
    LoadedImage,
    from_array,
    iter_image_files,
    load_image,
    save_image,
    to_uint8,
)
from reasoner.schema import ImageInfo

# A real photo, small enough to keep the whole file fast; non-square so orientation mistakes show.
PHOTO = np.ascontiguousarray(skdata.astronaut()[::8, ::6])  # 64x86x3 uint8


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with_chunk(png: bytes, kind: bytes, payload: bytes) -> bytes:
    """Insert a chunk right after IHDR (signature 8 bytes + IHDR chunk 25 bytes)."""
    return png[:33] + _png_chunk(kind, payload) + png[33:]


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _write(tmp_path: Path, name: str, payload: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(payload)
    return p


def _assert_one_line_error(exc: pytest.ExceptionInfo, path: Path | str) -> str:
    msg = str(exc.value)
    assert isinstance(exc.value, ImageLoadError)
    assert isinstance(exc.value, ValueError)  # callers catching ValueError keep working
    assert str(path) in msg and exc.value.path == str(path)
    assert "\n" not in msg and msg == f"{exc.value.path}: {exc.value.reason}"
    return msg


# --- bad inputs ----------------------------------------------------------------------------------------------


def _truncated_png() -> bytes:
    full = _encode(Image.fromarray(PHOTO), "PNG")
    return full[: len(full) // 2]


def _truncated_jpeg() -> bytes:
    full = _encode(Image.fromarray(PHOTO), "JPEG", quality=90)
    return full[: len(full) // 2]


BAD_BYTES = [
    # (name, content, expected words in the reason)
    ("empty.png", b"", "empty file"),
    ("half.png", _truncated_png(), "truncated"),  # PIL's lazy decode would defer this error without .load()
    ("half.jpg", _truncated_jpeg(), "truncated"),
    ("garbage.png", bytes(range(256)) * 4, "not a recognised image"),
    ("notes.txt", b"just some text, not pixels\n", "not a recognised image"),
    ("sig_only.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, ""),  # right magic, broken chunks
    ("script.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a recognised image"),  # no Ghostscript
]


@pytest.mark.parametrize(("name", "content", "words"), BAD_BYTES, ids=[b[0] for b in BAD_BYTES])
def test_bad_bytes_are_one_line_errors(tmp_path, name, content, words):
    path = _write(tmp_path, name, content)
    with pytest.raises(ImageLoadError) as exc:
        load_image(path)
    assert words in _assert_one_line_error(exc, path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageLoadError) as exc:
        load_image(tmp_path / "nope.png")
    assert "no such file" in _assert_one_line_error(exc, tmp_path / "nope.png")
    with pytest.raises(ImageLoadError) as exc:
        load_image(tmp_path)
    assert "directory" in _assert_one_line_error(exc, tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageLoadError) as exc:
        load_image(fifo)
    assert "not a regular file" in _assert_one_line_error(exc, fifo)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file(tmp_path):
    path = _write(tmp_path, "locked.png", _encode(Image.fromarray(PHOTO), "PNG"))
    path.chmod(0)
    with pytest.raises(ImageLoadError) as exc:
        load_image(path)
    assert "permission denied" in _assert_one_line_error(exc, path)


def test_permission_error_message(tmp_path, monkeypatch):
    # Runs as root too, where chmod cannot make a file unreadable.
    path = _write(tmp_path, "locked.png", b"x")

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(ImageLoadError) as exc:
        load_image(path)
    assert "chmod" in _assert_one_line_error(exc, path)


def test_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(ImageLoadError("a.png", "broken")))
    assert str(err) == "a.png: broken" and err.path == "a.png" and err.reason == "broken"


# --- decompression bombs --------------------------------------------------------------------------------------


def _bomb_png(width: int, height: int) -> bytes:
    """A few dozen bytes whose header claims width x height 8-bit RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def test_bomb_refused_from_header(tmp_path, monkeypatch):
    monkeypatch.delenv("RNR_MAX_PIXELS", raising=False)
    path = _write(tmp_path, "bomb.png", _bomb_png(100_000, 100_000))
    assert path.stat().st_size < 200
    # Decoding would be a truncation error; the size refusal proves the header check ran first.
    with pytest.raises(ImageLoadError) as exc:
        load_image(path)
    msg = _assert_one_line_error(exc, path)
    assert "100000x100000" in msg and "--max-pixels" in msg and "RNR_MAX_PIXELS" in msg
    assert f"{DEFAULT_MAX_PIXELS:,}" in msg


def test_max_pixels_override_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("RNR_MAX_PIXELS", raising=False)
    path = _write(tmp_path, "photo.png", _encode(Image.fromarray(PHOTO), "PNG"))
    n = PHOTO.shape[0] * PHOTO.shape[1]
    assert load_image(path, max_pixels=n).width == PHOTO.shape[1]
    with pytest.raises(ImageLoadError, match="limit"):
        load_image(path, max_pixels=n - 1)
    monkeypatch.setenv("RNR_MAX_PIXELS", str(n - 1))
    with pytest.raises(ImageLoadError, match="limit"):
        load_image(path)
    assert load_image(path, max_pixels=n).height == PHOTO.shape[0]  # the argument wins over the environment
    monkeypatch.setenv("RNR_MAX_PIXELS", "lots")
    with pytest.raises(ImageLoadError, match="RNR_MAX_PIXELS"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "GIF", "JPEG"])
def test_pil_global_limit_does_not_apply(tmp_path, monkeypatch, fmt):
    # PIL alone would warn above 100 pixels and refuse above 200; only our max_pixels should count.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = _write(tmp_path, f"photo.{fmt.lower()}", _encode(Image.fromarray(PHOTO), fmt))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = load_image(path)
    assert img.pixels.shape == PHOTO.shape
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


# --- bit depths -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_gray_round_trip(tmp_path, fmt):
    values = (PHOTO[..., 1].astype(np.uint16) * 257 + np.arange(PHOTO.shape[1], dtype=np.uint16)).astype(np.uint16)
    path = _write(tmp_path, f"g16.{fmt.lower()}", _encode(Image.fromarray(values), fmt))
    img = load_image(path)
    assert img.bit_depth == 16 and img.source_mode.startswith("I")
    np.testing.assert_array_equal(np.rint(img.pixels * 65535).astype(np.uint16), np.repeat(values[..., None], 3, 2))


def _rgb16() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (PHOTO.astype(np.uint16) * 257 + rng.integers(0, 257, PHOTO.shape)).astype(np.uint16)


@pytest.mark.parametrize("ext", [".png", ".tif", ".ppm"])
def test_16bit_rgb_round_trip(tmp_path, ext):
    rgb = _rgb16()
    path = tmp_path / f"rgb16{ext}"
    assert cv2.imwrite(str(path), rgb[..., ::-1])
    img = load_image(path)
    assert img.bit_depth == 16 and img.source_mode == "RGB;16"
    np.testing.assert_array_equal(np.rint(img.pixels * 65535).astype(np.uint16), rgb)
    assert img.pixels.dtype == np.float32 and img.pixels.flags.c_contiguous


def test_16bit_rgb_falls_back_to_8bit_when_opencv_cannot_read(tmp_path, monkeypatch):
    rgb = _rgb16()
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), rgb[..., ::-1])
    monkeypatch.setattr(cv2, "imdecode", lambda *a: None)
    img = load_image(path)
    assert img.bit_depth == 8 and img.source_mode == "RGB"
    assert np.abs(img.pixels - rgb / 65535).max() <= 1 / 255


def test_16bit_ppm_with_small_maxval(tmp_path):
    px = np.array([[[1023, 0, 512], [100, 200, 300]]], dtype=">u2")
    img = load_image(_write(tmp_path, "ten_bit.ppm", b"P6 2 1 1023\n" + px.tobytes()))
    np.testing.assert_allclose(img.pixels, px.astype(np.float32) / 1023, atol=1e-6)


def test_16bit_rgba_composited_over_white(tmp_path):
    rgb = _rgb16()[:8, :8]
    alpha = np.full((8, 8), 65535, np.uint16)
    alpha[:, :4] = 0
    path = tmp_path / "rgba16.png"
    assert cv2.imwrite(str(path), np.dstack([rgb[..., ::-1], alpha]))
    img = load_image(path)
    assert img.source_mode == "RGBA;16"
    np.testing.assert_allclose(img.pixels[:, :4], 1.0)
    np.testing.assert_allclose(img.pixels[:, 4:], rgb[:, 4:] / 65535, atol=1e-6)


def test_16bit_gray_alpha_png(tmp_path):
    # Written by hand: neither PIL nor OpenCV writes 16-bit gray+alpha PNGs, yet cameras and scanners do.
    gray = np.array([[0, 30000, 65535], [12345, 40000, 5]], np.uint16)
    alpha = np.array([[65535, 65535, 0], [32768, 65535, 65535]], np.uint16)
    rows = np.dstack([gray, alpha]).astype(">u2").reshape(2, -1)
    raw = b"".join(b"\x00" + r.tobytes() for r in rows)
    ihdr = struct.pack(">IIBBBBB", 3, 2, 16, 4, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw))
    img = load_image(_write(tmp_path, "la16.png", png + _png_chunk(b"IEND", b"")))
    assert img.source_mode == "LA;16" and img.bit_depth == 16
    a = alpha / 65535
    np.testing.assert_allclose(img.pixels, np.repeat((gray / 65535 * a + 1 - a)[..., None], 3, 2), atol=1e-6)


def test_16bit_rgb_keeps_exif_orientation(tmp_path):
    # OpenCV's IMREAD_UNCHANGED ignores EXIF, so the loader must apply the tag itself.
    rgb = _rgb16()
    ok, buf = cv2.imencode(".png", rgb[..., ::-1])
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _write(tmp_path, "rot16.png", _png_with_chunk(buf.tobytes(), b"eXIf", exif.tobytes()[6:]))
    img = load_image(path)
    assert img.exif_transposed and (img.height, img.width) == (rgb.shape[1], rgb.shape[0])
    np.testing.assert_array_equal(np.rint(img.pixels * 65535).astype(np.uint16), np.rot90(rgb, -1))
    # Same orientation as PIL gives the 8-bit view of the same file.
    ref = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.abs(to_uint8(img.pixels).astype(int) - ref).max() <= 1


# --- colour modes ----------------------------------------------------------------------------------------------


def _load_pil(tmp_path: Path, img: Image.Image, fmt: str = "PNG", **kw) -> LoadedImage:
    return load_image(_write(tmp_path, f"img.{fmt.lower()}", _encode(img, fmt, **kw)))


def test_grayscale_l(tmp_path):
    gray = PHOTO[..., 0]
    img = _load_pil(tmp_path, Image.fromarray(gray))
    assert img.source_mode == "L" and img.bit_depth == 8
    np.testing.assert_array_equal(to_uint8(img.pixels), np.repeat(gray[..., None], 3, 2))


def test_bilevel(tmp_path):
    bits = PHOTO[..., 0] > 128
    img = _load_pil(tmp_path, Image.fromarray(bits))
    assert img.source_mode == "1"
    np.testing.assert_array_equal(img.pixels[..., 2], bits.astype(np.float32))


def test_palette_without_transparency(tmp_path):
    pal = Image.fromarray(PHOTO).quantize(16)
    img = _load_pil(tmp_path, pal)
    assert img.source_mode == "P"
    np.testing.assert_array_equal(to_uint8(img.pixels), np.asarray(pal.convert("RGB")))


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_becomes_white(tmp_path, fmt):
    idx = np.zeros((4, 6), np.uint8)
    idx[:, 3:] = 1
    pal = Image.fromarray(idx, "P")
    pal.putpalette([0, 0, 0, 200, 30, 10] + [0] * 762)
    img = _load_pil(tmp_path, pal, fmt, transparency=0)
    np.testing.assert_array_equal(img.pixels[:, :3], 1.0)
    np.testing.assert_array_equal(to_uint8(img.pixels[:, 3:]), np.broadcast_to([200, 30, 10], (4, 3, 3)))


def test_rgba_alpha_composited_over_white(tmp_path):
    rgba = np.dstack([PHOTO[:4, :3], np.array([0, 128, 255], np.uint8)[None, :].repeat(4, 0)])
    img = _load_pil(tmp_path, Image.fromarray(rgba, "RGBA"))
    assert img.source_mode == "RGBA"
    np.testing.assert_array_equal(img.pixels[:, 0], 1.0)  # alpha 0: white whatever the stored colour
    np.testing.assert_array_equal(to_uint8(img.pixels[:, 2]), PHOTO[:4, 2])  # opaque: untouched
    a = 128 / 255
    np.testing.assert_allclose(img.pixels[:, 1], PHOTO[:4, 1] / 255 * a + (1 - a), atol=1e-6)


def test_la(tmp_path):
    la = np.dstack([np.full((2, 2), 40, np.uint8), np.array([[0, 255], [0, 255]], np.uint8)])
    img = _load_pil(tmp_path, Image.fromarray(la, "LA"))
    assert img.source_mode == "LA"
    np.testing.assert_allclose(img.pixels[:, 0], 1.0)
    np.testing.assert_allclose(img.pixels[:, 1], 40 / 255, atol=1e-6)


@pytest.mark.parametrize(("fmt", "tol"), [("TIFF", 0), ("JPEG", 3)])
def test_cmyk(tmp_path, fmt, tol):
    # Pure cyan-free magenta+yellow is red; PIL writes CMYK JPEGs Adobe-style (inverted), which must read back.
    img = _load_pil(tmp_path, Image.new("CMYK", (16, 16), (0, 255, 255, 0)), fmt)
    assert img.source_mode == "CMYK"
    assert np.abs(to_uint8(img.pixels).astype(int) - [255, 0, 0]).max() <= tol


def test_float_and_int32_modes(tmp_path):
    f = np.linspace(-0.5, 1.5, 12, dtype=np.float32).reshape(3, 4)
    img = _load_pil(tmp_path, Image.fromarray(f, "F"), "TIFF")
    assert img.source_mode == "F" and img.bit_depth == 16
    np.testing.assert_allclose(img.pixels[..., 0], np.clip(f, 0, 1), atol=1e-6)
    i = np.array([[0, 32768, 65535, 70000]], np.int32)
    img = _load_pil(tmp_path, Image.fromarray(i, "I"), "TIFF")
    np.testing.assert_allclose(img.pixels[0, :, 1], [0, 32768 / 65535, 1, 1], atol=1e-6)


# Pillow < 13 writes a YCbCr TIFF that it cannot read back ("image file is truncated"), so the fixture file itself
# cannot be made there (gradio 6, in the `ui` extra, caps pillow below 13).
@pytest.mark.skipif(int(PIL.__version__.split(".")[0]) < 13, reason="Pillow < 13 cannot round-trip a YCbCr TIFF")
def test_ycbcr_tiff(tmp_path):
    src = Image.fromarray(PHOTO).convert("YCbCr")
    img = _load_pil(tmp_path, src, "TIFF")
    assert img.source_mode == "YCbCr"
    np.testing.assert_array_equal(to_uint8(img.pixels), np.asarray(src.convert("RGB")))


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_multiframe_takes_first_frame(tmp_path, fmt):
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    img = _load_pil(tmp_path, red, fmt, save_all=True, append_images=[blue])
    np.testing.assert_array_equal(to_uint8(img.pixels), np.broadcast_to([255, 0, 0], (8, 8, 3)))


# --- orientation -----------------------------------------------------------------------------------------------


def _marked_photo() -> np.ndarray:
    a = PHOTO.copy()
    a[:8, :8] = (255, 0, 0)  # red block top-left
    return a


def test_exif_rotated_jpeg(tmp_path):
    src = Image.fromarray(_marked_photo())
    exif = src.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _write(tmp_path, "rot.jpg", _encode(src, "JPEG", quality=95, exif=exif))
    img = load_image(path)
    h, w = PHOTO.shape[:2]
    assert img.exif_transposed and (img.width, img.height) == (h, w)
    px = to_uint8(img.pixels).astype(int)
    assert np.abs(px[2:6, -6:-2] - [255, 0, 0]).max() < 40  # the red block is now top-right
    assert np.abs(px[2:6, 2:6] - [255, 0, 0]).max() > 100
    right, wrong = (np.abs(px - np.rot90(_marked_photo(), k)).mean() for k in (-1, 1))
    assert right < 8 < 3 * right < wrong  # JPEG error on a detailed photo, far below a wrong rotation's


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pil(tmp_path, orientation):
    src = Image.fromarray(PHOTO[:5, :7])
    exif = src.getexif()
    exif[0x0112] = orientation
    path = _write(tmp_path, "o.png", _encode(src, "PNG", exif=exif))
    img = load_image(path)
    assert img.exif_transposed == (orientation != 1)
    np.testing.assert_array_equal(to_uint8(img.pixels), np.asarray(ImageOps.exif_transpose(Image.open(path))))


# --- identity --------------------------------------------------------------------------------------------------


def test_sha256_and_info(tmp_path):
    payload = _encode(Image.fromarray(PHOTO), "JPEG")
    path = _write(tmp_path, "photo.jpg", payload)
    before = path.stat().st_mtime_ns
    img = load_image(str(path))
    assert img.sha256 == hashlib.sha256(payload).hexdigest()
    assert path.read_bytes() == payload and path.stat().st_mtime_ns == before
    info = img.info()
    assert isinstance(info, ImageInfo)
    assert (info.path, info.width, info.height, info.source_mode) == (str(path), 86, 64, "RGB")


def test_from_array():
    gray16 = from_array(np.full((3, 4), 65535, np.uint16), name="g")
    assert gray16.bit_depth == 16 and gray16.path == "g" and gray16.pixels.shape == (3, 4, 3)
    np.testing.assert_array_equal(gray16.pixels, 1.0)
    rgba = from_array(np.dstack([PHOTO[:2, :2], np.zeros((2, 2), np.uint8)]))
    np.testing.assert_array_equal(rgba.pixels, 1.0)
    rgb = from_array(PHOTO)
    np.testing.assert_array_equal(to_uint8(rgb.pixels), PHOTO)
    assert rgb.sha256 == from_array(PHOTO.astype(np.float32) / 255).sha256
    assert from_array(np.zeros((2, 3))).sha256 != from_array(np.zeros((3, 2))).sha256
    assert from_array(np.zeros((2, 3, 1), np.float32)).info().width == 3
    for bad in (np.zeros((2, 2), np.int64), np.zeros((2, 2, 5)), np.zeros((0, 2)), np.full((2, 2), np.nan)):
        with pytest.raises(ImageLoadError, match="arr"):
            from_array(bad, name="arr")


def test_to_uint8_rounds_and_clips():
    out = to_uint8(np.array([-0.2, 0.0, 0.5, 1 / 255 * 0.6, 1.0, 7.0, np.nan]))
    np.testing.assert_array_equal(out, [0, 0, 128, 1, 255, 255, 0])
    assert out.dtype == np.uint8


# --- file listing ----------------------------------------------------------------------------------------------


def test_iter_image_files(tmp_path):
    for rel in ["a.png", "B.JPG", "c.tiff", "notes.txt", ".hidden.png", "noext", "sub/d.webp", ".git/e.png"]:
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert iter_image_files([tmp_path]) == [tmp_path / n for n in ("B.JPG", "a.png", "c.tiff")]
    assert iter_image_files([tmp_path], recursive=True) == [
        tmp_path / n for n in ("B.JPG", "a.png", "c.tiff", "sub/d.webp")
    ]
    # explicit files are kept, even with odd suffixes; duplicates collapse
    assert iter_image_files([tmp_path / "notes.txt", str(tmp_path / "a.png"), tmp_path]) == [
        tmp_path / n for n in ("notes.txt", "a.png", "B.JPG", "c.tiff")
    ]
    with pytest.raises(ImageLoadError) as exc:
        iter_image_files([tmp_path / "gone.png"])
    _assert_one_line_error(exc, tmp_path / "gone.png")
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".ppm", ".pgm"} <= IMAGE_EXTENSIONS


# --- saving ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bit_depth", "tol"), [("o.png", 8, 0), ("o.tif", 16, 0), ("o.webp", 8, 0), ("o.jpg", 8, 6)]
)
def test_save_image_round_trip(tmp_path, name, bit_depth, tol):
    src = from_array(PHOTO).pixels
    out = save_image(tmp_path / name, src, bit_depth=bit_depth)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp files left
    back = load_image(out)
    assert back.bit_depth == bit_depth
    assert np.abs(to_uint8(back.pixels).astype(int) - PHOTO).mean() <= tol  # tol 0: lossless


def test_save_image_defaults_and_errors(tmp_path):
    assert save_image(tmp_path / "plain", PHOTO) == tmp_path / "plain.png"
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "plain.png").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    with pytest.raises(ValueError, match="bit_depth"):
        save_image(tmp_path / "x.jpg", PHOTO, bit_depth=16)
    with pytest.raises(ValueError, match="shape"):
        save_image(tmp_path / "x.png", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="cannot write"):
        save_image(tmp_path / "x.nosuchformat", PHOTO)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.png"]


def test_save_image_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    save_image(target, PHOTO)
    old = target.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_image(target, np.zeros((4, 4, 3)))
    assert target.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


# --- properties ------------------------------------------------------------------------------------------------


def _seeds() -> list[bytes]:
    small = Image.fromarray(PHOTO[:16, :16])
    return [_encode(small, f) for f in ("PNG", "JPEG", "GIF", "TIFF", "BMP", "WEBP", "PPM")]


SEEDS = _seeds()
FUZZ = settings(
    max_examples=int(os.environ.get("RNR_FUZZ_EXAMPLES", 120)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _load_or_clean_error(path: Path) -> None:
    try:
        img = load_image(path, max_pixels=1 << 16)
    except ImageLoadError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    else:
        assert img.pixels.dtype == np.float32 and img.pixels.ndim == 3 and img.pixels.shape[2] == 3
        assert np.isfinite(img.pixels).all() and img.pixels.min() >= 0 and img.pixels.max() <= 1


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about damaged EXIF before failing or recovering
@FUZZ
@given(payload=st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_image_load_error(tmp_path, payload):
    _load_or_clean_error(_write(tmp_path, "fuzz.img", payload))


@pytest.mark.filterwarnings("ignore::UserWarning")
@FUZZ
@given(
    seed=st.sampled_from(SEEDS),
    cut=st.integers(1, 10_000),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
)
def test_mutated_images_only_raise_image_load_error(tmp_path, seed, cut, flips):
    # Damage near-valid files, where decoders get much further than with random bytes.
    buf = bytearray(seed[: max(1, len(seed) * cut // 10_000)])
    for pos, value in flips:
        buf[pos % len(buf)] = value
    _load_or_clean_error(_write(tmp_path, "mutant.img", bytes(buf)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    arr=st.one_of(
        arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12), st.just(3))),
        arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12))),
    )
)
def test_png_round_trip_is_lossless(tmp_path, arr):
    img = load_image(save_image(tmp_path / "rt.png", arr))
    expected = arr if arr.ndim == 3 else np.repeat(arr[..., None], 3, 2)
    np.testing.assert_array_equal(to_uint8(img.pixels), expected)
