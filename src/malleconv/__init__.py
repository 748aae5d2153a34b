"""malleconv: fast, high-quality image denoising with Malleable Convolution.

Public API::

    slice_conv, slice_conv_reference     # the slice-and-conv operator
    MalleConv2d, PerPixelConv2d          # layers
"""

from .layers import MalleConv2d, PerPixelConv2d
from .ops import slice_conv, slice_conv_reference

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "slice_conv",
    "slice_conv_reference",
    "MalleConv2d",
    "PerPixelConv2d",
]
