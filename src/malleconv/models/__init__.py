"""Denoising networks and their registry."""

from .convert import gray_from_color
from .dncnn import DnCNN
from .ensemble import SelfEnsemble
from .fuse import fuse_batchnorm
from .mallenet import MalleNet, MalleNetConfig
from .plain import PlainDenoiser
from .precision import Autocast
from .registry import (
    MODEL_CONFIGS,
    available_models,
    create_model,
    load_model,
    model_stats,
    save_model,
)
from .widen import widen_mallenet

__all__ = [
    "MalleNet",
    "MalleNetConfig",
    "DnCNN",
    "PlainDenoiser",
    "fuse_batchnorm",
    "gray_from_color",
    "SelfEnsemble",
    "Autocast",
    "MODEL_CONFIGS",
    "available_models",
    "create_model",
    "load_model",
    "model_stats",
    "save_model",
    "widen_mallenet",
]
