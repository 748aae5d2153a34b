"""malleconv: fast, high-quality image denoising with Malleable Convolution.

Public API::

    slice_conv, slice_conv_reference     # the slice-and-conv operator
    MalleConv2d, PerPixelConv2d          # layers
    denoise, estimate_sigma              # denoise arrays / tensors, estimate the noise level
    load_model, create_model             # models by name or weights file
    runtime                              # process-wide settings (the allocator)
    export_onnx                          # a model as an ONNX graph (the [onnx] extra)
"""

from . import runtime
from .inference import denoise, estimate_sigma
from .layers import MalleConv2d, PerPixelConv2d
from .models import create_model, load_model
from .models.export import export_onnx
from .ops import slice_conv, slice_conv_reference

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "slice_conv",
    "slice_conv_reference",
    "MalleConv2d",
    "PerPixelConv2d",
    "denoise",
    "estimate_sigma",
    "load_model",
    "create_model",
    "export_onnx",
    "runtime",
]
