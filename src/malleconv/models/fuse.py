"""Inference-time graph simplification: fold BatchNorm into the preceding convolution."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fuse_batchnorm"]


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``Conv2d -> BatchNorm2d`` pair of an ``nn.Sequential`` into one conv.

    Eval-mode BatchNorm is an affine map per channel, so it can be absorbed into the
    conv's weight and bias: same outputs (to rounding), one memory pass less per layer.
    The model is put in eval mode and modified in place; returns it.
    """
    model.eval()
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                module._modules[b] = nn.Identity()
    return model
