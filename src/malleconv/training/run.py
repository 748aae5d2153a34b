"""Entry points around the :class:`~malleconv.training.trainer.Trainer`: train a run
(optionally warm-started or resumed) and export a run's checkpoint without training."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .trainer import Trainer

__all__ = ["export_checkpoint", "train"]


def train(
    cfg: dict,
    data,
    out,
    val=None,
    resume: str | None = None,
    progress=True,
    init: str | None = None,
) -> Trainer:
    """Build a :class:`Trainer`, optionally resume, fit and export; returns the trainer.

    ``init`` warm-starts from exported weights (a ``.safetensors`` path or a model name
    with shipped weights) with a fresh optimiser and schedule; ``resume`` continues a run
    from its checkpoint exactly (``"auto"``: ``OUT/checkpoints/last.pt`` if there is one, else
    a new run, said on stderr). Without ``resume`` a folder that already holds a run (its
    checkpoint or its weights) is refused: a second run would replace them.
    """
    last = Path(out) / "checkpoints" / "last.pt"
    weights = Path(out) / f"{cfg['model']['name']}.safetensors"
    if not resume and (last.exists() or weights.exists()):
        raise FileExistsError(
            f"{out} already holds a run ({last if last.exists() else weights}): pass --resume to "
            "continue it, or give another --out"
        )
    if resume not in (None, "auto") and not Path(resume).is_file():
        raise FileNotFoundError(f"checkpoint not found: {resume}")
    trainer = Trainer(cfg, data, out, val=val, progress=progress)
    try:
        if init and not resume:
            trainer.init_from(init)
        if resume:
            path = trainer.ckpt_path if resume == "auto" else Path(resume)
            if path.is_file():
                trainer.load_checkpoint(path)
            else:  # --resume with no checkpoint yet: a restartable job's first start
                print(f"no checkpoint at {path}: starting a new run", file=sys.stderr)
        trainer.fit()
    except BaseException:
        trainer.close(synchronise=False)
        raise
    trainer.close()
    return trainer


def export_checkpoint(
    cfg: dict,
    data,
    out,
    checkpoint: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
) -> tuple[Path, int]:
    """Export the weights of a run's checkpoint without training, e.g. mid-run; returns
    the weights' path and the checkpoint's step.

    The trainer is built as for training (the data is needed to recalibrate BatchNorm when
    the run keeps an EMA), the checkpoint (default ``OUT/checkpoints/last.pt``) is loaded
    and its weights are written, by default to ``OUT/NAME-stepN.safetensors`` so that the
    export at the end of the run is not replaced. An existing file is never overwritten.
    """
    trainer = Trainer(cfg, data, out, progress=False)
    try:
        ckpt = Path(checkpoint) if checkpoint else trainer.ckpt_path
        if not ckpt.is_file():
            raise FileNotFoundError(f"checkpoint not found: {ckpt}")
        trainer.load_checkpoint(ckpt)
        name = cfg["model"]["name"]
        target = Path(path) if path else trainer.out / f"{name}-step{trainer.step}.safetensors"
        if target.exists():
            raise FileExistsError(f"{target} exists; remove it or pass another path")
        return trainer.export(target), trainer.step
    finally:
        trainer.close(synchronise=False)  # no collective runs here: nothing to wait for
