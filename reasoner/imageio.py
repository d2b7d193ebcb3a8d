"""Robust image loading and saving: every bad input becomes one user-facing line, never a traceback or a hang.

Pixels are always float32 HxWx3 RGB in [0, 1], C-contiguous, after EXIF orientation. Files are read once and
decoded from memory, so the input is never re-opened or modified and its SHA-256 matches what was decoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from reasoner.files import special_file_reason, write_bytes_atomic  # noqa: F401  (re-exported)
from reasoner.schema import ImageInfo

DEFAULT_MAX_PIXELS: int = 128 * 1024 * 1024
"""Decompression-bomb guard: the largest width*height decoded unless the caller or RNR_MAX_PIXELS says otherwise.
The default in force is lower where memory is short: see :func:`resolve_max_pixels`."""

#: Peak resident memory per input pixel, above the interpreter's own, of what a command does with an image on the
#: default backends (measured at 4 MP: decoding 16 B/px, diagnosis 36 B/px; a restoration 247 B/px at 4 MP, but
#: images above the tiling threshold (restorer.tiling, 4.2 MP) are restored per tile in place: 61 B/px at 24 MP and
#: 56 at 50 MP by bench/large.py, so under 1.1 GB below the threshold and ~60 B/px above; margins added).
PEAK_BYTES_PER_PIXEL: dict[str, int] = {"load": 24, "diagnose": 48, "restore": 100}
#: Share of the available memory one image may take (the rest: the interpreter, other workers, the OS).
MEMORY_SHARE = 0.7


class PixelLimit(int):
    """A pixel limit that remembers where it came from (``why``), so a refusal can say it."""

    why: str

    def __new__(cls, value: int, why: str) -> PixelLimit:  # noqa: D102
        obj = super().__new__(cls, value)
        obj.why = why
        return obj

    def __reduce__(self):  # travels to pool and Ray workers by pickle (int's own reduce drops ``why``)
        return (PixelLimit, (int(self), self.why))


def available_memory() -> int | None:
    """Bytes of memory available to this process now: MemAvailable, capped by a cgroup limit; None if unknown."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < (1 << 60):
            used = 0
            for cur in ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"):
                try:
                    used = int(Path(cur).read_text().strip())
                    break
                except (OSError, ValueError):
                    continue
            cap = max(int(raw) - used, 0)
            avail = cap if avail is None else min(avail, cap)
        break
    return avail


