"""Held-out validation during training: crops of held-out images, PSNR per noise level.

The white-noise figures follow the standard protocol (noise seeded per image name and
sigma); blind models are also scored with the level not told, on camera-like noise, on
white noise of 25 and on the clean crops (the output against its input).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.camera_noise import add_camera_noise
from ..data.noise import seed_for
from ..evaluation.metrics import psnr
from ..evaluation.protocol import load_test_image, make_noisy
from ..io import list_images

__all__ = ["BLIND_VAL_KEYS", "load_val_images", "psnr8", "validate_blind", "validate_white"]

BLIND_VAL_KEYS = ("psnr_camera_auto", "psnr_25_auto", "psnr_clean_auto")


def load_val_images(paths, max_images: int, crop: int, gray: bool) -> list[tuple[str, np.ndarray]]:
    """``(name, H x W x C uint8)`` centre crops (side ``crop``, 0 for whole images) of the
    first ``max_images`` images found in ``paths``."""
    if not paths:
        return []
    out = []
    for file, rel in list_images(paths)[:max_images]:
        img = load_test_image(file, gray=gray)
        if crop:
            h, w = img.shape[:2]
            top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            img = np.ascontiguousarray(img[top : top + crop, left : left + crop])
        out.append((rel.as_posix(), img))
    return out


def psnr8(out: torch.Tensor, clean: np.ndarray) -> float:
    """PSNR of a ``(1, C, H, W)`` output in [0, 1], clipped and rounded to 8 bits as a saved
    image is, against the clean ``H x W x C`` uint8 image."""
    out8 = (out.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return psnr(out8, clean)


@torch.no_grad()
def validate_white(model: nn.Module, images, sigmas, device) -> dict[str, float]:
    """``{"psnr_<sigma>": mean PSNR}`` with white noise of each sigma, the level told."""
    res = {}
    for sigma in sigmas:
        vals = []
        for name, clean in images:
            noisy = make_noisy(clean, name, float(sigma)).to(device)
            vals.append(psnr8(model(noisy, float(sigma)), clean))
        res[f"psnr_{sigma:g}"] = float(np.mean(vals))
    return res


@torch.no_grad()
def validate_blind(model: nn.Module, images, device) -> dict[str, float]:
    """Mean PSNR of a blind model with the level not told, keys :data:`BLIND_VAL_KEYS`:
    camera noise (seeded per image name), white noise of 25, and no noise."""
    res: dict[str, list[float]] = {k: [] for k in BLIND_VAL_KEYS}
    for name, clean in images:
        x = torch.from_numpy(clean.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        gen = torch.Generator().manual_seed(seed_for(name, 0))
        inputs = {
            "psnr_camera_auto": add_camera_noise(x, gen),
            "psnr_25_auto": make_noisy(clean, name, 25.0),
            "psnr_clean_auto": x,
        }
        for key, noisy in inputs.items():
            res[key].append(psnr8(model(noisy.to(device)), clean))
    return {k: float(np.mean(v)) for k, v in res.items()}
