"""Image file input/output: reading, atomic writing, pixel conversions and file discovery."""

from malleconv.io.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from malleconv.io.images import (
    IMAGE_EXTENSIONS,
    Image,
    ImageReadError,
    convert_channels,
    drop_alpha,
    encode_png16,
    from_float,
    is_image_file,
    list_images,
    read_image,
    rgb_to_gray,
    to_float,
    write_image,
)

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
