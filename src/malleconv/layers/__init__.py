"""Neural-network layers (``nn.Module``)."""

from .blocks import InvertedBottleneck
from .malleconv import MalleConv2d, PerPixelConv2d

__all__ = ["MalleConv2d", "PerPixelConv2d", "InvertedBottleneck"]
