"""Reading and writing images as numpy arrays.

Pixel arrays in this module are ``H x W`` (gray) or ``H x W x C`` with ``C`` in ``{2, 3, 4}``
(gray + alpha, RGB, RGBA), dtype ``uint8`` or ``uint16``. Float arrays are ``float32`` in
``[0, 1]`` with the same layout (see :func:`to_float` and :func:`from_float`).

Supported formats: PNG, JPEG, TIFF, BMP and WebP. 16-bit depth is kept for PNG and TIFF, both
when reading and when writing.
"""

from __future__ import annotations

import errno
import glob
import os
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tifffile
from PIL import Image as PILImage
from PIL import ImageOps

from malleconv.io.atomic import atomic_write

__all__ = [
    "IMAGE_EXTENSIONS",
    "Image",
    "ImageReadError",
    "convert_channels",
    "drop_alpha",
    "encode_png16",
    "from_float",
    "is_image_file",
    "list_images",
    "read_image",
    "rgb_to_gray",
    "to_float",
    "write_image",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
)
"""Lower-case file extensions (with the dot) that :func:`is_image_file` accepts."""

_TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
_SIXTEEN_BIT_EXTENSIONS = frozenset({".png", ".tif", ".tiff"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_ORIENTATION_TAG = 0x0112

# ITU-R BT.601 luma weights, the convention of the gray denoising benchmarks (MATLAB rgb2gray).
_BT601 = np.array([0.299, 0.587, 0.114])


class ImageReadError(ValueError):
    """An image file exists but cannot be decoded (corrupt, truncated or unsupported)."""


@dataclass(eq=False)  # element-wise array comparison makes == meaningless
class Image:
    """A decoded image.

    Attributes:
        pixels: ``H x W`` (gray) or ``H x W x C`` array, ``C`` in ``{2, 3, 4}`` (gray + alpha,
            RGB, RGBA); dtype ``uint8`` or ``uint16``.
        icc_profile: Embedded ICC colour profile, or None.
        path: The file the image was read from, or None.
    """

    pixels: np.ndarray
    icc_profile: bytes | None = None
    path: Path | None = None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return 1 if self.pixels.ndim == 2 else int(self.pixels.shape[2])

    @property
    def bit_depth(self) -> int:
        return 8 * self.pixels.dtype.itemsize

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)


# --------------------------------------------------------------------------------------------
# Reading


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read an image file into an :class:`Image`.

    EXIF (or TIFF) orientation is applied, so ``pixels`` is upright. Palette images become RGB
    (RGBA when they carry transparency), 1-bit images become 8-bit gray, CMYK becomes RGB (the
    CMYK ICC profile is then dropped), 16-bit PNG and TIFF stay 16-bit. TIFF files are decoded
    with tifffile, falling back to Pillow for what tifffile cannot decode (e.g. JPEG-compressed
    TIFF without imagecodecs). Float TIFFs are assumed to hold values in ``[0, 1]`` and are
    converted to ``uint16``.

    Args:
        path: Image file (PNG, JPEG, TIFF, BMP, WebP, or anything else Pillow decodes).

    Returns:
        The image; ``pixels`` is ``H x W`` or ``H x W x C`` (``C`` in 2, 3, 4), uint8 or uint16.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageReadError: the file cannot be decoded; the message names the file and the reason.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "image file not found", str(path))
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image file")

    tiff_error: Exception | None = None
    pixels: np.ndarray | None = None
    icc: bytes | None = None
    if path.suffix.lower() in _TIFF_EXTENSIONS:
        try:
            pixels, icc = _read_tiff(path)
        except MemoryError:
            raise
        except Exception as exc:  # tifffile raises many types on odd files; Pillow may cope
            tiff_error = exc
    if pixels is None:
        try:
            pixels, icc = _read_pillow(path)
        except MemoryError:
            raise
        except Exception as exc:
            reason = _describe(exc)
            if tiff_error is not None:
                reason = f"tifffile: {_describe(tiff_error)}; Pillow: {reason}"
            raise ImageReadError(f"{path}: cannot read image ({reason})") from exc
    try:
        pixels = _normalize_array(pixels)
    except ValueError as exc:
        raise ImageReadError(f"{path}: {exc}") from exc
    return Image(pixels=pixels, icc_profile=icc or None, path=path)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _normalize_array(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (2, 3, 4)):
        raise ValueError(f"unsupported pixel array shape {pixels.shape}")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"unsupported pixel dtype {pixels.dtype}")
    # Native byte order and C order so downstream torch.from_numpy and slicing behave.
    return np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("="))


