"""Training: configs, the deterministic training loop, checkpoints, export."""

from .batches import StepBatches
from .config import DEFAULT_CONFIG, load_config
from .run import export_checkpoint, train
from .trainer import Trainer

__all__ = ["DEFAULT_CONFIG", "load_config", "Trainer", "StepBatches", "train", "export_checkpoint"]
