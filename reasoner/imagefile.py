"""Faithful output files: what an input file is, and restored pixels written like it.

What is kept: the container, the bit depth, EXIF, ICC profile and XMP.

Restoration works on the pixels as the file encodes them: no colour conversion happens on load (the ICC profile is
not applied), so writing the same profile back describes the restored pixels correctly. Pixels are loaded upright
(:mod:`reasoner.imageio` applies the EXIF orientation), so the EXIF written back says orientation 1. The exceptions
are recorded as notes: a CMYK or Lab input is converted to RGB on load, so its profile no longer applies and is
dropped; transparency is composited over white on load, so the output has none.

Writers: OpenCV for PNG (8 and 16 bits; metadata chunks added here), Pillow for JPEG (4:4:4), WebP and 8-bit TIFF,
tifffile for 16-bit TIFF. Every file is encoded in memory and written atomically.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reasoner.files import write_bytes_atomic

#: Output containers ``--format`` chooses from, and their file suffix.
OUTPUT_FORMATS: dict[str, str] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif"}
#: Input suffixes kept as they are when the output has the input's container (``photo.jpeg`` -> ``photo.jpeg``).
_SUFFIXES = {"png": {".png"}, "jpeg": {".jpg", ".jpeg", ".jpe", ".jfif"}, "webp": {".webp"}, "tiff": {".tif", ".tiff"}}
#: PIL format names of the containers kept as they are; any other input (BMP, GIF, PPM, ...) is written as PNG.
_CONTAINERS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp", "TIFF": "tiff"}
DEFAULT_QUALITY = 95
LOSSY = frozenset({"jpeg", "webp"})
DEEP = frozenset({"png", "tiff"})  # containers written with 16 bits a channel when the input had them

# EXIF tags that describe the file's layout, not the photo: never carried over (the writer sets its own). XMP and the
# ICC profile travel separately; Photoshop's layer data and IFD1 (a stale thumbnail) are dropped.
_LAYOUT_TAGS = frozenset({254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 284, 290, 291, 292, 293,
                          317, 320, 322, 323, 324, 325, 330, 338, 339, 340, 341, 347, 513, 514, 530, 531, 532, 700,
                          34675, 37724})  # fmt: skip
_ORIENTATION = 0x0112
_XMP_ORIENTATION = re.compile(rb'(tiff:Orientation(?:="|>))([0-9])')
_GREY_MODES = frozenset({"1", "L", "LA", "I", "F", "La"})


@dataclass(frozen=True)
class SourceFile:
    """What an input file is, as far as writing its restoration like it goes.

    Attributes:
        container: ``png``, ``jpeg``, ``webp`` or ``tiff``; None for any other format (written as PNG).
        suffix: The input's file suffix, lower-cased (``.jpeg``).
        bit_depth: 8, or 16 for anything deeper.
        grey: The input is greyscale (written back as greyscale).
        exif: EXIF to write (the ``Exif`` header + TIFF), orientation set to 1, layout tags and thumbnail dropped.
        icc_profile: The input's ICC profile, when it still describes the loaded pixels.
        xmp: The input's XMP packet, orientation set to 1.
        lossless: For WebP, whether the input was lossless (VP8L).
        orientation: The EXIF orientation the input had (1 when none).
        notes: What could not be carried over, and why.

    """

    container: str | None
    suffix: str = ""
    bit_depth: int = 8
    grey: bool = False
    exif: bytes | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None
    lossless: bool = False
    orientation: int = 1
    notes: tuple[str, ...] = ()


@dataclass
class WrittenFile:
    """What was written (recorded in the trace's ``output_file``)."""

    path: Path
    container: str
    bit_depth: int
    quality: int | None
    subsampling: str | None
    lossless: bool
    copied: bool
    exif_kept: bool
    icc_kept: bool
    xmp_kept: bool
    orientation_normalised: bool
    notes: list[str] = field(default_factory=list)


def probe_source(data: bytes, path: str | os.PathLike = "") -> SourceFile:
    """Read what :class:`SourceFile` says from an image file's bytes (the header and metadata; pixels not decoded).

    Never raises for damaged metadata: what cannot be read is left out, with a note.
    """
    from PIL import Image

    from reasoner.imageio import _FORMATS, _pil_limit_lifted, _rawmode

    suffix = Path(path).suffix.lower()
    notes: list[str] = []
    with _pil_limit_lifted():
        Image.init()
        im = Image.open(io.BytesIO(data), formats=[f for f in _FORMATS if f in Image.OPEN])
    container = _CONTAINERS.get(im.format or "")
    raw, ppm_max = _rawmode(im)
    mode = im.mode
    deep = (mode in ("RGB", "RGBA", "LA") and (";16" in raw or ppm_max > 255)) or mode.startswith(("I", "F"))
    grey = mode in _GREY_MODES or mode.startswith("I;16") or (deep and raw.startswith(("L;", "LA;")))
    exif, orientation = _exif(im, notes)
    icc = im.info.get("icc_profile") or None
    if icc and mode in ("CMYK", "YCbCr", "LAB"):
        notes.append(f"the {mode} input was converted to RGB on load; its ICC profile no longer applies (dropped)")
        icc = None
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        notes.append("transparency was composited over white on load; the output has no alpha channel")
    xmp = _xmp(im, data, container)
    if xmp is not None and orientation != 1:
        xmp = _XMP_ORIENTATION.sub(rb"\g<1>1", xmp)
    lossless = container == "webp" and _webp_lossless(data)
    return SourceFile(container, suffix, 16 if deep else 8, grey, exif, icc, xmp, lossless, orientation, tuple(notes))


def read_source(path: str | os.PathLike) -> tuple[SourceFile, bytes]:
    """:func:`probe_source` of a file, and the bytes it read (to check the input did not change, or to copy it).

    Raises:
        ImageLoadError: For a file that cannot be read (one line naming it).

    """
    from reasoner.imageio import ImageLoadError, _read_bytes

    shown = os.fspath(path)
    data = _read_bytes(shown)
    try:
        source = probe_source(data, shown)
    except Exception as e:  # noqa: BLE001 - it decoded before; a header PIL now refuses is a changed file
        raise ImageLoadError(shown, f"cannot read its header again ({e}); was it changed while restoring?") from e
    return source, data


def output_container(source: SourceFile, requested: str | None = None) -> str:
    """The container to write: ``requested`` (``--format``), else the input's, else PNG."""
    return normalise_format(requested) if requested is not None else source.container or "png"


def normalise_format(name: str) -> str:
    """``png``, ``jpeg``, ``webp`` or ``tiff`` for a format name or suffix (``jpg``, ``.TIF``, ...).

    Raises:
        ValueError: For anything else (one line listing the choices).

    """
    key = name.strip().lower().lstrip(".")
    key = {"jpg": "jpeg", "jpe": "jpeg", "jfif": "jpeg", "tif": "tiff"}.get(key, key)
    if key not in OUTPUT_FORMATS:
        raise ValueError(f"{name!r} is not an output format; choose png, jpeg, webp or tiff")
    return key


def output_suffix(source: SourceFile, container: str) -> str:
    """The output file's suffix: the input's own when the container is kept (``.jpeg`` stays), else the usual one."""
    return source.suffix if source.suffix in _SUFFIXES[container] else OUTPUT_FORMATS[container]


def check_quality(quality: int | None) -> int | None:
    """``quality`` if it is None or 1..100.

    Raises:
        ValueError: Otherwise (one line).

    """
    if quality is not None and not 1 <= int(quality) <= 100:
        raise ValueError(f"--quality {quality}: must be 1..100 (JPEG and WebP; PNG and TIFF are lossless)")
    return quality


def write_like(
    path: str | os.PathLike,
    pixels: np.ndarray,
    source: SourceFile,
    *,
    container: str | None = None,
    quality: int | None = None,
) -> WrittenFile:
    """Write restored ``pixels`` (float32 HxWx3 RGB in [0, 1]) to ``path`` like the input ``source``, atomically.

    ``container`` defaults to the input's (see :func:`output_container`); the path's suffix is the caller's choice
    (:func:`output_suffix`). Bit depth is the input's where the container holds it (PNG, TIFF), else 8; JPEG is
    written at ``quality`` (default 95) with 4:4:4 chroma, WebP lossless when the input was and no ``quality`` is
    given; EXIF (orientation 1), ICC and XMP go into every container.

    Raises:
        DiskFullError: The device is full; ``path`` is left as it was.
        ValueError: For pixels that are not an RGB image.

    """
    container = container or output_container(source)
    check_quality(quality)
    notes = list(source.notes)
    depth = source.bit_depth if container in DEEP else 8
    if source.bit_depth > depth:
        notes.append(f"the {source.bit_depth}-bit input was written with 8 bits a channel ({container} holds no more)")
    grey = source.grey and container != "webp"
    arr = _quantise(pixels, depth, grey)
    lossless = container in DEEP or (container == "webp" and quality is None and source.lossless)
    q = None if lossless else (quality or DEFAULT_QUALITY)
    exif, icc, xmp = source.exif, source.icc_profile, source.xmp
    if container == "png":
        data = _png(arr, exif, icc, xmp)
    elif container == "tiff" and depth == 16:
        data, exif_note = _tiff16(arr, exif, icc, xmp)
        if exif_note:
            notes.append(exif_note)
            exif = None
    else:
        data = _pillow(arr, container, q, lossless, exif, icc, xmp)
    out = write_bytes_atomic(path, data)
    return WrittenFile(out, container, depth, q, "4:4:4" if container == "jpeg" else None, lossless, False,
                       exif is not None, icc is not None, xmp is not None, source.orientation != 1,
                       notes)  # fmt: skip


def copy_input(path: str | os.PathLike, data: bytes, source: SourceFile) -> WrittenFile:
    """Write the input's own bytes to ``path`` (an unchanged image in its own container: bit-exact, nothing lost)."""
    out = write_bytes_atomic(path, data)
    container = source.container or "png"
    return WrittenFile(out, container, source.bit_depth, None, None, True, True, source.exif is not None,
                       source.icc_profile is not None, source.xmp is not None, False, [])  # fmt: skip


# ----- reading


def _exif(im, notes: list[str]) -> tuple[bytes | None, int]:
    """The EXIF to write back (orientation 1, layout tags and thumbnail dropped), and the input's orientation."""
    from PIL import ExifTags, Image

    try:
        exif = im.getexif()
        orientation = exif.get(_ORIENTATION, 1)
        orientation = orientation if isinstance(orientation, int) else 1
        if not exif:
            return None, orientation
        clean = Image.Exif()
        for tag, value in exif.items():
            if tag in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
                sub = dict(exif.get_ifd(tag))
                if tag == ExifTags.IFD.Exif and ExifTags.IFD.Interop in sub:
                    sub[ExifTags.IFD.Interop] = dict(exif.get_ifd(ExifTags.IFD.Interop))
                clean[tag] = sub
            elif tag not in _LAYOUT_TAGS:
                clean[tag] = value
        if _ORIENTATION in clean or orientation != 1:
            clean[_ORIENTATION] = 1
        data = clean.tobytes()
        Image.Exif().load(data)  # what will be written must read back
        return data, orientation
    except Exception as e:  # noqa: BLE001 - a damaged EXIF block costs the output its EXIF, not the photo
        notes.append(f"the input's EXIF could not be read ({type(e).__name__}); it was not carried over")
        return None, 1


def _xmp(im, data: bytes, container: str | None) -> bytes | None:
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if container == "tiff" and not xmp:
        tag = getattr(im, "tag_v2", {}).get(700)
        xmp = tag if isinstance(tag, bytes) else None
    if container == "png" and not xmp:
        xmp = _png_chunks(data).get("xmp")
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return xmp or None


def _png_chunks(data: bytes) -> dict[str, bytes]:
    """The XMP of a PNG whose iTXt chunk comes after the image data (PIL reads metadata before IDAT only)."""
    found: dict[str, bytes] = {}
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"iTXt" and body.startswith(b"XML:com.adobe.xmp\x00"):
            rest = body[len(b"XML:com.adobe.xmp\x00") :]
            compressed, parts = rest[0], rest[2:].split(b"\x00", 2)
            if len(parts) == 3:
                found["xmp"] = zlib.decompress(parts[2]) if compressed else parts[2]
        if kind == b"IEND":
            break
        pos += 12 + length
    return found


def _webp_lossless(data: bytes) -> bool:
    pos = 12
    while pos + 8 <= len(data):
        kind, (size,) = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])
        if kind in (b"VP8L", b"VP8 "):
            return kind == b"VP8L"
        pos += 8 + size + (size & 1)
    return False


