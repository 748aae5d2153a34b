"""The training run's metrics log: rows of ``OUT/metrics.csv``, mirrored to TensorBoard
(``OUT/tensorboard``) when it is installed."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["MetricsLog"]


class MetricsLog:
    """Appends one row per :meth:`write` to ``out/metrics.csv``.

    Columns: ``step, loss, lr, pixels_per_s, time`` (Unix seconds), then ``psnr_S`` for
    each of ``val_sigmas`` and the ``extra_keys``; a row leaves the validation columns it
    has no value for empty. The file is opened on the first write and appended to, so a
    resumed run continues its file; the header is written only when the file is new.
    """

    def __init__(self, out: str | os.PathLike, val_sigmas: Iterable[float], extra_keys=()):
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "metrics.csv"
        self.columns = [*(f"psnr_{s:g}" for s in val_sigmas), *extra_keys]
        self._file = None
        self._csv = None
        self._tb = None
        try:  # TensorBoard is optional: metrics.csv is always written.
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            pass

    def write(self, step: int, values: Mapping[str, float]) -> None:
        """Log ``values`` (``loss``, ``lr``, ``pixels_per_s`` and any validation keys; a
        ``step`` key is ignored) at ``step``."""
        if self._csv is None:
            new = not self.path.exists()
            self._file = open(self.path, "a", newline="")
            self._csv = csv.writer(self._file)
            if new:
                self._csv.writerow(["step", "loss", "lr", "pixels_per_s", "time", *self.columns])
        self._csv.writerow(
            [
                step,
                f"{values['loss']:.6f}",
                f"{values['lr']:.3e}",
                f"{values['pixels_per_s']:.0f}",
                f"{time.time():.0f}",
                *(f"{values[k]:.3f}" if k in values else "" for k in self.columns),
            ]
        )
        self._file.flush()
        if self._tb is not None:
            for key, value in values.items():
                if key != "step":
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._csv = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
