"""Base class of modules that wrap a denoiser and change how it runs."""

from __future__ import annotations

from torch import nn

__all__ = ["DenoiserWrapper"]


class DenoiserWrapper(nn.Module):
    """Holds a denoiser as ``self.model``; attribute access falls through to it.

    Inference code asks a model for its ``config``, ``model_name``, parameters (device,
    dtype) and channels; a wrapper answers with the wrapped model's, so it can stand in
    for the model anywhere. A new wrapper is in the wrapped model's mode (training or
    eval). Subclasses define ``forward(noisy, sigma)``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # In the wrapped model's mode: code that switches a model to eval for a call and
        # back afterwards restores the mode of the outermost module, which must not put an
        # eval-mode model into training mode.
        self.training = model.training

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("model"), name)
