"""Decoding image files into numpy arrays.

Handles 8- and 16-bit PNG and TIFF (16 bits are kept), JPEG, BMP, WebP and whatever else Pillow
decodes; EXIF / TIFF orientation, embedded ICC profiles, alpha channels, palette, bilevel, CMYK
and integer / float modes. Pixels come back as ``H x W`` (gray) or ``H x W x C`` with ``C`` in
``{2, 3, 4}`` (gray + alpha, RGB, RGBA), dtype ``uint8`` or ``uint16``.
"""

from __future__ import annotations

import errno
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image as PILImage
from PIL import ImageOps

from malleconv.io.formats import TIFF_EXTENSIONS
from malleconv.io.pixels import from_float

__all__ = ["Image", "ImageReadError", "read_image"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_ORIENTATION_TAG = 0x0112


class _PixelValueError(ValueError):
    """The file decodes, but its values cannot be read as an image's (no other decoder will
    do better): reported as it is, without trying Pillow after tifffile."""


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


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read an image file into an :class:`Image`.

    EXIF (or TIFF) orientation is applied, so ``pixels`` is upright. Palette images become RGB
    (RGBA when they carry transparency), a PNG colour key (tRNS on gray or RGB) becomes an
    alpha channel, 1-bit images become 8-bit gray, CMYK becomes RGB (the CMYK ICC profile is
    then dropped), 16-bit PNG and TIFF stay 16-bit. TIFF files are decoded with tifffile,
    falling back to Pillow for what tifffile cannot decode (e.g. JPEG-compressed TIFF without
    imagecodecs). Float TIFFs must hold values in ``[0, 1]`` (within one 8-bit step, then
    clipped) and are converted to ``uint16``. Of a file with several frames or pages
    (animations, multi-page TIFF) the first is read, with a warning.

    Args:
        path: Image file (PNG, JPEG, TIFF, BMP, WebP, or anything else Pillow decodes).

    Returns:
        The image; ``pixels`` is ``H x W`` or ``H x W x C`` (``C`` in 2, 3, 4), uint8 or uint16.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ImageReadError: the file cannot be decoded, or its float values lie outside
            ``[0, 1]``; the message names the file and the reason.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "image file not found", str(path))
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image file")

    tiff_error: Exception | None = None
    pixels: np.ndarray | None = None
    icc: bytes | None = None
    if path.suffix.lower() in TIFF_EXTENSIONS:
        try:
            pixels, icc = _read_tiff(path)
        except MemoryError:
            raise
        except _PixelValueError as exc:
            raise ImageReadError(f"{path}: {exc}") from exc
        except Exception as exc:  # tifffile raises many types on odd files; Pillow may cope
            tiff_error = exc
    if pixels is None:
        try:
            pixels, icc = _read_pillow(path)
        except MemoryError:
            raise
        except _PixelValueError as exc:
            raise ImageReadError(f"{path}: {exc}") from exc
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
        raise _PixelValueError(f"integer pixel values span {lo}..{hi}, outside 0..65535")
    return arr.astype(np.uint16)


# Float pixels may stray this far outside [0, 1] (the rounding of an editor's or a
# converter's arithmetic) and are clipped; beyond it the file holds another scale (0..255,
# HDR), which clipping would turn into a white or black image.
FLOAT_RANGE_SLACK = 1.0 / 255.0


def _float_to_uint16(arr: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise _PixelValueError("float image contains NaN or infinite values")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < -FLOAT_RANGE_SLACK or hi > 1.0 + FLOAT_RANGE_SLACK:
        raise _PixelValueError(
            f"float pixel values span {lo:.4g}..{hi:.4g}, but float images are read as "
            "0 (black) to 1 (white); rescale the file to 0..1, or save it as 8- or 16-bit"
        )
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
        # Reduced-resolution pages (previews, pyramid levels) are views of the first.
        _warn_frames(path, sum(1 for p in tif.pages if not getattr(p, "is_reduced", False)))
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
            key = im.info.get("transparency") if ihdr[1] == 2 else None
            im.close()
            pixels = _read_png16_colour(path, ihdr[1])
            if isinstance(key, tuple) and len(key) == 3:  # a 16-bit RGB colour key (tRNS)
                opaque = np.any(pixels != np.asarray(key, np.uint16), axis=-1)
                pixels = np.dstack([pixels, np.where(opaque, 65535, 0).astype(np.uint16)])
            return _apply_orientation(pixels, orientation), icc
        _warn_frames(path, getattr(im, "n_frames", 1))
        im.load()
        try:
            upright = ImageOps.exif_transpose(im)
        except Exception as exc:  # corrupt EXIF: keep the pixels, say why orientation is lost
            warnings.warn(f"{path}: ignoring unreadable EXIF orientation ({exc})", stacklevel=3)
            upright = im
        arr, keep_icc = _pil_to_array(upright)
    return arr, icc if keep_icc else None


def _warn_frames(path: Path, frames: int) -> None:
    if frames > 1:
        warnings.warn(
            f"{path}: holds {frames} frames or pages; only the first is read", stacklevel=4
        )


def _pil_to_array(im: PILImage.Image) -> tuple[np.ndarray, bool]:
    """Convert a Pillow image to a uint8/uint16 array; also say whether its ICC profile applies."""
    mode = im.mode
    if mode in ("L", "RGB") and "transparency" in im.info:
        # A PNG colour key (tRNS): pixels of that value are transparent; Pillow's
        # conversion turns the key into an alpha channel.
        return np.array(im.convert("LA" if mode == "L" else "RGBA")), True
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
        gray = np.array(im).astype(np.uint16)
        key = im.info.get("transparency")
        if isinstance(key, int):  # a 16-bit gray colour key, kept at 16 bits
            alpha = np.where(gray == key, 0, 65535).astype(np.uint16)
            return np.stack([gray, alpha], -1), True
        return gray, True
    if mode == "I":
        return _int_to_uint16(np.array(im)), True
    if mode == "F":
        return _float_to_uint16(np.array(im)), True
    try:
        return np.array(im.convert("RGB")), False
    except Exception as exc:
        raise ValueError(f"unsupported Pillow image mode {mode!r}") from exc
