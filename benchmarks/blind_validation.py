"""Blind models on their synthetic validation split: what choices are made on, not CC15.

    python benchmarks/blind_validation.py --data $MALLECONV_DATA/train/CBSD432 \
        $MALLECONV_DATA/train/OpenPhotos --model mallenet-s-real runs/x/x.safetensors \
        [--holdout 8] [--crop 384] [--draws 3] [--blend 1.0 0.5 0.0] \
        [--strength 0.9 1.0 1.1] [--camera-noise smooth_prob=0.8 ...] [--out FILE.md]

The split is the one training holds out (``data.val_holdout``: the last ``--holdout``
images of ``--data`` in listing order), here as larger centre crops and with several
camera-noise draws per image, so that two models (or two ways of using one) can be told
apart by more than the training's single-draw validation. Every model runs with the level
not told, on:

- camera-like noise (``malleconv.data.camera_noise``, ``--draws`` draws per image; the
  default ranges, or others given as ``--camera-noise name=value``; with ``optics_prob``
  the scene is softened first, and the softened scene is the reference);
- white Gaussian noise of 15, 25 and 50 (also with the level told, for the gap);
- the clean crops (output against input).

``--blend a`` runs the model with ``map_variation = a`` (``BlindMalleNet``): the denoiser
gets ``mean + a * (map - mean)`` of the estimated level map, per image; 1 is the full map,
0 a single level per image. Without it each model runs with its stored value.
``--strength s`` multiplies the estimated level by ``s`` (as ``malleconv denoise
--strength`` does; the level told is not scaled): whether the estimate is calibrated.
The last columns say what the estimator reads (the mean of the level map the denoiser
gets, 8-bit units): on the clean crops, on the camera draws against their noise's std,
and how closely it follows that std from draw to draw (correlation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from malleconv.cli.options import add_camera_noise_option
from malleconv.data.camera_noise import CameraNoiseRanges, camera_noise_draw
from malleconv.evaluation.protocol import make_noisy
from malleconv.io import atomic_write_text, list_images
from malleconv.models import load_model
from malleconv.models.blind import BlindMalleNet
from malleconv.runtime import command_line, tune_allocator
from malleconv.training.validation import load_val_images, psnr8

WHITE_SIGMAS = (15, 25, 50)


def holdout_crops(folders, holdout: int, crop: int) -> list[tuple[str, np.ndarray]]:
    """``(name, H x W x 3 uint8)`` centre crops of the last ``holdout`` images, as the
    trainer holds them out."""
    files = [file for file, _ in list_images([Path(f) for f in folders])][-holdout:]
    return load_val_images(files, holdout, crop, gray=False)


@torch.no_grad()
def score(
    model: BlindMalleNet,
    crops,
    draws: int,
    strength: float = 1.0,
    ranges: CameraNoiseRanges | None = None,
) -> dict[str, float]:
    ranges = ranges or CameraNoiseRanges()
    res: dict[str, list[float]] = {}

    def add(key, value):
        res.setdefault(key, []).append(value)

    for name, clean in crops:
        x = torch.from_numpy(clean.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        for draw in range(draws):
            reference, noisy = camera_noise_draw(clean, name, draw, ranges)
            out, level = model(noisy, strength=strength, return_level=True)
            add("camera", psnr8(out, reference))
            add("camera level", float(level.mean()))
            add("camera std", float((noisy[0].permute(1, 2, 0).numpy() * 255 - reference).std()))
        for sigma in WHITE_SIGMAS:
            noisy = make_noisy(clean, name, float(sigma))
            add(f"white {sigma}", psnr8(model(noisy, strength=strength), clean))
            add(f"told {sigma}", psnr8(model(noisy, float(sigma)), clean))
        out, level = model(x, strength=strength, return_level=True)
        add("clean", psnr8(out, clean))
        add("clean level", float(level.mean()))
    # How well the level read follows the camera noise's std, draw by draw.
    corr = float(np.corrcoef(res["camera level"], res["camera std"])[0, 1])
    return {"camera level corr": corr, **{k: float(np.mean(v)) for k, v in res.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="the training folders, in order")
    ap.add_argument("--model", nargs="+", default=["mallenet-s-real"])
    ap.add_argument("--holdout", type=int, default=8)
    ap.add_argument("--crop", type=int, default=384)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--blend", type=float, nargs="+", help="map_variation values to run")
    ap.add_argument("--strength", type=float, nargs="+", default=[1.0], help="level multipliers")
    add_camera_noise_option(ap, example="smooth_prob=0.8 'smooth_sigma=[0.3,2.0]'")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--out", help="also write the table to this markdown file")
    args = ap.parse_args(argv)
    ranges = args.camera_noise
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_allocator()

    crops = holdout_crops(args.data, args.holdout, args.crop)
    white = [f"white {s} (told)" for s in WHITE_SIGMAS]
    header = ["model", "map_variation", "strength", "camera", *white, "clean"]
    header += ["level read: clean", "level read: camera (its std)", "correlation"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name in args.model:
        model = load_model(name).float().eval()
        if not isinstance(model, BlindMalleNet):
            print(f"error: --model {name} is not a blind model", file=sys.stderr)
            return 2
        for blend in args.blend or [model.map_variation]:
            model.map_variation = blend
            for strength in args.strength:
                r = score(model, crops, args.draws, strength, ranges)
                white = [f"{r[f'white {s}']:.2f} ({r[f'told {s}']:.2f})" for s in WHITE_SIGMAS]
                row = [name, f"{blend:g}", f"{strength:g}", f"{r['camera']:.2f}", *white]
                row += [f"{r['clean']:.2f}", f"{r['clean level']:.2f}"]
                row += [f"{r['camera level']:.2f} ({r['camera std']:.2f})"]
                row += [f"{r['camera level corr']:.2f}"]
                lines.append("| " + " | ".join(row) + " |")
                print(lines[-1], flush=True)
    table = "\n".join(lines)
    print()
    print(table)
    if args.out:
        cmd = command_line("benchmarks/blind_validation.py", argv)
        text = (
            f"# Blind models on the synthetic validation split\n\nMade by `{cmd}`: "
            f"the last {args.holdout} training images held out, {args.crop}² centre crops, "
            f"{args.draws} camera-noise draws each; mean PSNR (dB), level not told "
            "(told in brackets); clean: output against input.\n\n" + table + "\n"
        )
        atomic_write_text(args.out, text, overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
