"""Image file formats, by file extension: which ones are images, which keep 16 bits."""

from __future__ import annotations

__all__ = ["IMAGE_EXTENSIONS", "SIXTEEN_BIT_EXTENSIONS", "TIFF_EXTENSIONS"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
)
"""Lower-case file extensions (with the dot) of the formats read and written: PNG, JPEG, TIFF,
BMP and WebP."""

TIFF_EXTENSIONS: frozenset[str] = frozenset({".tif", ".tiff"})
"""Extensions decoded and encoded with tifffile rather than Pillow."""

SIXTEEN_BIT_EXTENSIONS: frozenset[str] = frozenset({".png", ".tif", ".tiff"})
"""Extensions whose files keep 16-bit samples; the other formats are 8-bit."""
