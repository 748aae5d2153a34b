"""Encoding pixel arrays into image files, written atomically.

The format follows the file extension (:data:`~malleconv.io.formats.IMAGE_EXTENSIONS`). PNG and
TIFF keep 16-bit samples; 16-bit PNG is encoded with pypng, since Pillow cannot write 16-bit
RGB, RGBA or gray + alpha PNG. Everything else is encoded with Pillow, TIFF with tifffile.
"""

from __future__ import annotations

import io
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import png
import tifffile
from PIL import Image as PILImage

from malleconv.io.atomic import atomic_write
from malleconv.io.formats import IMAGE_EXTENSIONS, SIXTEEN_BIT_EXTENSIONS, TIFF_EXTENSIONS
from malleconv.io.pixels import drop_alpha

__all__ = ["encode_png16", "write_image"]


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
    * BMP cannot carry an ICC profile; it is silently not written. Nor, as Pillow writes it,
      an alpha channel that readers honour: it is dropped with a warning, as for JPEG.
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
        TypeError: pixels are not uint8/uint16 (use :func:`~malleconv.io.pixels.from_float` first).
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
    if pixels.dtype == np.uint16 and ext not in SIXTEEN_BIT_EXTENSIONS:
        pixels = _uint16_to_uint8(pixels)
    if ext in (".jpg", ".jpeg", ".bmp") and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        # Pillow writes RGBA BMP as 32-bit BI_RGB, whose fourth byte readers ignore.
        fmt = "JPEG" if ext != ".bmp" else "BMP"
        warnings.warn(f"{path}: {fmt} keeps no alpha channel; dropping it", stacklevel=2)
        pixels = drop_alpha(pixels)

    with atomic_write(path, overwrite=overwrite) as f:
        if ext in TIFF_EXTENSIONS:
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
    im.save(f, format=fmt, **params)


def encode_png16(pixels: np.ndarray, *, icc_profile: bytes | None = None, level: int = 6) -> bytes:
    """Encode an array as a 16-bit PNG file (gray, gray + alpha, RGB or RGBA).

    Rows are stored unfiltered, as pypng writes them: the samples are exact, but smooth images
    take about a third more bytes than with adaptive row filters (figures in docs/design.md).

    Args:
        pixels: ``H x W``, ``H x W x 1`` or ``H x W x C`` (``C`` in 2, 3, 4) uint16 array;
            uint8 values are stored as they are, not rescaled.
        icc_profile: ICC profile to embed in an iCCP chunk, or None.
        level: zlib compression level, 0-9.

    Returns:
        The bytes of the PNG file.
    """
    pixels = _check_pixels(pixels).astype(np.uint16)
    h, w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    # pypng takes rows already packed; big-endian 16-bit samples are PNG's own layout.
    rows = pixels.astype(">u2").reshape(h, w * channels).view(np.uint8)
    writer = png.Writer(
        w, h, greyscale=channels < 3, alpha=channels in (2, 4), bitdepth=16, compression=level
    )
    buf = io.BytesIO()
    writer.write_packed(buf, rows)
    if not icc_profile:
        return buf.getvalue()
    # pypng's writer has no ICC option. iCCP must precede IDAT; right after IHDR is where
    # Pillow and libpng put it. Its data: profile name, NUL, compression method 0, zlib stream.
    chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
    chunks.insert(1, (b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile)))
    out = io.BytesIO()
    png.write_chunks(out, chunks)
    return out.getvalue()
