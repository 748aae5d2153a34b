"""How the automatic mode caps the learned level map with the noise floor, chosen on the
held-out training split (not on the test sets).

    python benchmarks/noise_floor_cap.py --data $MALLECONV_DATA/train/CBSD432 \
        $MALLECONV_DATA/train/OpenPhotos [--holdout 8] [--crop 384] [--draws 2] \
        [--cap 2.5 4] [--min-floor 0 0.5] [--out docs/benchmarks]

The blind model (``mallenet-s-real``) reads fine texture as noise, so on clean, sharp
photos it smooths detail away. The noise floor (:mod:`malleconv.inference.noise_floor`)
reads the noise in the flattest parts of an image, which texture does not raise. Here the
blind model runs on the last ``--holdout`` training images (modern photos, downscaled, so
clean) as ``--crop`` centre crops, with the estimated map capped at ``k`` times the floor for
each ``k`` of ``--cap`` (and uncapped), on:

- the clean crops (output against input: a clean photo should come back unchanged);
- camera-like noise (``--draws`` draws per crop,
  :func:`~malleconv.data.camera_noise.camera_noise_draw`), on the sharp scene and on the
  softened scene (``optics_prob`` 1, as a camera's lens and demosaicking soften it);
- white Gaussian noise of 5, 15 and 25 (level not told).

Each factor runs with no cap below each ``--min-floor`` (a floor that low says nothing of
the noise). The chosen setting is the first (factors ascending) that costs no noisy kind
more than 0.02 dB on average: it keeps the denoiser's level wherever there is noise, and
lowers it where there is only texture. Also printed: what the floor and the learned map
read on each kind of input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from malleconv.data.camera_noise import CameraNoiseRanges, camera_noise_draw
from malleconv.evaluation.protocol import make_noisy
from malleconv.inference.auto import MIN_FLOOR
from malleconv.inference.noise_floor import read_noise_floor
from malleconv.io import list_images
from malleconv.models import load_model
from malleconv.models.blind import BlindMalleNet
from malleconv.runtime import command_line, tune_allocator, write_report
from malleconv.training.validation import load_val_images, psnr8

WHITE_SIGMAS = (5, 15, 25)


def cases(crops, draws: int):
    """``(kind, reference uint8 H x W x 3, noisy (1, 3, H, W))`` for every crop."""
    sharp, soft = CameraNoiseRanges(optics_prob=0.0), CameraNoiseRanges(optics_prob=1.0)
    for name, clean in crops:
        x = torch.from_numpy(clean.astype(np.float32) / 255).permute(2, 0, 1)[None]
        yield "clean", clean, x
        for draw in range(draws):
            for kind, ranges in (("camera", sharp), ("camera, softened", soft)):
                reference, noisy = camera_noise_draw(clean, name, draw, ranges)
                yield kind, reference, noisy
        for sigma in WHITE_SIGMAS:
            yield f"white {sigma}", clean, make_noisy(clean, name, float(sigma))


def cap_for(floor: float, factor: float, min_floor: float) -> float | None:
    """The cap the automatic mode sets: ``factor`` times the floor, none below ``min_floor``."""
    return None if floor < min_floor else factor * floor


@torch.no_grad()
def measure(
    model: BlindMalleNet, crops, draws: int, caps: list[float], min_floors: list[float]
) -> dict:
    """Per kind: mean PSNR uncapped and per (cap factor, least floor capped); mean floor
    and mean map level."""
    rows: dict[str, dict[str, list[float]]] = {}
    for kind, reference, noisy in cases(crops, draws):
        row = rows.setdefault(kind, {})
        floor = read_noise_floor(noisy)
        out, level = model(noisy, return_level=True)
        row.setdefault("none", []).append(psnr8(out, reference))
        row.setdefault("floor", []).append(floor.level)
        row.setdefault("map", []).append(float(level.mean()))
        for k in caps:
            for least in min_floors:
                out = model(noisy, max_level=cap_for(floor.level, k, least))
                row.setdefault(f"{k:g}/{least:g}", []).append(psnr8(out, reference))
        print(kind, f"floor {floor.level:.2f} map {float(level.mean()):.2f}", flush=True)
    return {kind: {k: float(np.mean(v)) for k, v in row.items()} for kind, row in rows.items()}


def choose(result: dict, columns: list[str], tolerance: float = 0.02) -> str | None:
    """The first column (factors ascending) that costs no noisy kind more than
    ``tolerance`` dB, or None."""
    noisy = [kind for kind in result if kind != "clean"]
    for col in columns:
        if all(result[kind]["none"] - result[kind][col] <= tolerance for kind in noisy):
            return col
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="the training folders, in order")
    ap.add_argument("--model", default="mallenet-s-real")
    ap.add_argument("--holdout", type=int, default=8)
    ap.add_argument("--crop", type=int, default=384)
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--cap", type=float, nargs="+", default=[2.5, 4.0])
    ap.add_argument(
        "--min-floor", type=float, nargs="+", default=[0.0, MIN_FLOOR],
        help="floors below this get no cap (0: every image capped)",
    )
    ap.add_argument("--out", help="folder for noise_floor_cap.md / .json")
    args = ap.parse_args(argv)
    tune_allocator()
    model = load_model(args.model).float().eval()
    if not isinstance(model, BlindMalleNet):
        print(f"error: --model {args.model} is not a blind model", file=sys.stderr)
        return 2
    # The last --holdout images of the training folders, as the trainer holds them out.
    files = [file for file, _ in list_images([Path(f) for f in args.data])][-args.holdout :]
    crops = load_val_images(files, args.holdout, args.crop, gray=False)
    result = measure(model, crops, args.draws, args.cap, args.min_floor)
    columns = [f"{k:g}/{least:g}" for k in sorted(args.cap) for least in args.min_floor]
    chosen = choose(result, columns)
    header = ["input", "floor", "map", "uncapped"]
    header += [f"cap {c.split('/')[0]}x floor, none below {c.split('/')[1]}" for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for kind, r in result.items():
        cells = [kind, f"{r['floor']:.2f}", f"{r['map']:.2f}", f"{r['none']:.2f}"]
        cells += [f"{r[c]:.2f}" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    print(f"chosen cap factor: {chosen}")
    if args.out:
        cmd = command_line("benchmarks/noise_floor_cap.py", argv)
        md = (
            "# The noise floor's cap on the learned level map\n\n"
            f"Made by `{cmd}`: the last {args.holdout} training images, {args.crop}² centre "
            f"crops, {args.draws} camera-noise draws each (sharp and softened scenes); "
            f"`{args.model}` with its level map capped at k times the noise floor. Mean PSNR "
            "(dB) against the reference (clean: output against input); floor and map: mean "
            "levels read (8-bit units).\n\n"
            f"{table}\n\nThe first setting (factor, least floor capped) that costs no noisy "
            f"input more than 0.02 dB on average: **{chosen}**.\n"
        )
        write_report(args.out, "noise_floor_cap", {"result": result, "chosen": chosen}, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
