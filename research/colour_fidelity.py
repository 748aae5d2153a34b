"""Where a colour denoiser's error lies: luma or chroma, noise left or detail lost.

    python research/colour_fidelity.py --train $MALLECONV_DATA/train/CBSD432 \
        --model mallenet-s [other/mallenet-s.safetensors ...] \
        --data $MALLECONV_DATA/test/Kodak24 $MALLECONV_DATA/test/McMaster --sigma 15 \
        [--bm3d] [--out docs/research/colour_fidelity.md]

``--train``: how detailed the training images' colour is at each scale. For each image and
for its 1/2, 1/4 and 1/8 size versions (repeated 2x2 box averages, as ``data.downscale_prob``
and ``data.quarter_prob`` make them), the mean squared difference between neighbouring pixels
of the luma and of the two chroma channels of an orthonormal opponent basis. The ratio
chroma / luma of these gradient energies is roughly the same at every scale for images whose
colour is as sharp as their luma; JPEG 4:2:0 chroma makes it grow as the images shrink.

``--model``/``--data``: the model's mean squared error on each test set, split into the
luma and two chroma channels (the RGB MSE is their mean), for the protocol's noisy input and
for the clean image itself given at the same sigma (what the model removes from an image with
no noise: lost detail). "chroma gain" is the output's chroma magnitude over the clean
image's, on pixels whose chroma magnitude is at least 0.1: below 1 the model desaturates
colourful detail. ``--bm3d`` adds BM3D's split on the noisy input (about 25 s per image).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from malleconv.cli.evaluate import model_denoiser
from malleconv.data.datasets import downscale_half, load_clean
from malleconv.evaluation.baselines import classical_denoiser
from malleconv.evaluation.protocol import load_test_image, make_noisy
from malleconv.io import from_float, list_images
from malleconv.runtime import command_line

# Rows: luma (R+G+B)/sqrt(3), then two chroma axes; orthonormal, so squared errors add up.
OPPONENT = np.array(
    [
        [1 / math.sqrt(3)] * 3,
        [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
        [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
    ]
)
CHROMA_MIN = 0.1


def gradient_energy(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float -> (luma, chroma 1, chroma 2) mean squared neighbour differences."""
    opp = rgb @ OPPONENT.T
    gx = np.diff(opp, axis=1) ** 2
    gy = np.diff(opp, axis=0) ** 2
    return gx.mean(axis=(0, 1)) + gy.mean(axis=(0, 1))


def training_scales(root: Path, levels: int = 4) -> list[tuple[int, np.ndarray]]:
    """``[(scale divisor, mean gradient energies (3,))]`` over the colour images in ``root``."""
    sums = np.zeros((levels, 3))
    count = 0
    for file, _ in list_images([root], recursive=True):
        img = load_clean(file, gray=False)
        if img.ndim != 3 or img.shape[2] != 3:
            continue
        for level in range(levels):
            sums[level] += gradient_energy(img.astype(np.float64) / np.iinfo(img.dtype).max)
            img = downscale_half(img)
        count += 1
    if not count:
        raise SystemExit(f"{root}: no colour image found")
    return [(2**level, sums[level] / count) for level in range(levels)]


