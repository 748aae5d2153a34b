"""Image file input/output.

Submodules, one job each: :mod:`~malleconv.io.read` (decoding), :mod:`~malleconv.io.write`
(encoding), :mod:`~malleconv.io.atomic` (atomic file writes), :mod:`~malleconv.io.pixels`
(pixel conversions), :mod:`~malleconv.io.discovery` (finding image files) and
:mod:`~malleconv.io.formats` (supported extensions). Everything public is re-exported here.
"""

from malleconv.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from malleconv.io.discovery import is_image_file, list_images
from malleconv.io.formats import IMAGE_EXTENSIONS
from malleconv.io.pixels import convert_channels, drop_alpha, from_float, rgb_to_gray, to_float
from malleconv.io.read import Image, ImageReadError, read_image
from malleconv.io.write import encode_png16, write_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "Image",
    "ImageReadError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
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
