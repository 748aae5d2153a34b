"""Training: configs, the deterministic training loop, checkpoints, export."""

from .config import DEFAULT_CONFIG, load_config
from .trainer import StepBatches, Trainer, export_checkpoint, train

__all__ = ["DEFAULT_CONFIG", "load_config", "Trainer", "StepBatches", "train", "export_checkpoint"]
