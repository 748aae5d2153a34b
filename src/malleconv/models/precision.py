"""Reduced-precision inference: run a float32 denoiser under bfloat16 autocast."""

from __future__ import annotations

import torch
from torch import nn

from .wrapper import DenoiserWrapper

__all__ = ["PRECISIONS", "Autocast", "check_precision", "native_bf16"]

# Names accepted by ``denoise(precision=...)``, ``--precision`` and :func:`check_precision`.
PRECISIONS = ("float32", "bfloat16")


def check_precision(precision: str) -> str:
    """Validate a precision name; returns it. ``ValueError`` names the accepted values."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether bfloat16 convolutions are fast on ``device``.

    On a CPU that means hardware bfloat16 (AVX-512 BF16 or AMX), as oneDNN reports it;
    elsewhere oneDNN emulates it and bfloat16 can be slower than float32. On CUDA, the
    device's own report.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private oneDNN query: absent in some builds
        return False


class Autocast(DenoiserWrapper):
    """``model`` run under :func:`torch.autocast` with ``dtype`` (bfloat16 by default).

    ``forward(noisy, sigma)`` takes what ``model`` takes (noisy ``(B, C, H, W)`` float32)
    and returns ``(B, C, H, W)`` in the dtype of ``noisy``. The weights stay float32:
    autocast runs convolutions in bfloat16 and casts each weight once per call, which keeps
    more precision than a bfloat16 copy of the model (measured in docs/models.md, where the
    cost in PSNR and the speed gain are given). Parameters and attributes (``config``,
    ``model_name``) are the wrapped model's, so inference code that asks a model for its
    device, dtype or channels keeps working.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16):
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.bfloat16 or torch.float16, got {dtype}")
        super().__init__(model)
        self.autocast_dtype = dtype

    def forward(self, noisy: torch.Tensor, sigma=None) -> torch.Tensor:
        with torch.autocast(noisy.device.type, dtype=self.autocast_dtype):
            out = self.model(noisy, sigma)
        return out.to(noisy.dtype)
