"""Robust image loading and saving: every bad input becomes one user-facing line, never a traceback or a hang.

Pixels are always float32 HxWx3 RGB in [0, 1], C-contiguous, after EXIF orientation. Files are read once and
decoded from memory, so the input is never re-opened or modified and its SHA-256 matches what was decoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from reasoner.schema import ImageInfo

DEFAULT_MAX_PIXELS: int = 128 * 1024 * 1024
"""Largest width*height decoded unless the caller or RNR_MAX_PIXELS (read at each call) says otherwise."""

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".dib", ".webp", ".gif", ".ppm", ".pgm",
     ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".qoi", ".avif"}
)  # fmt: skip

# Formats PIL may try. Restricting them keeps exotic plugins off untrusted bytes (EPS, for one, runs Ghostscript).
_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "DIB", "GIF", "WEBP", "PPM", "TGA", "JPEG2000", "QOI", "AVIF")
# EXIF orientation -> what displays it upright, as PIL.ImageOps.exif_transpose does; done in numpy so that the
# 16-bit OpenCV path (IMREAD_UNCHANGED ignores EXIF) is oriented exactly like the PIL path.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
# PIL.Image.MAX_IMAGE_PIXELS is process-global; swapping it must not interleave between threads.
_PIL_LIMIT_LOCK = threading.Lock()


class ImageLoadError(ValueError):
    """An input image that cannot be used; ``str(err) == f"{path}: {reason}"``, one line, naming the fix if any."""

    def __init__(self, path: str, reason: str) -> None:
        reason = " ".join(str(reason).split())
        super().__init__(path, reason)  # args kept so the error pickles across worker processes
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True, eq=False)  # eq on ndarray fields would raise, so identity equality it is
class LoadedImage:
    """A decoded image.

    Attributes:
        pixels: float32 HxWx3 RGB in [0, 1], C-contiguous, after EXIF orientation, alpha composited over white.
        path: Path as given by the user, or None for in-memory arrays.
        sha256: SHA-256 of the file bytes (for ``from_array``: of the shape and the float32 pixel bytes).
        source_mode: PIL mode of the file ("RGB", "L", "I;16", "P", "RGBA", "CMYK", ...; "RGB;16" for 48-bit).
        bit_depth: 8, or 16 for anything deeper than 8 bits per channel.
        exif_transposed: True when an EXIF orientation other than 1 was applied.

    """

    pixels: np.ndarray
    path: str | None
    sha256: str
    source_mode: str
    bit_depth: int
    exif_transposed: bool

    @property
    def width(self) -> int:
        """Width in pixels after orientation."""
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        """Height in pixels after orientation."""
        return int(self.pixels.shape[0])

    def info(self) -> ImageInfo:
        """Identity record for the diagnosis schema."""
        return ImageInfo(
            path=self.path, sha256=self.sha256, width=self.width, height=self.height, source_mode=self.source_mode
        )


def load_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> LoadedImage:
    """Read and decode one image file.

    Args:
        path: The image file.
        max_pixels: Refuse images whose header declares more than this many pixels, before decoding anything.
            Defaults to RNR_MAX_PIXELS if set, else DEFAULT_MAX_PIXELS.

    Returns:
        The decoded image; see LoadedImage for the pixel convention.

    Raises:
        ImageLoadError: For any file that is missing, unreadable, empty, not an image, corrupt, truncated, too
            large, or in an unsupported colour mode.

    """
    shown = os.fspath(path)
    limit = _resolve_limit(shown, max_pixels)
    data = _read_bytes(shown)
    try:
        pixels, mode, depth, transposed = _decode(data, shown, limit)
    except ImageLoadError:
        raise
    except Image.UnidentifiedImageError as e:
        reason = "not a recognised image (supported: PNG, JPEG, TIFF, BMP, GIF, WebP, PPM/PGM, TGA, JPEG 2000, QOI)"
        raise ImageLoadError(shown, reason) from e
    except Image.DecompressionBombError as e:  # a GIF/TIFF frame or tile larger than the header promised
        raise ImageLoadError(shown, f"{e} Raise --max-pixels / RNR_MAX_PIXELS only if the file is trusted") from e
    except Exception as e:  # decoders signal bad data as OSError, SyntaxError, struct.error, cv2.error, ...
        detail = str(e) or type(e).__name__
        raise ImageLoadError(shown, f"cannot decode ({detail}); the file is corrupt or truncated") from e
    return LoadedImage(pixels, shown, hashlib.sha256(data).hexdigest(), mode, depth, transposed)


def from_array(arr: np.ndarray, *, name: str | None = None) -> LoadedImage:
    """Wrap an in-memory array as a LoadedImage.

    Args:
        arr: HxW, HxWx1, HxWx2 (gray+alpha), HxWx3 (RGB) or HxWx4 (RGBA); uint8, uint16 or float in [0, 1]
            (floats are clipped). Alpha is composited over white, as for files.
        name: Shown in errors and stored as ``path``.

    Raises:
        ImageLoadError: For an unsupported dtype or shape, an empty array, or non-finite values.

    """
    shown = name or "<array>"
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] in (1, 2, 3, 4):
        channels = a.shape[2]
    elif a.ndim == 2:
        a, channels = a[..., None], 1
    else:
        raise ImageLoadError(shown, f"array shape {a.shape} is not HxW or HxWxC with C in 1..4")
    if a.size == 0:
        raise ImageLoadError(shown, f"array shape {a.shape} is empty")
    base = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    if a.dtype == np.uint8 or a.dtype == np.bool_:
        x, mode, depth = a.astype(np.float32) / (1.0 if a.dtype == np.bool_ else 255.0), base, 8
    elif a.dtype == np.uint16:
        x, mode, depth = a.astype(np.float32) / 65535.0, f"{base};16" if channels > 1 else "I;16", 16
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageLoadError(shown, "array contains NaN or infinite values")
        x, mode, depth = np.clip(a.astype(np.float32), 0.0, 1.0), base, 16
    else:
        raise ImageLoadError(shown, f"unsupported dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    pixels = _to_rgb(x)
    digest = hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()
    return LoadedImage(pixels, name, digest, mode, depth, False)


def iter_image_files(inputs: Sequence[str | Path], *, recursive: bool = False) -> list[Path]:
    """Expand files and directories into the list of images to process, in a stable order.

    Files given explicitly are kept as they are, whatever their suffix, so a wrong file fails loudly at load time
    instead of vanishing. Directories expand to their non-hidden files with an IMAGE_EXTENSIONS suffix
    (case-insensitive), sorted; with ``recursive`` also their non-hidden subdirectories (symlinks not followed).
    Duplicates are dropped, first occurrence wins.

    Raises:
        ImageLoadError: For an input that does not exist.

    """
    out: dict[Path, None] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found: list[Path] = []
            for root, dirs, files in os.walk(p):
                dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
                found += [Path(root, f) for f in files if not f.startswith(".") and _is_image_name(f)]
            out.update(dict.fromkeys(sorted(found)))
        elif p.exists():
            out[p] = None
        else:
            raise ImageLoadError(str(item), "no such file or directory")
    return list(out)


def save_image(path: str | Path, pixels: np.ndarray, *, bit_depth: int = 8) -> Path:
    """Write an image atomically: encode in memory, write a hidden temp file beside it, then ``os.replace``.

    A crash or error never leaves a partial file under the final name. The format follows the suffix; a path
    without one gets ".png" (lossless). WebP is written lossless, JPEG at quality 95.

    Args:
        path: Destination file.
        pixels: float HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) in [0, 1] (clipped), or uint8 when bit_depth is 8.
        bit_depth: 8, or 16 for PNG/TIFF/PPM/PGM.

    Returns:
        The path written.

    Raises:
        ValueError: For a bad bit depth, shape, or a format the suffix does not support.

    """
    out = Path(path)
    if not out.suffix:
        out = out.with_name(out.name + ".png")
    ext = out.suffix.lower()
    if bit_depth not in (8, 16) or (bit_depth == 16 and ext not in {".png", ".tif", ".tiff", ".ppm", ".pgm"}):
        raise ValueError(f"{out}: bit_depth={bit_depth} is not supported for {ext}; use 8, or 16 with .png/.tif")
    a = np.asarray(pixels)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))) or a.size == 0:
        raise ValueError(f"{out}: pixels of shape {a.shape} are not HxW, HxWx1, HxWx3 or HxWx4")
    if bit_depth == 16:
        a = np.rint(np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0) * 65535.0).astype(np.uint16)
    else:
        a = to_uint8(a)
    if a.ndim == 3 and a.shape[2] >= 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR if a.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    params = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95], ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95],
              ".webp": [cv2.IMWRITE_WEBP_QUALITY, 101]}.get(ext, [])  # fmt: skip
    try:
        ok, buf = cv2.imencode(ext, a, params)
    except cv2.error as e:
        raise ValueError(f"{out}: cannot write {ext} files; use .png, .tif, .jpg, .webp or .bmp") from e
    if not ok:
        raise ValueError(f"{out}: encoding {ext} failed; use .png")
    write_bytes_atomic(out, buf.tobytes())
    return out


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Convert float pixels in [0, 1] to uint8 with rounding and clipping (NaN becomes 0); uint8 passes through."""
    a = np.asarray(pixels)
    if a.dtype == np.uint8:
        return a
    return np.rint(np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _resolve_limit(shown: str, max_pixels: int | None) -> int:
    if max_pixels is not None:
        return int(max_pixels)
    env = os.environ.get("RNR_MAX_PIXELS", "").strip()
    if not env:
        return DEFAULT_MAX_PIXELS
    value = int(env) if env.isdigit() else 0
    if value <= 0:
        raise ImageLoadError(shown, f"RNR_MAX_PIXELS={env!r} is not a positive integer; fix or unset it")
    return value


def _read_bytes(shown: str) -> bytes:
    try:
        # O_NONBLOCK so a FIFO or device given by mistake is refused below instead of blocking forever.
        fd = os.open(shown, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as e:
        raise ImageLoadError(shown, "no such file") from e
    except PermissionError as e:
        raise ImageLoadError(shown, "permission denied; make the file readable (chmod +r)") from e
    except OSError as e:
        raise ImageLoadError(shown, f"cannot open ({e.strerror or e})") from e
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ImageLoadError(shown, "is a directory; pass image files (directories expand only as inputs)")
        if not stat.S_ISREG(st.st_mode):
            raise ImageLoadError(shown, "not a regular file (a device, FIFO or socket); pass an image file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    except OSError as e:
        raise ImageLoadError(shown, f"cannot read ({e.strerror or e})") from e
    finally:
        os.close(fd)
    if not data:
        raise ImageLoadError(shown, "empty file (0 bytes)")
    return data


@contextlib.contextmanager
def _pil_limit_lifted() -> Iterator[int | None]:
    """Switch PIL's own decompression-bomb guard off so that our max_pixels is the limit in force.

    PIL warns above Image.MAX_IMAGE_PIXELS and refuses above twice that, whatever --max-pixels says. The setting
    is process-global, hence the lock; callers hold it only to parse a header or to decode an image that our
    own header check has already admitted. Yields PIL's limit as it was.
    """
    with _PIL_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield saved
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _decode(data: bytes, shown: str, limit: int) -> tuple[np.ndarray, str, int, bool]:
    with _pil_limit_lifted() as pil_limit:
        Image.init()  # registers every plugin once; cheap afterwards
        im = Image.open(io.BytesIO(data), formats=[f for f in _FORMATS if f in Image.OPEN])
    w, h = im.size
    if w < 1 or h < 1:
        raise ImageLoadError(shown, f"header declares an empty {w}x{h} image; the file is corrupt")
    if w * h > limit:
        raise ImageLoadError(
            shown,
            f"image is {w}x{h} = {w * h:,} pixels, over the {limit:,}-pixel limit (decompression-bomb guard); "
            "if the file is trusted, raise it with --max-pixels or RNR_MAX_PIXELS",
        )
    # PIL empties .tile once loaded, so read the on-disk sample layout first.
    raw, ppm_max = _rawmode(im)
    # Decode fully now: a lazy PIL image would only fail ("image file is truncated") later, far from here.
    # ImageFile.LOAD_TRUNCATED_IMAGES is never set here, so truncation is an error, not grey padding.
    # Images within PIL's limit decode without the lock, in parallel; bigger ones hold it (and so stall other
    # loads' header parsing) while they decode.
    with _pil_limit_lifted() if pil_limit is not None and w * h > pil_limit else contextlib.nullcontext():
        im.load()
    orientation = _orientation(im)
    # PIL decodes 16-bit colour to 8 bits; OpenCV keeps all 16. PIL's load above still vetted the data, and
    # where OpenCV cannot read the format, PIL's 8-bit result is the fallback.
    deep = im.mode in ("RGB", "RGBA", "LA") and (";16" in raw or ppm_max > 255)
    x = _imdecode16(data) if deep else None
    if x is not None:
        if x.ndim == 3 and x.shape[2] in (3, 4):
            x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB if x.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
        rgb = _to_rgb(x.astype(np.float32) / float(ppm_max if ppm_max > 255 else 65535))
        mode, depth = f"{raw.split(';')[0] or im.mode};16", 16  # PIL calls 16-bit gray+alpha "RGBA"
    else:
        rgb, mode, depth = _pil_to_rgb(im, shown), im.mode, 16 if im.mode.startswith(("I", "F")) else 8
    rgb = _ORIENT.get(orientation, lambda a: a)(rgb)
    return np.ascontiguousarray(rgb, dtype=np.float32), mode, depth, orientation in _ORIENT


def _imdecode16(data: bytes) -> np.ndarray | None:
    try:
        x = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    return x if x is not None and x.dtype == np.uint16 else None


def _rawmode(im: Image.Image) -> tuple[str, int]:
    """Return the first tile's raw sample mode (e.g. "RGB;16B") and, for PPM, the declared maxval."""
    tile = (getattr(im, "tile", None) or [None])[0]
    args = tile.args if tile is not None else ""
    if isinstance(args, str):
        return args, 0
    raw = args[0] if isinstance(args, tuple) and args and isinstance(args[0], str) else ""
    maxval = args[1] if tile.codec_name == "ppm" and len(args) > 1 and isinstance(args[1], int) else 0
    return raw, maxval


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # a damaged EXIF block should not cost the user the picture; treat it as upright
        return 1
    return value if isinstance(value, int) else 1


def _pil_to_rgb(im: Image.Image, shown: str) -> np.ndarray:
    mode = im.mode
    if mode == "I" or mode.startswith("I;16"):
        # 16-bit grayscale (PNG, TIFF, PGM) arrives as "I;16*" or, for 32-bit containers, "I" holding 0..65535.
        return _to_rgb(np.clip(np.asarray(im).astype(np.float32) / 65535.0, 0.0, 1.0)[..., None])
    if mode == "F":
        # Float images carry no range metadata; [0, 1] is the convention of the tools that write them.
        return _to_rgb(np.clip(np.nan_to_num(np.asarray(im, dtype=np.float32)), 0.0, 1.0)[..., None])
    try:
        if im.has_transparency_data:
            return _to_rgb(np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0)
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except ValueError as e:
        raise ImageLoadError(shown, f"unsupported colour mode {mode!r}; convert the file to RGB") from e


def _to_rgb(x: np.ndarray) -> np.ndarray:
    """Float HxWxC (C = 1..4, last channel alpha for 2 and 4) to RGB, compositing alpha over white.

    Restoration works on the visible image: transparent pixels often hold arbitrary colour (black, stale
    content) that would read as degradation, and white is how documents and most pages show transparency.
    """
    if x.shape[2] in (2, 4):
        alpha = x[..., -1:]
        x = x[..., :-1] * alpha + (1.0 - alpha)
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return np.ascontiguousarray(x, dtype=np.float32)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and ``os.replace``: the file is complete or absent."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the final permissions, as a plain open() would (mkstemp's are 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
