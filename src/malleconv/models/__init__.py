"""Denoising networks and their registry."""

from .dncnn import DnCNN
from .fuse import fuse_batchnorm
from .mallenet import MalleNet, MalleNetConfig
from .registry import (
    MODEL_CONFIGS,
    available_models,
    create_model,
    load_model,
    model_stats,
    save_model,
)

__all__ = [
    "MalleNet",
    "MalleNetConfig",
    "DnCNN",
    "fuse_batchnorm",
    "MODEL_CONFIGS",
    "available_models",
    "create_model",
    "load_model",
    "model_stats",
    "save_model",
]
