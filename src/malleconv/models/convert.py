"""Turning a colour MalleNet into a grayscale one (a warm start for gray training)."""

from __future__ import annotations

import torch
from torch import nn

from .mallenet import MalleNet, MalleNetConfig

__all__ = ["gray_from_color"]


@torch.no_grad()
def gray_from_color(model: MalleNet) -> MalleNet:
    """A one-channel MalleNet equal to ``model`` run on a gray image replicated to RGB.

    For a gray ``y`` of shape ``(B, 1, H, W)``, ``gray_from_color(m)(y, s)`` equals
    ``m(y.expand(-1, 3, -1, -1), s).mean(1, keepdim=True)`` up to rounding:

    * each level's head conv sees ``pixel_unshuffle``-d input, whose channels are ordered
      ``channel * 4**level + sub_pixel``; the R, G and B weights of every sub-pixel are
      summed into the gray weight (the input is the same in all three), and the
      noise-map weights are kept;
    * the last conv's three noise outputs are averaged into one.

    The colour model was trained on noise independent across channels, so the converted
    model is a starting point for training on gray data, not a finished gray model.
    """
    if not isinstance(model, MalleNet) or model.config.in_channels != 3:
        raise ValueError("gray_from_color needs a 3-channel MalleNet")
    cfg = MalleNetConfig(**{**model.config.to_dict(), "in_channels": 1})
    gray = MalleNet(cfg).to(next(model.parameters()).device)
    state = model.state_dict()
    extra = 1 if cfg.noise_map else 0
    for lvl, head in enumerate(model.heads):
        sub = 4**lvl
        w = head.weight.reshape(head.out_channels, 3 + extra, sub, *head.kernel_size)
        w = torch.cat([w[:, :3].sum(1, keepdim=True), w[:, 3:]], dim=1)
        state[f"heads.{lvl}.weight"] = w.reshape(
            head.out_channels, (1 + extra) * sub, *head.kernel_size
        )
    last: nn.Conv2d = model.tail[-1]
    tail_index = len(model.tail) - 1
    state[f"tail.{tail_index}.weight"] = last.weight.mean(0, keepdim=True)
    state[f"tail.{tail_index}.bias"] = last.bias.mean(0, keepdim=True)
    gray.load_state_dict(state)
    gray.eval()
    return gray
