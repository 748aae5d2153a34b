"""Do ways of decorrelating the noise help? Real camera noise against the synthetic held-out split.

    python research/pixel_shuffle_check.py --data $MALLECONV_DATA [--model mallenet-s-real]

Pixel-shuffle downsampling (Zhou et al., *When AWGN-based Denoiser Meets Real Noises*,
AAAI 2020) splits an image into its four stride-2 sub-images, which breaks up spatially
correlated noise, denoises each and puts them back. A multi-scale pass (as in Lebrun et
al.'s Noise Clinic for real JPEG noise) denoises the 2 x 2 block means, where correlated
noise is whiter, and takes half of the low band from there. Each image is denoised four ways
by the blind model (level not told): directly, through the four sub-images, the mean of
those two, and the direct output with half its low band (2 x 2 means, bilinear back up)
replaced by the half-resolution output's. On CC15 (real camera noise, against its
references) and on the held-out synthetic split of ``benchmarks/blind_validation.py``
(camera-like noise on the photos as they are and on softened scenes, ``optics_prob`` 1;
white noise 15 / 25 / 50; clean crops). A diagnostic: a way of denoising that helps the
real photos and not the synthetic ones says in what the synthesis differs from real noise.
Nothing is chosen on CC15 (issue 22).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from malleconv.data.camera_noise import CameraNoiseRanges, add_camera_noise, camera_noise_draw
from malleconv.data.noise import seed_for
from malleconv.evaluation.protocol import make_noisy
from malleconv.evaluation.real import find_pairs
from malleconv.io import list_images, read_image
from malleconv.models import load_model
from malleconv.runtime import tune_allocator
from malleconv.training.validation import load_val_images, psnr8

WAYS = ("direct", "sub-images", "mean of both", "half-res low band")
# The share of the direct output's low band that the half-resolution pass replaces.
LOW_BAND_SHARE = 0.5


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


@torch.no_grad()
def four_ways(model: torch.nn.Module, noisy: torch.Tensor) -> dict[str, torch.Tensor]:
    """``noisy (1, C, H, W)`` in [0, 1], H and W even -> the four outputs of :data:`WAYS`."""
    direct = model(noisy)
    shuffled = torch.empty_like(noisy)
    for i in range(2):
        for j in range(2):
            shuffled[..., i::2, j::2] = model(noisy[..., i::2, j::2].contiguous())
    low_band = _up(F.avg_pool2d(direct, 2))
    half_res = _up(model(F.avg_pool2d(noisy, 2)))
    multi_scale = direct + LOW_BAND_SHARE * (half_res - low_band)
    return dict(zip(WAYS, (direct, shuffled, (direct + shuffled) / 2, multi_scale)))


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """``H x W x 3`` uint8 -> ``(1, 3, H', W')`` float in [0, 1], cropped to even sizes."""
    h, w = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
    return torch.from_numpy(pixels[:h, :w].astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def scan(model, cases) -> dict[str, dict[str, float]]:
    """``cases``: ``(kind, noisy tensor, clean uint8)`` -> mean PSNR per kind and way."""
    scores: dict[str, dict[str, list[float]]] = {}
    for kind, noisy, clean in cases:
        clean = clean[: noisy.shape[-2], : noisy.shape[-1]]
        for way, out in four_ways(model, noisy).items():
            scores.setdefault(kind, {}).setdefault(way, []).append(psnr8(out, clean))
    return {k: {w: float(np.mean(v)) for w, v in per.items()} for k, per in scores.items()}


def real_cases(root: Path):
    for _, noisy_path, clean_path in find_pairs(root / "real" / "CC15"):
        yield "CC15", to_tensor(read_image(noisy_path).pixels), read_image(clean_path).pixels


def synthetic_cases(root: Path, holdout: int, crop: int, draws: int):
    folders = [root / "train" / "CBSD432", root / "train" / "OpenPhotos"]
    files = [file for file, _ in list_images(folders)][-holdout:]
    soft = CameraNoiseRanges(optics_prob=1.0)
    for name, clean in load_val_images(files, holdout, crop, gray=False):
        x = to_tensor(clean)
        for draw in range(draws):
            gen = torch.Generator().manual_seed(seed_for(name, draw))
            yield "held-out camera", add_camera_noise(x, gen), clean
        for draw in range(draws):
            reference, noisy = camera_noise_draw(clean, name, draw, soft)
            yield "held-out camera, soft scenes", noisy, reference
        for sigma in (15, 25, 50):
            yield f"held-out white {sigma}", make_noisy(clean, name, float(sigma)), clean
        yield "held-out clean", x, clean


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=os.environ.get("MALLECONV_DATA"), help="dataset root")
    p.add_argument("--model", default="mallenet-s-real", help="a blind model")
    p.add_argument("--holdout", type=int, default=8)
    p.add_argument("--crop", type=int, default=384)
    p.add_argument("--draws", type=int, default=3)
    args = p.parse_args(argv)
    if not args.data:
        p.error("--data (or MALLECONV_DATA) is required")
    tune_allocator()
    model = load_model(args.model).float().eval()
    root = Path(args.data)
    rows = scan(model, real_cases(root))
    rows.update(scan(model, synthetic_cases(root, args.holdout, args.crop, args.draws)))
    print("| images | " + " | ".join(WAYS) + " |")
    print("| --- |" + " --- |" * len(WAYS))
    for kind, per in rows.items():
        print(f"| {kind} | " + " | ".join(f"{per[w]:.2f}" for w in WAYS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
