"""Low-level operators (functional, no parameters)."""

from .slice_conv import check_slice_conv_args, slice_conv, slice_conv_reference
from .slice_conv_export import (
    EXPORT_TARGETS,
    export_mode,
    export_target,
    gather_pad_to_multiple,
    in_export_mode,
    standard_slice_conv,
)

__all__ = [
    "slice_conv",
    "slice_conv_reference",
    "check_slice_conv_args",
    "EXPORT_TARGETS",
    "export_mode",
    "export_target",
    "gather_pad_to_multiple",
    "in_export_mode",
    "standard_slice_conv",
]