def resolve_max_pixels(max_pixels: int | None = None, stage: str = "load", *, workers: int = 1) -> PixelLimit:
    """The pixel limit in force for ``stage`` ("load", "diagnose", "restore"), and why.

    An explicit ``max_pixels`` (``--max-pixels``) wins, then ``RNR_MAX_PIXELS``; otherwise the smaller of the
    decompression-bomb guard :data:`DEFAULT_MAX_PIXELS` and what fits in :data:`MEMORY_SHARE` of the available memory
    at :data:`PEAK_BYTES_PER_PIXEL` for the stage, shared by ``workers`` processes.

    Raises:
        ValueError: For a limit that is not a positive integer (one line naming where it came from).

    """
    if max_pixels is not None:
        if int(max_pixels) <= 0:
            raise ValueError(f"--max-pixels {max_pixels}: must be a positive number of pixels")
        return PixelLimit(int(max_pixels), "--max-pixels")
    env = os.environ.get("RNR_MAX_PIXELS", "").strip()
    if env:
        if not env.isdigit() or int(env) <= 0:
            raise ValueError(f"RNR_MAX_PIXELS={env!r} is not a positive integer; fix or unset it")
        return PixelLimit(int(env), "RNR_MAX_PIXELS")
    avail = available_memory()
    per_px = PEAK_BYTES_PER_PIXEL.get(stage, PEAK_BYTES_PER_PIXEL["load"])
    if avail is not None:
        fit = int(avail * MEMORY_SHARE / max(workers, 1) / per_px)
        if fit < DEFAULT_MAX_PIXELS:
            gb = avail / 1024**3
            how = f"{stage} needs about {per_px} bytes a pixel and {gb:.1f} GB is available"
            how += f" to {workers} workers" if workers > 1 else ""
            return PixelLimit(max(fit, 1), f"memory guard: {how}")
    return PixelLimit(DEFAULT_MAX_PIXELS, "decompression-bomb guard")


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
            Defaults to :func:`resolve_max_pixels` for decoding (RNR_MAX_PIXELS if set, else the smaller of
            DEFAULT_MAX_PIXELS and what memory allows).

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
        x, mode, depth = np.clip(a, 0.0, 1.0).astype(np.float32, copy=False), base, 16
    else:
        raise ImageLoadError(shown, f"unsupported dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    pixels = _to_rgb(x)
    h = hashlib.sha256(f"{pixels.shape}".encode())  # the same digest as hashing shape + bytes, without a copy
    h.update(memoryview(np.ascontiguousarray(pixels)).cast("B"))
    return LoadedImage(pixels, name, h.hexdigest(), mode, depth, False)


def iter_image_files(
    inputs: Sequence[str | Path],
    *,
    recursive: bool = False,
    follow_symlinks: bool = False,
    exclude: Sequence[str | Path] = (),
    on_refused: Callable[[ImageLoadError], None] | None = None,
) -> list[Path]:
    """Expand files and directories into the list of images to process, in a stable order.

    Files given explicitly are kept as they are, whatever their suffix, so a wrong file fails loudly at load time
    instead of vanishing. Directories expand to their non-hidden files with an IMAGE_EXTENSIONS suffix
    (case-insensitive), sorted; with ``recursive`` also their non-hidden subdirectories. Duplicates are dropped,
    first occurrence wins.

    Refused, never read (one :class:`ImageLoadError` each, given to ``on_refused``): FIFOs, sockets and devices,
    and, inside a directory, symlinks whose target lies outside the directory given (unless ``follow_symlinks``).
    Folders in ``exclude`` (an output folder inside the inputs) are never entered.

    Raises:
        ImageLoadError: For an input that does not exist, or a refused entry when there is no ``on_refused``.

    """

    def refuse(path: Path, reason: str) -> None:
        err = ImageLoadError(str(path), reason)
        if on_refused is None:
            raise err
        on_refused(err)

    skip = {os.path.realpath(x) for x in exclude}
    out: dict[Path, None] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            top = os.path.realpath(p)
            if top in skip:
                continue
            found: list[Path] = []
            seen_dirs = {top}
            for root, dirs, files in os.walk(p, followlinks=follow_symlinks):
                keep = []
                for d in sorted(dirs) if recursive else []:
                    full = Path(root, d)
                    real = os.path.realpath(full)
                    if d.startswith(".") or real in skip or real in seen_dirs:
                        continue  # hidden, the output folder, or a link loop
                    if full.is_symlink() and not follow_symlinks:
                        if not _inside(real, top):
                            refuse(full, f"symlink to {real}, outside {p}; not followed (--follow-symlinks allows)")
                        continue
                    seen_dirs.add(real)
                    keep.append(d)
                dirs[:] = keep
                for f in files:
                    if f.startswith(".") or not _is_image_name(f):
                        continue
                    full = Path(root, f)
                    if full.is_symlink() and not follow_symlinks and not _inside(os.path.realpath(full), top):
                        refuse(full, f"symlink to {os.path.realpath(full)}, outside {p}; not followed "
                                     "(--follow-symlinks allows)")  # fmt: skip
                        continue
                    special = special_file_reason(full)
                    if special:
                        refuse(full, special)
                        continue
                    found.append(full)
            out.update(dict.fromkeys(sorted(found)))
        elif p.exists():
            special = special_file_reason(p)
            if special:
                refuse(p, special)
            else:
                out[p] = None
        else:
            raise ImageLoadError(str(item), "no such file or directory")
    return list(out)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


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
    if isinstance(max_pixels, PixelLimit):
        return max_pixels
    try:
        return resolve_max_pixels(max_pixels, "load")
    except ValueError as e:
        raise ImageLoadError(shown, str(e)) from None


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read safely (special files refused first, never blocking), in 1 MB chunks.

    Raises:
        ImageLoadError: For a missing, unreadable or special file (one line naming it).

    """
    shown = os.fspath(path)
    fd = _open_regular(shown)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise ImageLoadError(shown, f"cannot read ({e.strerror or e})") from e
    finally:
        os.close(fd)
    return h.hexdigest()


def header_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` an image file's header declares (its first 256 KB read safely), or None if unknown."""
    try:
        fd = _open_regular(os.fspath(path))
    except ImageLoadError:
        return None
    try:
        head = os.read(fd, 1 << 18)
        Image.init()
        with Image.open(io.BytesIO(head), formats=[f for f in _FORMATS if f in Image.OPEN]) as im:
            return im.size
    except Exception:  # noqa: BLE001 - a header PIL cannot read from this much is simply unknown
        return None
    finally:
        os.close(fd)


def _open_regular(shown: str) -> int:
    special = special_file_reason(shown)
    if special:  # refused on stat alone: opening a FIFO can block, a device can stream for ever
        raise ImageLoadError(shown, special)
    try:
        # O_NONBLOCK so a FIFO swapped in after the check above is refused below instead of blocking forever.
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
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_bytes(shown: str) -> bytes:
    fd = _open_regular(shown)
    try:
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
            f"image is {w}x{h} = {w * h:,} pixels, over the {limit:,}-pixel limit "
            f"({getattr(limit, 'why', 'decompression-bomb guard')}); "
            "if the file is trusted and memory allows, raise it with --max-pixels or RNR_MAX_PIXELS",
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
