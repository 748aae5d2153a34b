"""Training throughput: pixels per second of forward + backward + optimiser step."""

from __future__ import annotations

import copy
import time

import torch

from .trainer import Trainer


def measure(cfg: dict, data, steps: int = 10, warmup: int = 3) -> float:
    """Training pixels/s of ``cfg`` on ``data`` (data loading included, after warm-up)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, data, tmp, progress=False)
        batches = [trainer.batches[s] for s in range(warmup + steps)]
        for b in batches[:warmup]:
            trainer._train_step(b)
        t0 = time.perf_counter()
        for b in batches[warmup:]:
            trainer._train_step(b)
        dt = time.perf_counter() - t0
    d = cfg["data"]
    return steps * int(d["batch_size"]) * int(d["patch_size"]) ** 2 / dt


def profile_training(cfg: dict, data, variants: dict | None = None) -> dict:
    """Print pixels/s for the config and a few variants (channels-last, bf16)."""
    variants = variants or {
        "fp32 NCHW": {"channels_last": False, "bf16": False},
        "fp32 channels-last": {"channels_last": True, "bf16": False},
        "bf16 channels-last": {"channels_last": True, "bf16": True},
    }
    results = {}
    print(
        f"model {cfg['model']['name']}, batch {cfg['data']['batch_size']}, patch "
        f"{cfg['data']['patch_size']}, threads {torch.get_num_threads()}"
    )
    for label, train_over in variants.items():
        c = copy.deepcopy(cfg)
        c["train"].update(train_over)
        results[label] = measure(c, data)
        print(f"{label:24s} {results[label]:>12,.0f} pixels/s")
    return results