def _apply_orientation(pixels: np.ndarray, orientation: int | None) -> np.ndarray:
    """Apply an EXIF/TIFF orientation (1-8) to an ``H x W [x C]`` array, like exif_transpose."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return np.rot90(pixels.swapaxes(0, 1), 2)
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def _int_to_uint16(arr: np.ndarray) -> np.ndarray:
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi > 65535:
        raise ValueError(f"integer pixel values span {lo}..{hi}, outside 0..65535")
    return arr.astype(np.uint16)


def _float_to_uint16(arr: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise ValueError("float image contains NaN or infinite values")
    return from_float(arr, np.uint16)


def _rescale(arr: np.ndarray, bits: int) -> np.ndarray:
    """Stretch ``bits``-bit integers (e.g. 12-bit TIFF) to the full uint8/uint16 range."""
    if bits in (8, 16):
        return arr
    target = np.uint8 if bits < 8 else np.uint16
    top = np.iinfo(target).max
    scaled = np.rint(arr.astype(np.float64) * (top / (2**bits - 1)))
    return scaled.astype(target)


def _tag_bytes(value: object) -> bytes | None:
    # tifffile gives UNDEFINED/BYTE tags as bytes, or as a tuple/array of ints in older versions.
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return np.asarray(value, dtype=np.uint8).tobytes()
    except (TypeError, ValueError):
        return None


def _read_tiff(path: Path) -> tuple[np.ndarray, bytes | None]:
    photometric_enum = tifffile.PHOTOMETRIC
    with tifffile.TiffFile(path) as tif:
        if len(tif.pages) == 0:
            raise ValueError("no image in TIFF file")
        page = tif.pages[0]
        photometric = page.photometric
        if photometric not in (
            photometric_enum.MINISBLACK,
            photometric_enum.MINISWHITE,
            photometric_enum.RGB,
        ):
            # Palette, CMYK, YCbCr, CIELab...: Pillow converts these to RGB for us.
            raise ValueError(f"photometric {photometric!r} left to Pillow")
        arr = page.asarray()
        axes = page.axes
        bits = int(page.bitspersample)
        extrasamples = tuple(int(e) for e in (page.extrasamples or ()))
        orientation_tag = page.tags.get(274)
        icc_tag = page.tags.get(34675)
        orientation = int(orientation_tag.value) if orientation_tag is not None else None
        icc = _tag_bytes(icc_tag.value) if icc_tag is not None else None

    if axes == "SYX":
        arr = np.moveaxis(arr, 0, -1)
    elif axes not in ("YX", "YXS"):
        raise ValueError(f"unsupported TIFF axes {axes!r}")
    if arr.size == 0:
        raise ValueError(f"empty image of shape {arr.shape}")
    if arr.ndim == 2:
        arr = arr[:, :, None]

    # Keep colour (or gray) plus the first extra sample when it is an alpha channel
    # (1 = associated, 2 = unassociated); other extra samples have no meaning for us.
    n_colour = 3 if photometric == photometric_enum.RGB else 1
    if arr.shape[2] < n_colour:
        raise ValueError(f"RGB TIFF with {arr.shape[2]} samples per pixel")
    keep = n_colour + (1 if extrasamples and extrasamples[0] in (1, 2) else 0)
    arr = arr[:, :, : min(keep, arr.shape[2])]

    if arr.dtype == np.bool_ or bits == 1:
        arr = arr.astype(bool)
        if photometric == photometric_enum.MINISWHITE:
            arr = ~arr
        arr = arr.astype(np.uint8) * np.uint8(255)
    elif arr.dtype.kind == "f":
        if photometric == photometric_enum.MINISWHITE:
            arr = 1.0 - arr
        arr = _float_to_uint16(arr)
    elif arr.dtype.kind in "ui":
        if photometric == photometric_enum.MINISWHITE:
            arr = (2**bits - 1) - arr.astype(np.int64)
        if bits <= 16 and arr.min() >= 0:
            arr = _rescale(arr.astype(np.uint16 if bits > 8 else np.uint8), bits)
        else:
            arr = _int_to_uint16(arr)
    else:
        raise ValueError(f"unsupported TIFF sample type {arr.dtype}")
    return _apply_orientation(arr, orientation), icc


def _png_ihdr(path: Path) -> tuple[int, int] | None:
    """Return (bit depth, colour type) of a PNG file, or None if the header is not PNG."""
    with open(path, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _decode_with_rawmode(path: Path, rawmode: str | None) -> np.ndarray:
    with PILImage.open(path) as im:
        if rawmode is not None:
            # Pillow unfilters the PNG stream in C and then "unpacks" each row with ``rawmode``;
            # swapping the unpacker (same bits per pixel, so the same unfiltering) lets us pull
            # out the bytes Pillow's 8-bit RGB(A) modes would otherwise drop.
            im.tile = [
                t._replace(args=rawmode) if hasattr(t, "_replace") else (*t[:3], rawmode)
                for t in im.tile
            ]
        im.load()
        return np.array(im)


def _read_png16_colour(path: Path, colour_type: int) -> np.ndarray:
    """Decode a 16-bit gray+alpha (4), RGB (2) or RGBA (6) PNG to uint16.

    Pillow has no 16-bit RGB modes and decodes these files to 8 bits; see
    :func:`_decode_with_rawmode` for how the full 16 bits are recovered.
    """
    if colour_type == 4:
        # Pillow decodes 16-bit LA into an RGBA image; the plain "RGBA" unpacker copies the four
        # raw bytes (L high, L low, A high, A low) into R, G, B, A.
        raw = _decode_with_rawmode(path, "RGBA").astype(np.uint16)
        return np.stack([(raw[..., 0] << 8) | raw[..., 1], (raw[..., 2] << 8) | raw[..., 3]], -1)
    low_mode = "RGB;16L" if colour_type == 2 else "RGBA;16L"
    high = _decode_with_rawmode(path, None).astype(np.uint16)
    # Reading the big-endian samples as little-endian makes the unpacker keep the low bytes.
    low = _decode_with_rawmode(path, low_mode).astype(np.uint16)
    return (high << 8) | low


def _exif_orientation(im: PILImage.Image) -> int | None:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION_TAG)
    except Exception:  # malformed EXIF must not make the pixels unreadable
        return None
    return int(value) if value is not None else None


def _read_pillow(path: Path) -> tuple[np.ndarray, bytes | None]:
    ihdr = _png_ihdr(path)
    with PILImage.open(path) as im:
        icc = im.info.get("icc_profile") or None
        if im.format == "PNG" and ihdr is not None and ihdr[0] == 16 and ihdr[1] in (2, 4, 6):
            orientation = _exif_orientation(im)
            im.close()
            return _apply_orientation(_read_png16_colour(path, ihdr[1]), orientation), icc
        im.load()
        try:
            upright = ImageOps.exif_transpose(im)
        except Exception as exc:  # corrupt EXIF: keep the pixels, say why orientation is lost
            warnings.warn(f"{path}: ignoring unreadable EXIF orientation ({exc})", stacklevel=3)
            upright = im
        arr, keep_icc = _pil_to_array(upright)
    return arr, icc if keep_icc else None


def _pil_to_array(im: PILImage.Image) -> tuple[np.ndarray, bool]:
    """Convert a Pillow image to a uint8/uint16 array; also say whether its ICC profile applies."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.array(im), True
    if mode == "1":
        return np.array(im.convert("L")), True
    if mode in ("P", "PA"):
        palette_alpha = im.palette is not None and im.palette.mode == "RGBA"
        alpha = mode == "PA" or "transparency" in im.info or palette_alpha
        return np.array(im.convert("RGBA" if alpha else "RGB")), True
    if mode == "La":
        return np.array(im.convert("LA")), True
    if mode == "RGBa":
        return np.array(im.convert("RGBA")), True
    if mode in ("RGBX", "YCbCr", "HSV"):
        return np.array(im.convert("RGB")), True
    if mode == "CMYK":
        # The ICC profile of a CMYK file describes CMYK values, not the RGB we return.
        return np.array(im.convert("RGB")), False
    if mode.startswith("I;16"):
        return np.array(im).astype(np.uint16), True
    if mode == "I":
        return _int_to_uint16(np.array(im)), True
    if mode == "F":
        return _float_to_uint16(np.array(im)), True
    try:
        return np.array(im.convert("RGB")), False
    except Exception as exc:
        raise ValueError(f"unsupported Pillow image mode {mode!r}") from exc