# ----- writing


def _quantise(pixels: np.ndarray, depth: int, grey: bool) -> np.ndarray:
    a = np.asarray(pixels, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] != 3 or a.size == 0:
        raise ValueError(f"pixels of shape {a.shape} are not an HxWx3 RGB image")
    if grey:  # channels of a greyscale input stay equal unless a restorer tinted them; their mean is the grey
        a = a.mean(axis=2)
    scale = 65535.0 if depth == 16 else 255.0
    return np.rint(np.clip(np.nan_to_num(a), 0.0, 1.0) * scale).astype(np.uint16 if depth == 16 else np.uint8)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png(arr: np.ndarray, exif: bytes | None, icc: bytes | None, xmp: bytes | None) -> bytes:
    """PNG (8 or 16 bits, grey or RGB) by OpenCV, with iCCP, eXIf and iTXt (XMP) chunks after IHDR."""
    import cv2

    bgr = arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    data = buf.tobytes()
    extra = b""
    if icc:
        extra += _chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))
    if exif:
        extra += _chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    if xmp:
        extra += _chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)
    end_ihdr = 8 + 8 + 13 + 4  # signature, IHDR's length and type, its 13 bytes, its CRC
    return data[:end_ihdr] + extra + data[end_ihdr:]


def _pillow(arr, container: str, quality, lossless: bool, exif, icc, xmp) -> bytes:
    """JPEG (4:4:4), WebP or 8-bit TIFF by Pillow, with EXIF, ICC and XMP."""
    from PIL import Image

    im = Image.fromarray(arr)
    kw: dict = {}
    if icc:
        kw["icc_profile"] = icc
    if container == "tiff":
        if exif or xmp:
            tags = Image.Exif()
            if exif:
                tags.load(exif)
            if xmp:
                tags[700] = xmp
            kw["exif"] = tags
        fmt = "TIFF"  # uncompressed: Pillow's compressing (libtiff) writer cannot write the EXIF sub-directories
    else:
        if exif:
            kw["exif"] = exif
        if xmp:
            kw["xmp"] = xmp
        if container == "jpeg":
            fmt, kw = "JPEG", {**kw, "quality": quality, "subsampling": 0}
        else:
            fmt = "WEBP"
            kw |= {"lossless": True, "quality": 100, "method": 4} if lossless else {"quality": quality, "method": 4}
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


