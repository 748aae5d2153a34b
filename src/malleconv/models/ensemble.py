"""Geometric self-ensemble: average a denoiser over the 8 flips and rotations of its input."""

from __future__ import annotations

import torch
from torch import nn

from .wrapper import DenoiserWrapper

__all__ = ["SelfEnsemble"]


# Which dihedral elements (see _transform) each ensemble size uses; 2 and 4 keep H and W
# (mirror, 180-degree turn) so every run sees the same shape.
_TRANSFORM_SETS = {1: (0,), 2: (0, 4), 4: (0, 2, 4, 6), 8: tuple(range(8))}


def _transform(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` (0..7) of the dihedral group on the last two dims of ``x``."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


def _inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, -(k % 4), dims=(-2, -1))


class SelfEnsemble(DenoiserWrapper):
    """``model`` averaged over the 8 rotations / mirror images of the input ("x8").

    ``forward(noisy, sigma)`` takes what ``model`` takes: noisy ``(B, C, H, W)`` and sigma as
    a float, a ``(B,)`` tensor or a ``(B, 1, H, W)`` map (transformed along with the image).
    Returns ``(B, C, H, W)``. Costs ``transforms`` model runs; Gaussian noise is invariant
    under these transforms, so each run is an equally good estimate and their errors are
    partly independent, which raises PSNR a little (measured in docs/models.md).

    Attribute access falls through to the wrapped model (``config``, ``model_name``), so
    code that inspects a model's channels keeps working.
    """

    def __init__(self, model: nn.Module, transforms: int = 8):
        if transforms not in _TRANSFORM_SETS:
            raise ValueError(f"transforms must be 1, 2, 4 or 8, got {transforms}")
        super().__init__(model)
        self.transforms = transforms

    def forward(self, noisy: torch.Tensor, sigma=None) -> torch.Tensor:
        ks = _TRANSFORM_SETS[self.transforms]
        channels_last = noisy.is_contiguous(memory_format=torch.channels_last)
        total = None
        for k in ks:
            x = _transform(noisy, k)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            s = sigma
            if torch.is_tensor(sigma) and sigma.dim() == 4:
                s = _transform(sigma, k)
            y = _inverse(self.model(x, s), k)
            total = y if total is None else total.add_(y)
        return total.div_(len(ks))