# --------------------------------------------------------------------------------------------
# Writing


def write_image(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    *,
    icc_profile: bytes | None = None,
    overwrite: bool = False,
    quality: int = 95,
) -> Path:
    """Write a pixel array to an image file, choosing the format from the extension.

    The file is written atomically: to a temporary file in the same folder that is then moved
    onto ``path`` (and removed if anything fails). Missing parent folders are created.

    Format notes:

    * PNG and TIFF keep 16-bit data; JPEG, WebP and BMP are 8-bit, so ``uint16`` pixels are
      rounded to 8 bits (``round(v / 257)``).
    * JPEG has no alpha: the alpha channel is dropped with a warning. ``quality >= 90`` also
      turns chroma subsampling off (4:4:4), which matters for denoising outputs.
    * WebP is lossless when ``quality == 100``.
    * BMP cannot carry an ICC profile; it is silently not written.
    * TIFF is written with zlib (deflate) compression.

    Args:
        path: Destination; extension one of :data:`IMAGE_EXTENSIONS`.
        pixels: ``H x W``, ``H x W x 1`` or ``H x W x C`` (``C`` in 2, 3, 4) uint8/uint16 array.
        icc_profile: ICC profile to embed, e.g. ``Image.icc_profile`` of the input.
        overwrite: Replace an existing file; otherwise raise :class:`FileExistsError`.
        quality: JPEG / WebP quality, 1-100.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: unsupported extension, pixel shape or quality.
        TypeError: pixels are not uint8/uint16 (use :func:`from_float` first).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported image extension {ext!r} "
            f"(supported: {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    pixels = _check_pixels(pixels)
    if pixels.dtype == np.uint16 and ext not in _SIXTEEN_BIT_EXTENSIONS:
        pixels = _uint16_to_uint8(pixels)
    if ext in (".jpg", ".jpeg") and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        warnings.warn(f"{path}: JPEG has no alpha channel; dropping it", stacklevel=2)
        pixels = drop_alpha(pixels)

    with atomic_write(path, overwrite=overwrite) as f:
        if ext in _TIFF_EXTENSIONS:
            _write_tiff(f, pixels, icc_profile)
        elif ext == ".png" and pixels.dtype == np.uint16:
            f.write(encode_png16(pixels, icc_profile=icc_profile))
        else:
            _write_pillow(f, pixels, ext, icc_profile, int(quality))
    return path


def _check_pixels(pixels: np.ndarray) -> np.ndarray:
    if not isinstance(pixels, np.ndarray):
        raise TypeError(f"pixels must be a numpy array, got {type(pixels).__name__}")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise TypeError(
            f"pixels must be uint8 or uint16, got {pixels.dtype} (convert floats with from_float)"
        )
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (2, 3, 4)):
        raise ValueError(
            f"pixels must be H x W or H x W x C with C in 1..4, got shape {pixels.shape}"
        )
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"cannot write an empty image of shape {pixels.shape}")
    return np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("="))


def _uint16_to_uint8(pixels: np.ndarray) -> np.ndarray:
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _write_tiff(f, pixels: np.ndarray, icc_profile: bytes | None) -> None:
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    kwargs: dict = {
        "photometric": "rgb" if channels >= 3 else "minisblack",
        "compression": "zlib",
    }
    if pixels.ndim == 3:
        # Without planarconfig tifffile would read a trailing axis of 2 as image width.
        kwargs["planarconfig"] = "contig"
    if channels in (2, 4):
        kwargs["extrasamples"] = ["unassalpha"]
    if icc_profile:
        kwargs["iccprofile"] = icc_profile
    tifffile.imwrite(f, pixels, **kwargs)


def _write_pillow(f, pixels: np.ndarray, ext: str, icc: bytes | None, quality: int) -> None:
    im = PILImage.fromarray(pixels)
    params: dict = {}
    if icc and ext != ".bmp":
        params["icc_profile"] = icc
    if ext == ".png":
        fmt = "PNG"
    elif ext in (".jpg", ".jpeg"):
        fmt = "JPEG"
        params.update(quality=quality, optimize=True, subsampling=0 if quality >= 90 else 2)
    elif ext == ".webp":
        fmt = "WEBP"
        if im.mode == "LA":
            im = im.convert("RGBA")
        params.update(quality=quality, lossless=quality >= 100, method=4)
    else:
        fmt = "BMP"
        if im.mode == "LA":
            im = im.convert("RGBA")
    im.save(f, format=fmt, **params)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _filter_png_rows(raw: np.ndarray, bpp: int) -> np.ndarray:
    """Filter PNG scanlines, choosing per row the filter with the smallest sum of |residual|.

    ``raw`` is ``rows x row_bytes`` uint8 (already including the row above as its first row
    when ``rows`` is a chunk of a larger image); returns ``rows x (1 + row_bytes)`` with the
    filter type byte first. This is the heuristic libpng uses by default.
    """
    x = raw.astype(np.int16)
    up = np.zeros_like(x)
    up[1:] = x[:-1]
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    upleft = np.zeros_like(x)
    upleft[1:, bpp:] = x[:-1, :-bpp]
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    predictions = (np.zeros_like(x), left, up, (left + up) // 2, paeth)
    residuals = np.stack([(x - pred) & 0xFF for pred in predictions])  # 5 x rows x row_bytes
    cost = np.minimum(residuals, 256 - residuals).sum(axis=2, dtype=np.int64)
    choice = np.argmin(cost, axis=0)
    rows = np.arange(x.shape[0])
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = choice
    out[:, 1:] = residuals[choice, rows]
    return out


def encode_png16(pixels: np.ndarray, *, icc_profile: bytes | None = None, level: int = 6) -> bytes:
    """Encode a uint16 ``H x W [x C]`` array (``C`` in 1..4) as a 16-bit PNG file.

    Pillow cannot write 16-bit RGB(A) or gray+alpha PNGs, so this small encoder does it.
    """
    pixels = _check_pixels(pixels).astype(np.uint16)
    h, w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    raw = pixels.astype(">u2").reshape(h, w * channels).view(np.uint8)
    bpp = 2 * channels
    compressor = zlib.compressobj(level)
    parts = []
    # Rows are filtered in blocks to bound memory; each block gets the previous row as context.
    block = max(1, (1 << 22) // max(1, raw.shape[1]))
    for start in range(0, h, block):
        lo = max(0, start - 1)
        filtered = _filter_png_rows(raw[lo : start + block], bpp)
        parts.append(compressor.compress(filtered[start - lo :].tobytes()))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    chunks = [_PNG_SIGNATURE, _png_chunk(b"IHDR", header)]
    if icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile)))
    chunks.append(_png_chunk(b"IDAT", b"".join(parts)))
    chunks.append(_png_chunk(b"IEND", b""))
    return b"".join(chunks)


# --------------------------------------------------------------------------------------------
# Pixel conversions


def to_float(pixels: np.ndarray) -> np.ndarray:
    """Convert pixels to float32 in ``[0, 1]`` (uint8 / 255, uint16 / 65535), same shape.

    Float input is returned as float32 without rescaling; bool maps to 0 and 1.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(255)
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / np.float32(65535)
    if pixels.dtype.kind == "f":
        return pixels.astype(np.float32, copy=False)
    if pixels.dtype == np.bool_:
        return pixels.astype(np.float32)
    raise TypeError(f"to_float expects uint8, uint16 or float pixels, got {pixels.dtype}")


