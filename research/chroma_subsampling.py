"""How much JPEG 4:2:0 chroma subsampling alone costs on each test set, in PSNR.

    python research/chroma_subsampling.py --data $MALLECONV_DATA/test/CBSD68 \
        $MALLECONV_DATA/test/Kodak24 $MALLECONV_DATA/test/McMaster \
        --train $MALLECONV_DATA/train/CBSD432 [--out docs/research/chroma_subsampling.md]

For every image: RGB -> YCbCr (JPEG, Pillow), Cb and Cr halved (2x2 box) and brought back
with bilinear interpolation, -> RGB; PSNR against the original, compared with the plain
YCbCr round trip (the rounding floor). A denoiser trained on 4:2:0 JPEG targets learns
such soft chroma. ``--train`` also reports the chroma sampling of the training JPEGs.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

from malleconv.evaluation.metrics import psnr
from malleconv.io import atomic_write_text, list_images
from malleconv.runtime import command_line


def subsampled(img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(RGB after a YCbCr round trip, RGB after a 4:2:0 YCbCr round trip), uint8."""
    y, cb, cr = img.convert("YCbCr").split()
    w, h = img.size
    half = [
        c.resize((max(1, w // 2), max(1, h // 2)), Image.BOX).resize((w, h), Image.BILINEAR)
        for c in (cb, cr)
    ]
    plain = np.asarray(Image.merge("YCbCr", (y, cb, cr)).convert("RGB"))
    sub = np.asarray(Image.merge("YCbCr", (y, *half)).convert("RGB"))
    return plain, sub


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", nargs="+", required=True, metavar="DIR", help="test-set folders")
    ap.add_argument("--train", default=None, metavar="DIR", help="training JPEG folder")
    ap.add_argument("--out", default=None, help="write the Markdown table here")
    args = ap.parse_args(argv)

    lines = [
        "| set | images | YCbCr round trip PSNR | 4:2:0 chroma PSNR |",
        "|---|---:|---:|---:|",
    ]
    for folder in map(Path, args.data):
        scores = []
        for file, _ in list_images([folder], recursive=False):
            rgb = Image.open(file).convert("RGB")
            plain, sub = subsampled(rgb)
            clean = np.asarray(rgb)
            scores.append((psnr(plain, clean), psnr(sub, clean)))
        a, b = np.mean(scores, axis=0)
        lines.append(f"| {folder.name} | {len(scores)} | {a:.2f} | {b:.2f} |")
    if args.train:
        # Pillow's get_sampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0, -1 = not a YCbCr JPEG.
        names = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0", -1: "other"}
        counts = collections.Counter()
        for file, _ in list_images([Path(args.train)], recursive=True):
            with Image.open(file) as im:
                is_jpeg = isinstance(im, JpegImagePlugin.JpegImageFile)
                counts[
                    names.get(JpegImagePlugin.get_sampling(im), "other") if is_jpeg else "not JPEG"
                ] += 1
        found = ", ".join(f"{n}: {c}" for n, c in sorted(counts.items()))
        lines += [
            "",
            f"Chroma sampling of the training images in `{Path(args.train).name}`: {found}.",
        ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            args.out,
            "# Cost of 4:2:0 chroma subsampling\n\n"
            f"Made by `{command_line('research/chroma_subsampling.py', argv)}`.\n\n"
            "PSNR (dB, mean over the set) of each clean image after a YCbCr round trip, and "
            "after one with Cb/Cr halved (2x2 box) and interpolated back (bilinear).\n\n" + text,
            overwrite=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