# IFD0 text tags a 16-bit TIFF keeps from the EXIF (tifffile writes no EXIF sub-IFD).
_TIFF_TEXT_TAGS = {270: "ImageDescription", 271: "Make", 272: "Model", 305: "Software", 306: "DateTime",
                   315: "Artist", 33432: "Copyright"}  # fmt: skip


def _tiff16(arr, exif, icc, xmp) -> tuple[bytes, str | None]:
    """16-bit TIFF by tifffile (deflate), with ICC, XMP and the EXIF's IFD0 text tags; returns a note if EXIF lost."""
    import tifffile
    from PIL import ExifTags, Image

    extratags = []
    note = None
    if exif:
        tags = Image.Exif()
        tags.load(exif)
        for tag, name in _TIFF_TEXT_TAGS.items():
            value = tags.get(tag)
            if isinstance(value, str) and value:
                extratags.append((tag, "s", 0, value, True))
        if ExifTags.IFD.Exif in tags or ExifTags.IFD.GPSInfo in tags:
            note = ("16-bit TIFF: camera, date and copyright tags kept in the main directory; the EXIF and GPS "
                    "sub-directories (exposure, original date, location) were not written")  # fmt: skip
    if xmp:
        extratags.append((700, "B", len(xmp), xmp, True))
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="minisblack" if arr.ndim == 2 else "rgb", compression="zlib",
                     iccprofile=icc, extratags=extratags, metadata=None)  # fmt: skip
    return buf.getvalue(), note