def from_float(arr: np.ndarray, dtype: npt.DTypeLike = np.uint8) -> np.ndarray:
    """Convert floats in ``[0, 1]`` to uint8/uint16: clip, scale, round half to even, cast.

    NaN becomes 0. The shape is unchanged.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.uint8, np.uint16):
        raise TypeError(f"from_float converts to uint8 or uint16, not {dtype}")
    top = float(np.iinfo(dtype).max)
    scaled = np.nan_to_num(np.asarray(arr, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 1.0) * top).astype(dtype)


def drop_alpha(pixels: np.ndarray) -> np.ndarray:
    """Remove the alpha channel: ``H x W x 2`` -> ``H x W``, ``H x W x 4`` -> ``H x W x 3``."""
    if pixels.ndim == 3 and pixels.shape[2] == 2:
        return pixels[:, :, 0]
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        return pixels[:, :, :3]
    return pixels


def rgb_to_gray(pixels: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luminance ``0.299 R + 0.587 G + 0.114 B``, rounded, in the input dtype.

    Args:
        pixels: ``H x W`` (returned as is), ``H x W x C`` with ``C`` in 1..4; alpha is ignored.

    Returns:
        ``H x W`` array with the dtype of ``pixels``.
    """
    pixels = drop_alpha(pixels)
    if pixels.ndim == 2:
        return pixels
    if pixels.shape[2] == 1:
        return pixels[:, :, 0]
    luma = pixels.astype(np.float64) @ _BT601
    if pixels.dtype.kind == "f":
        return luma.astype(pixels.dtype)
    top = np.iinfo(pixels.dtype).max
    return np.clip(np.rint(luma), 0, top).astype(pixels.dtype)


