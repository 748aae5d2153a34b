"""Held-out PSNR of a model with its own BatchNorm statistics against re-estimated ones.

The trainer re-estimates BatchNorm statistics (``recalibrate_batchnorm``) before it
validates or exports an EMA model. This compares, on the run's held-out images, the
weights' tracked statistics, statistics from batches drawn like the training batches
(what the trainer does) and statistics from plain full-size patches (what it did before
2026-11-27). docs/training.md's figures are stage 22's weights with stage 22's config::

    python research/bn_recalibration.py --config configs/chroma-mix-cpu.yaml \
        --set train.seed=22 --model runs/mallenet-s-s22/mallenet-s.safetensors \
        --data $MALLECONV_DATA/train/CBSD432
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from malleconv.runtime import tune_allocator
from malleconv.training.batches import StepBatches
from malleconv.training.config import load_config
from malleconv.training.ema import recalibrate_batchnorm
from malleconv.training.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True, help="the training config (data mix, hold-out)")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, as for malleconv train (e.g. a lineage stage's seed)",
    )
    ap.add_argument("--model", default="mallenet-s", help="model name or .safetensors path")
    ap.add_argument(
        "--data", required=True, nargs="+", help="training image folders (e.g. CBSD432)"
    )
    ap.add_argument("--batches", type=int, default=32, help="recalibration batches")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tune_allocator()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    with tempfile.TemporaryDirectory() as out:
        t = Trainer(cfg, args.data, out, progress=False)
        b = t.batches
        plain = StepBatches(t.patches, b.batch_size, (b.lo, b.hi), b.seed + 1)

        def like_plain_patches(model):
            batches = (plain[i] for i in range(args.batches))
            recalibrate_batchnorm(model, batches, t.device)

        for label, recalibrate in (
            ("tracked statistics", None),
            # The trainer's own recalibration, as EMA validation and export run it.
            (
                "recalibrated, batches drawn like training",
                lambda m: t._recalibrate(m, args.batches),
            ),
            ("recalibrated, plain full-size patches", like_plain_patches),
        ):
            t.init_from(args.model)
            if recalibrate is not None:
                recalibrate(t.model)
            res = t.validate()
            print(f"{label:45s} " + " / ".join(f"{v:.3f}" for v in res.values()), flush=True)
        t.close()


if __name__ == "__main__":
    main()
