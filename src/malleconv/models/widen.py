"""Growing a trained MalleNet into a wider one that computes the same function.

A warm start for a wider model (Net2Net-style, Chen et al. 2016, in its simplest form):
the wider model keeps every trained weight, its new channels get the wider model's own
random initialisation, and every weight from a new channel into an old one is zero. The
old channels therefore see exactly what they saw before, the output is unchanged, and
training can then put the new channels to use (the zeroed weights get gradients).
"""

from __future__ import annotations

import torch

from ..layers.malleconv import MalleConv2d
from .mallenet import MalleNet

__all__ = ["widen_mallenet"]


def _first(n_old: int) -> torch.Tensor:
    return torch.arange(n_old)


def _grid_rows(old: MalleConv2d, new: MalleConv2d) -> torch.Tensor:
    """Where ``old.to_grid``'s output rows sit in ``new.to_grid``.

    Its rows are ``(kernel_numel + out_channels) * grid_depth`` laid out as
    ``[kernels of channel 0, 1, ... | biases of channel 0, 1, ...] x depth``, so a wider
    layer moves the bias rows (and, when guided, every depth plane) further down.
    """
    params = torch.cat(
        [torch.arange(old.kernel_numel), new.kernel_numel + torch.arange(old.out_channels)]
    )
    gd = old.grid_depth
    # coeffs.view(b, P, gd, ...): row index = p * gd + d.
    return (params[:, None] * gd + torch.arange(gd)[None, :]).reshape(-1)


@torch.no_grad()
def widen_mallenet(small: MalleNet, wide: MalleNet) -> MalleNet:
    """Copy ``small``'s weights into ``wide`` (in place) so that both compute the same.

    ``wide`` must be a freshly initialised :class:`MalleNet` whose configuration equals
    ``small``'s except for ``widths``, each at least as large. After the call,
    ``wide(x, s)`` equals ``small(x, s)`` in eval mode up to rounding (and in train mode
    too: BatchNorm statistics of the old channels are those of the small model).
    Returns ``wide``.
    """
    if not isinstance(small, MalleNet) or not isinstance(wide, MalleNet):
        raise ValueError("widen_mallenet needs two MalleNet models")
    a, b = small.config.to_dict(), wide.config.to_dict()
    wa, wb = a.pop("widths"), b.pop("widths")
    if a != b:
        diff = sorted(k for k in a if a[k] != b[k])
        raise ValueError(f"the models differ in more than widths: {', '.join(diff)}")
    if len(wa) != len(wb) or any(x > y for x, y in zip(wa, wb)):
        raise ValueError(f"widths {tuple(wb)} must be at least {tuple(wa)}, level by level")

    # Index maps for the dimensions that do not simply keep old channels first.
    special: dict[tuple[str, int], torch.Tensor] = {}
    for lvl in range(len(wa) - 1):
        # fuse[lvl] reads cat([upsampled level lvl + 1, level lvl]).
        special[(f"fuse.{lvl}.weight", 1)] = torch.cat(
            [_first(wa[lvl + 1]), wb[lvl + 1] + _first(wa[lvl])]
        )
    new_modules = dict(wide.named_modules())
    for name, mod in small.named_modules():
        if isinstance(mod, MalleConv2d):
            rows = _grid_rows(mod, new_modules[name])
            special[(f"{name}.to_grid.weight", 0)] = rows
            special[(f"{name}.to_grid.bias", 0)] = rows

    dst = wide.state_dict()
    for key, src in small.state_dict().items():
        out = dst[key]
        if src.shape == out.shape and not any((key, d) in special for d in range(src.dim())):
            out.copy_(src)
            continue
        maps = [special.get((key, d), _first(n)) for d, n in enumerate(src.shape)]
        if src.dim() >= 2 and src.shape[1] != out.shape[1]:
            # A new input channel must not reach an old output channel.
            new_in = torch.ones(out.shape[1], dtype=torch.bool)
            new_in[maps[1]] = False
            rows = out.index_select(0, maps[0])
            rows[:, new_in] = 0
            out.index_copy_(0, maps[0], rows)
        out[torch.meshgrid(*maps, indexing="ij")] = src.to(out.dtype)
    wide.load_state_dict(dst)
    return wide
