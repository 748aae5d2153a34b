"""Weight averaging: the EMA of a model's weights, and the BatchNorm statistics that go
with averaged weights."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EMA", "recalibrate_batchnorm"]


class EMA:
    """Exponential moving average of parameters and buffers (float32 copies in ``state``,
    keyed like the model's ``state_dict``; integer buffers are copied, not averaged)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        # Warm-up (as in timm's ModelEmaV3): early on the average must not be dominated
        # by the untrained initial weights.
        decay = self.decay if step is None else min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.state[k].lerp_(v.float(), 1 - decay)
            else:
                self.state[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model``.

        Averaged BatchNorm statistics do not match averaged weights (the scale symmetry
        of BatchNorm makes weight averaging and statistics averaging disagree), so
        callers should re-estimate them with :func:`recalibrate_batchnorm`.
        """
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in self.state.items()})


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches, device) -> None:
    """Re-estimate BatchNorm running statistics as a plain average over ``batches``.

    ``batches`` yields ``(clean, noisy, sigma, ...)`` like
    :class:`~malleconv.training.batches.StepBatches` (noisy ``(B, C, P, P)``, sigma ``(B,)``
    or ``(B, 1, P, P)``); the model is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for _, noisy, sigma, *_ in batches:
        model(noisy.to(device), sigma.to(device))
    for m, mom in zip(norms, saved):
        m.momentum = mom
    model.eval()
