"""Low-level operators (functional, no parameters)."""

from .slice_conv import check_slice_conv_args, slice_conv, slice_conv_reference

__all__ = ["slice_conv", "slice_conv_reference", "check_slice_conv_args"]
