"""Writes the browser test's photos into tests/data/ (256x256, small PNGs):

* ``web-noisy-256.png``: the bundled sample with camera-like noise
  (malleconv.data.camera_noise, fixed seed), the photo case the page is for;
* ``web-white-256.png``: the sample with white Gaussian noise of std 15 (fixed seed), which
  the automatic mode sends to ``mallenet-s``;
* ``web-clean-256.png``: a clean picture, no noise: the sample reduced 2x (fine texture)
  beside smooth gradients, a flat disc and fine synthetic patterns;
* ``web-grain-256.png``: the sample with grain two pixels wide (heavy camera noise drawn on
  the sample halved, JPEG-compressed, enlarged 2x), which gets the automatic mode's
  half-resolution pass.

The browser test (tests/test_web.py) denoises them in the page and with ``malleconv denoise``
and compares the two (decision and pixels). Small so that the comparison takes seconds.
Written without gamma / ICC chunks, so that the browser and Pillow decode the same bytes.

    .venv/bin/python scripts/web_fixture.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from malleconv.data.camera_noise import CameraNoiseRanges, add_camera_noise

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "src" / "malleconv" / "assets" / "sample.png"
DATA = ROOT / "tests" / "data"
OUT = DATA / "web-noisy-256.png"
WHITE = DATA / "web-white-256.png"
CLEAN = DATA / "web-clean-256.png"
GRAIN = DATA / "web-grain-256.png"


def _write(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, optimize=True)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


def _to_bytes(x: np.ndarray) -> np.ndarray:
    return (x * 255.0).round().clip(0, 255).astype(np.uint8)


def clean_picture(sample: np.ndarray) -> np.ndarray:
    """256x256 RGB in [0, 1], no noise but a faint grain: the sample's 2x2 means top left,
    a sky gradient top right, fine sine patterns bottom left, a flat disc on a gradient
    bottom right."""
    y, x = np.mgrid[0:256, 0:256].astype(np.float64)
    out = np.empty((256, 256, 3))
    out[..., 0] = 0.45 + 0.3 * y / 255
    out[..., 1] = 0.6 + 0.2 * y / 255
    out[..., 2] = 0.9 - 0.15 * x / 255
    h, w = sample.shape[:2]
    small = sample[: h - h % 2, : w - w % 2].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    out[:128, :128] = small[:128, :128]
    ys, xs = y[128:, :128], x[128:, :128]
    pattern = 0.5 + 0.22 * np.sin(2 * np.pi * xs / 3.3) * np.sin(2 * np.pi * ys / 5.1)
    pattern += 0.12 * np.sin(2 * np.pi * (xs + 2 * ys) / 7.7)
    out[128:, :128] = pattern[..., None] * np.array([0.9, 0.8, 0.6])
    disc = (y - 192) ** 2 + (x - 192) ** 2 < 40**2
    out[disc] = (0.8, 0.3, 0.2)
    # A faint grain (std 0.8 in 8-bit units), as a clean photo's own: flat areas with none
    # at all say nothing of noise, and the automatic mode sets no cap on them.
    return out + np.random.default_rng(8).normal(0.0, 0.8 / 255.0, out.shape)


def main() -> None:
    clean = np.asarray(Image.open(SAMPLE).convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(clean).permute(2, 0, 1)[None].contiguous()
    # Seed 41: input PSNR 27.5 dB against the clean sample, noise that shows.
    noisy = add_camera_noise(x, torch.Generator().manual_seed(41))[0]
    _write(OUT, _to_bytes(noisy.permute(1, 2, 0).numpy()))
    white = clean + np.random.default_rng(15).normal(0.0, 15.0 / 255.0, clean.shape)
    _write(WHITE, _to_bytes(white))
    _write(CLEAN, _to_bytes(clean_picture(clean)))
    # Seed 42: read as coarse grain (coarse / fine reading ratio 6.7, above HALF_PASS_RATIO).
    small = F.avg_pool2d(x, 2)
    heavy = CameraNoiseRanges(log_shot=(np.log(3e-3), np.log(1.2e-2)), jpeg_prob=1.0,
                              jpeg_quality=(50, 80))
    noisy_small = add_camera_noise(small, torch.Generator().manual_seed(42), heavy)
    grain = F.interpolate(noisy_small - small, scale_factor=2, mode="bilinear",
                          align_corners=False)
    _write(GRAIN, _to_bytes((x + grain).clamp(0, 1)[0].permute(1, 2, 0).numpy()))


if __name__ == "__main__":
    main()
