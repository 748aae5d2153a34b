"""Building blocks shared by the predictor networks and MalleNet."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..ops.slice_conv_export import export_target, in_export_mode

__all__ = ["InvertedBottleneck", "PReLU", "make_norm", "make_act"]


def _prelu_backward(grad: torch.Tensor, x: torch.Tensor, slope: torch.Tensor, dims: tuple):
    """PReLU's gradients: ``grad`` where ``x > 0`` else ``slope * grad``, and the slope's,
    the sum over ``dims`` of ``grad * x`` where ``x <= 0``. Shapes as ``x``; ``slope``
    broadcasts to it."""
    negative = x <= 0
    grad_x = torch.where(negative, grad * slope, grad)
    grad_w = torch.where(negative, grad * x, torch.zeros_like(x)).sum(dims)
    return grad_x, grad_w


# _prelu_backward compiled by torch.compile into one fused loop (and a reduction), built on
# first use; False once compiling failed (no C++ compiler, say) or when turned off by
# MALLECONV_COMPILED_PRELU=0, and the eager passes run instead.
_compiled_backward = None
# Each memory layout, reduction and coincidence of sizes (batch equal to channels, say) is a
# graph of its own; a network meets a dozen or so. Dynamo's default of 8 per function, hit with
# fullgraph=True, is a hard failure that would send the rest of the process to the eager passes.
_RECOMPILE_LIMIT = 64


def _fused_backward():
    global _compiled_backward
    if _compiled_backward is None:
        import os

        if os.environ.get("MALLECONV_COMPILED_PRELU", "1") == "0":
            _compiled_backward = False
        else:
            _compiled_backward = torch.compile(_prelu_backward, dynamic=True, fullgraph=True)
    return _compiled_backward


class _PReLUFunction(torch.autograd.Function):
    """PReLU with a per-channel slope: ATen's forward, and a faster backward.

    ATen's fused ``_prelu_kernel_backward`` is many times slower on channels-last CPU
    tensors than a few elementwise passes. On float32 CPU tensors the backward is
    :func:`_prelu_backward` compiled by ``torch.compile`` into one fused pass (the step-time
    gain: ``benchmarks/train_speed.py --eager-prelu-too``, docs/training.md); elsewhere, or
    where compiling fails, the eager passes: one ReLU mask (``threshold_backward``), a
    subtraction, an ``addcmul`` and a reduction. The two agree to float rounding (the
    slope's gradient sums in another order).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.prelu(x, weight)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        global _compiled_backward
        x, weight = ctx.saved_tensors
        slope = weight.view(1, -1, *([1] * (x.dim() - 2))) if weight.numel() > 1 else weight
        dims = tuple(d for d in range(x.dim()) if d != 1 or weight.numel() == 1)
        fused = _fused_backward()
        plain = x.device.type == "cpu" and x.dtype == grad.dtype == weight.dtype == torch.float32
        if fused and plain and all(ctx.needs_input_grad[:2]):
            # Raised for this call only, set and restored directly: config.patch costs about
            # 0.2 ms a call, and a training step makes one call per PReLU layer.
            config = torch._dynamo.config
            limit = config.recompile_limit
            config.recompile_limit = max(limit, _RECOMPILE_LIMIT)
            try:
                grad_x, grad_w = fused(grad, x, slope, dims)
                return grad_x, grad_w.view_as(weight)
            except Exception as err:  # noqa: BLE001 - any compiler failure: eager from now on
                import warnings

                warnings.warn(f"PReLU: the compiled backward failed ({err}); using eager "
                              "passes", RuntimeWarning, stacklevel=2)
                _compiled_backward = False
            finally:
                config.recompile_limit = limit
        grad_pos = torch.ops.aten.threshold_backward(grad, x, 0)  # grad where x > 0, else 0
        grad_neg = grad - grad_pos
        grad_x = torch.addcmul(grad_pos, grad_neg, slope) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = (grad_neg * x).sum(list(dims)).view_as(weight).to(weight.dtype)
        return grad_x, grad_w


def _prelu_as_max(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``prelu(x)`` as ``max(x, a x)`` (slopes ``a <= 1``) or ``min(x, a x)`` (``a >= 1``),
    for exported graphs.

    Why: ONNX Runtime's PRelu with per-channel slopes is about 3x slower than a Mul and a
    Max (docs/design.md, the ONNX export). Exact: each output is ``x`` or ``a x`` as
    computed by PRelu. Layers with slopes on both sides of 1 flip the sign of those above
    1, ``-max(-x, -a x) = min(x, a x)`` (multiplying by -1 is exact).
    """
    shape = (1, -1) + (1,) * (x.dim() - 2) if weight.numel() > 1 else (1,)
    a = weight.detach().view(shape)
    if bool((a <= 1).all()):
        return torch.maximum(x, x * a)
    if bool((a >= 1).all()):
        return torch.minimum(x, x * a)
    sign = torch.where(a <= 1, 1.0, -1.0).to(x.dtype)
    return sign * torch.maximum(x * sign, x * (a * sign))


def _prelu_as_convs(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``prelu(x)`` as ``x + relu((a - 1) x)`` (every slope ``a <= 1``: one 1x1 depthwise
    convolution with its ReLU fused, and an Add), else ``x + (1 - a) relu(-x)`` (two such
    convolutions, the Add fused into the second), for graphs run by ONNX Runtime's x86
    CPU provider.

    Why: that provider computes convolutions in a blocked channel layout (NCHWc) and
    converts back to plain NCHW around any operator it cannot run in it; Max and a
    broadcast Mul are such operators, so the Max/Mul form converts twice per activation.
    Depthwise 1x1 convolutions, their fused Relu and Add all stay blocked; one convolution
    and an Add take less time than two convolutions (docs/design.md, the ONNX export).
    Both forms give the same values, ``(a - 1) x`` being ``(1 - a) (-x)`` exactly; equal
    to PReLU to float rounding (``x + (a - 1) x`` for negative ``x``), not bit for bit.
    """
    c = int(x.shape[1])
    # Made in numpy, so that an exporter records constants, not operations (on the
    # parameter, on the traced channel count): a convolution's weight must have a
    # fixed shape in the graph.
    a = np.broadcast_to(weight.detach().cpu().float().numpy().reshape(-1, 1, 1, 1), (c, 1, 1, 1))
    if (a <= 1).all():
        # relu((a - 1) x) is (1 - a) relu(-x) only where 1 - a >= 0.
        a_minus_one = torch.from_numpy((a - 1.0).astype(np.float32)).to(x.dtype)
        return x + F.relu(F.conv2d(x, a_minus_one, groups=c))
    minus_one = torch.from_numpy(np.full((c, 1, 1, 1), -1.0, np.float32)).to(x.dtype)
    one_minus_a = torch.from_numpy((1.0 - a).astype(np.float32)).to(x.dtype)
    negative_part = F.relu(F.conv2d(x, minus_one, groups=c))
    return x + F.conv2d(negative_part, one_minus_a, groups=c)


class PReLU(nn.PReLU):
    """:class:`torch.nn.PReLU` (same parameter, same values) with a faster backward.

    ``(B, C, H, W) -> (B, C, H, W)``. PyTorch's CPU PReLU backward is a large share of a
    MalleNet training step (channels-last). With gradients enabled this runs
    :class:`_PReLUFunction`; the step-time gain is measured by
    ``benchmarks/train_speed.py --torch-prelu-too`` (docs/training.md). Without gradients
    it calls the fused ``F.prelu``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if in_export_mode():
            target = export_target()
            if target == "cpu":
                return _prelu_as_convs(x, self.weight)
            if target == "openvino":
                return _prelu_as_max(x, self.weight)
            if target == "web":
                # ONNX PRelu: one pass in onnxruntime-web's WebAssembly kernels, where the
                # two of Max and Mul cost more (docs/design.md, the ONNX export).
                return F.prelu(x, self.weight.detach())
            return F.prelu(x, self.weight)  # torch.jit.trace: TorchScript's own prelu
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return _PReLUFunction.apply(x, self.weight)
        return F.prelu(x, self.weight)


def make_norm(kind: str, channels: int) -> nn.Module:
    """``"batch"`` (as in the authors' code), ``"group"`` (one group) or ``"none"``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'group' or 'none', got {kind!r}")


def make_act(kind: str, channels: int) -> nn.Module:
    if kind == "prelu":
        return PReLU(channels)
    if kind == "gelu":
        return nn.GELU()
    if kind == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"act must be 'prelu', 'gelu' or 'relu', got {kind!r}")


class InvertedBottleneck(nn.Module):
    """MobileNetV2-style block: 1x1 expand, depthwise 3x3, 1x1 project, with a residual.

    ``(B, C, H, W) -> (B, C, H, W)``. Each conv is followed by a norm and an activation,
    as in the authors' MalleNet code.
    """

    def __init__(self, channels: int, expand: int = 5, norm: str = "batch", act: str = "prelu"):
        super().__init__()
        hidden = channels * expand
        bias = norm == "none"
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=bias),
            make_norm(norm, hidden),
            make_act(act, hidden),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=bias),
            make_norm(norm, hidden),
            make_act(act, hidden),
            nn.Conv2d(hidden, channels, 1, bias=bias),
            make_norm(norm, channels),
            make_act(act, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
