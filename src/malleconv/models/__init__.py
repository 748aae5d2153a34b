"""Denoising networks and their registry."""

from .dncnn import DnCNN
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
    "MODEL_CONFIGS",
    "available_models",
    "create_model",
    "load_model",
    "model_stats",
    "save_model",
]