def convert_channels(pixels: np.ndarray, *, gray: bool) -> np.ndarray:
    """Drop alpha and convert to ``H x W x 1`` (``gray=True``, BT.601) or ``H x W x 3``.

    Gray input is replicated to three channels when ``gray`` is False.
    """
    pixels = drop_alpha(pixels)
    if gray:
        return rgb_to_gray(pixels)[:, :, None]
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    return pixels


# --------------------------------------------------------------------------------------------
# Finding image files


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` has an image extension (case-insensitive) and is not a hidden file.

    Hidden names (leading dot) are excluded because they are temporary files of
    :func:`write_image` or macOS resource forks (``._name.png``), not images.
    """
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _has_glob_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _has_glob_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _images_in_folder(folder: Path, root: Path, recursive: bool) -> list[tuple[Path, Path]]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = []
    for p in candidates:
        rel = p.relative_to(root)
        if is_image_file(p) and not _is_hidden(p.relative_to(folder)) and p.is_file():
            found.append((p, rel))
    return found


def list_images(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], recursive: bool = False
) -> list[tuple[Path, Path]]:
    """Expand files, folders and glob patterns into ``(file, relative path)`` pairs.

    * A file is returned with its name as relative path.
    * A folder yields its image files (:func:`is_image_file`), relative to the folder;
      subfolders are searched when ``recursive`` is True. Hidden files and folders are skipped.
    * A glob pattern (``*``, ``?``, ``[``) yields matching image files and the images of
      matching folders, relative to the pattern's fixed leading folders (``data/*/x*.png`` ->
      relative to ``data``); ``**`` spans folders when ``recursive`` is True.

    Each argument's pairs are sorted by relative path; arguments keep their order and a file
    reached twice is listed once.

    Args:
        paths: Files, folders or patterns (a single one is accepted too).
        recursive: Search subfolders of folders, and let ``**`` match across folders.

    Returns:
        List of ``(file path, path relative to its root)``.

    Raises:
        FileNotFoundError: a path does not exist, or a pattern matches nothing.
        ValueError: a folder (or a pattern) holds no image file, or a file given explicitly
            does not have an image extension.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    result: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for item in paths:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            found = _images_in_folder(path, path, recursive)
            if not found:
                hint = ""
                if not recursive and any(p.is_dir() for p in path.iterdir()):
                    hint = " (it has subfolders: use recursive=True to search them)"
                raise ValueError(f"{path}: folder holds no image file{hint}")
        elif path.is_file():
            if not is_image_file(path):
                raise ValueError(
                    f"{path}: not an image file (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
                )
            found = [(path, Path(path.name))]
        elif _has_glob_magic(text):
            root = _glob_root(text)
            matches = sorted(glob.glob(text, recursive=recursive))
            if not matches:
                raise FileNotFoundError(errno.ENOENT, "no file matches the pattern", text)
            found = []
            for m in map(Path, matches):
                if m.is_dir():
                    found.extend(_images_in_folder(m, root, recursive))
                elif is_image_file(m) and m.is_file():
                    found.append((m, m.relative_to(root)))
            if not found:
                raise ValueError(f"{text}: pattern matches no image file")
        else:
            raise FileNotFoundError(errno.ENOENT, "no such file or folder", text)
        found.sort(key=lambda pair: pair[1].as_posix())
        for file, rel in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                result.append((file, rel))
    return result
