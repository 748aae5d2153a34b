"""Fine-tuning a model: start it from exported weights (:func:`warm_start`) and keep chosen
submodules fixed while the rest trains (:func:`freeze_submodules`)."""

from __future__ import annotations

import os
from copy import deepcopy

from torch import nn

from ..models.blind import BlindMalleNet
from ..models.convert import gray_from_color
from ..models.mallenet import MalleNet
from ..models.registry import load_model
from ..models.widen import widen_mallenet

__all__ = ["freeze_submodules", "warm_start"]


def warm_start(
    model: nn.Module, name_or_path: str | os.PathLike, model_overrides: dict | None = None
) -> None:
    """Load exported weights (a ``.safetensors`` path or a shipped model's name) into ``model``.

    Colour MalleNet weights warm-start a gray model through
    :func:`~malleconv.models.convert.gray_from_color`, and a narrower MalleNet warm-starts a
    wider one through :func:`~malleconv.models.widen.widen_mallenet` (same function at step
    0, the new channels then learn). A plain MalleNet warm-starts a blind model's denoiser;
    its estimator starts from scratch. ``model_overrides`` is the config's
    ``model.overrides``: values set there are not taken from the source.
    """
    src = load_model(name_or_path)
    gray = getattr(getattr(model, "config", None), "in_channels", 3) == 1
    if gray and getattr(getattr(src, "config", None), "in_channels", 1) == 3:
        src = gray_from_color(src)
    if (
        isinstance(src, MalleNet)
        and isinstance(model, MalleNet)
        and src.config.widths != model.config.widths
    ):
        src = widen_mallenet(src.float(), deepcopy(model).float().cpu())
    target = model
    if isinstance(model, BlindMalleNet) and isinstance(src, MalleNet):
        target = model.denoiser
    state = target.state_dict()
    target.load_state_dict({k: v.to(state[k].dtype) for k, v in src.state_dict().items()})
    if isinstance(src, BlindMalleNet) and isinstance(model, BlindMalleNet):
        # How flat a map the denoiser gets is part of the model it starts from: blind
        # samples then see the level as that model's inference gives it, and the export
        # keeps it. An explicit model.overrides.map_variation wins.
        if "map_variation" not in (model_overrides or {}):
            model.map_variation = src.map_variation


def freeze_submodules(model: nn.Module, names) -> list[nn.Module]:
    """Set the parameters of the submodules ``names`` (dotted, e.g. ``"denoiser"``) not to
    train and return those submodules; the caller keeps them in eval mode, so that their
    BatchNorm statistics stay too (``train.frozen``)."""
    frozen = []
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            children = ", ".join(n for n, _ in model.named_children())
            raise ValueError(
                f"train.frozen: {type(model).__name__} has no submodule {name!r} "
                f"(it has: {children})"
            ) from None
        module.requires_grad_(False)
        frozen.append(module)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"train.frozen={list(names)} leaves nothing to train")
    return frozen