def error_split(out: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-channel opponent MSE ``(3,)`` of ``out`` against ``clean`` (both ``(H, W, 3)``
    floats) and the chroma gain on colourful pixels (nan if there are none)."""
    e = (out - clean) @ OPPONENT.T
    mse = (e**2).mean(axis=(0, 1))
    c_opp = clean @ OPPONENT.T
    o_opp = out @ OPPONENT.T
    sat = np.hypot(c_opp[..., 1], c_opp[..., 2])
    mask = sat >= CHROMA_MIN
    gain = float(np.hypot(o_opp[..., 1], o_opp[..., 2])[mask].sum() / sat[mask].sum())
    return mse, (gain if mask.any() else float("nan"))


def as_hwc(t: torch.Tensor) -> np.ndarray:
    """``1 x 3 x H x W`` -> ``H x W x 3`` float64, clipped and rounded to 8 bits as saved."""
    return from_float(t[0].permute(1, 2, 0).float().numpy()) / 255.0


def model_split(denoise, folder: Path, sigma: float, bm3d) -> dict[str, list]:
    """``denoise``: ``(noisy (1,3,H,W), sigma) -> output``, as ``malleconv eval`` runs it."""
    rows: dict[str, list] = {"noisy input": [], "clean input": [], "BM3D, noisy input": []}
    for file, rel in list_images([folder], recursive=False):
        clean8 = load_test_image(file)
        clean = clean8.astype(np.float64) / 255
        noisy = make_noisy(clean8, rel.as_posix(), sigma)
        clean_t = torch.from_numpy(clean.transpose(2, 0, 1)).float()[None]
        with torch.inference_mode():
            rows["noisy input"].append(error_split(as_hwc(denoise(noisy, sigma)), clean))
            rows["clean input"].append(error_split(as_hwc(denoise(clean_t, sigma)), clean))
        if bm3d is not None:
            rows["BM3D, noisy input"].append(error_split(as_hwc(bm3d(noisy, sigma)), clean))
    return {k: v for k, v in rows.items() if v}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", type=Path, help="folder of training images (scales table)")
    ap.add_argument("--model", nargs="*", default=[], help="model names or weights paths")
    ap.add_argument("--data", type=Path, nargs="*", default=[], help="test image folders")
    ap.add_argument("--sigma", type=float, default=15.0)
    ap.add_argument("--bm3d", action="store_true", help="also split BM3D's error (slow)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--out", type=Path, help="write the tables to this Markdown file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lines = [f"Command: `{command_line('research/colour_fidelity.py', argv)}`", ""]

    if args.train:
        lines += [
            f"### Gradient energy of `{args.train.name}` at each scale",
            "",
            "| scale | luma | chroma 1 | chroma 2 | chroma / luma |",
            "|---|---|---|---|---|",
        ]
        for div, e in training_scales(args.train):
            ratio = (e[1] + e[2]) / e[0]
            lines.append(f"| 1/{div} | {e[0]:.2e} | {e[1]:.2e} | {e[2]:.2e} | {ratio:.3f} |")
        lines.append("")

    if args.model and args.data:
        bm3d = classical_denoiser("bm3d") if args.bm3d else None
        lines += [
            f"### Error at sigma {args.sigma:g}, split into luma and chroma",
            "",
            "MSE in units of 1e-4 (images in [0, 1]); RGB MSE = mean of the three.",
            "",
            "| set | model | input | luma | chroma 1 | chroma 2 | RGB PSNR | chroma gain |",
            "|---|---|---|---|---|---|---|---|",
        ]
        # Prepared as malleconv eval and denoise prepare them (BatchNorm folded, channels-last).
        denoisers = [model_denoiser(name) for name in args.model]
        for folder in args.data:
            for i, (name, denoise) in enumerate(zip(args.model, denoisers)):
                # BM3D's split does not depend on the model: run it with the first one only.
                split = model_split(denoise, folder, args.sigma, bm3d if i == 0 else None)
                for label, rows in split.items():
                    mse = np.mean([r[0] for r in rows], axis=0)
                    psnr = np.mean([10 * np.log10(1 / r[0].mean()) for r in rows])
                    gain = np.nanmean([r[1] for r in rows])
                    who = "-" if label.startswith("BM3D") else f"`{name}`"
                    lines.append(
                        f"| {folder.name} | {who} | {label} | {mse[0] * 1e4:.2f} | "
                        f"{mse[1] * 1e4:.2f} | {mse[2] * 1e4:.2f} | {psnr:.2f} | {gain:.3f} |"
                    )
        lines.append("")
    if len(lines) == 2:
        ap.error("give --train, or --model with --data")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
