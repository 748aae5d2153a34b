"""Low-level operators (functional, no parameters)."""

from .slice_conv import check_slice_conv_args, slice_conv, slice_conv_reference
from .slice_conv_export import (
    export_mode,
    gather_pad_to_multiple,
    in_export_mode,
    standard_slice_conv,
)

__all__ = [
    "slice_conv",
    "slice_conv_reference",
    "check_slice_conv_args",
    "export_mode",
    "gather_pad_to_multiple",
    "in_export_mode",
    "standard_slice_conv",
]
