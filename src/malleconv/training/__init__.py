"""Training: configs, the deterministic training loop, checkpoints, export."""

from .batches import StepBatches
from .config import DEFAULT_CONFIG, load_config
from .trainer import Trainer, export_checkpoint, train

__all__ = ["DEFAULT_CONFIG", "load_config", "Trainer", "StepBatches", "train", "export_checkpoint"]
