"""Before / after crops of real noisy photos (RNI15), and of one clean, sharp photo
(``test/CleanPhotos``), in the default mode of ``denoise``.

    python scripts/rni15_panel.py --data $MALLECONV_DATA [--model mallenet-s-real]
        [--out docs/figures/rni15-panel.png]

Each photo is denoised whole with no noise level given (what ``malleconv denoise photo.jpg``
does), then the same crop of the input and of the output are shown side by side, enlarged
2x with nearest-neighbour so that the grain stays visible. The clean photo is the one the
automatic mode changes most (cp_02, docs/benchmarks/photo_mode.md): a clean photo should
come back unchanged. RNI15 has no clean references: the panel is for looking, the figures
are in docs/benchmarks/photo_mode.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from malleconv import denoise
from malleconv.io import read_image, write_image
from malleconv.runtime import tune_allocator

# (file under the dataset root, top, left) of a 128 x 128 crop with both flat areas and
# detail.
CROPS = [
    ("real/RNI15/Dog.png", 150, 120),
    ("real/RNI15/Frog.png", 120, 180),
    ("real/RNI15/Movie.png", 100, 140),
    ("real/RNI15/Window.png", 140, 120),
    ("real/RNI15/Flowers.png", 120, 200),
    ("real/RNI15/Singer.png", 90, 120),
    ("test/CleanPhotos/cp_02.png", 230, 150),
]
SIZE = 128
SCALE = 2
LABEL_H = 18


def panel(data: Path, model: str | None) -> tuple[np.ndarray, list[str]]:
    """``(H, W, 3)`` uint8 panel and one caption per row."""
    rows, captions = [], []
    for name, top, left in CROPS:
        pixels = read_image(data / name).pixels[..., :3]
        decided: dict = {}
        out = denoise(pixels, model=model, report=decided)
        pair = [
            img[top : top + SIZE, left : left + SIZE].repeat(SCALE, 0).repeat(SCALE, 1)
            for img in (pixels, out)
        ]
        gap = np.full((SIZE * SCALE, 4, 3), 255, np.uint8)
        rows.append(np.concatenate([pair[0], gap, pair[1]], axis=1))
        captions.append(
            f"{Path(name).name}: input | denoised (read as {decided['noise']}, "
            f"level {decided['sigma']:.1f})"
        )
    return rows, captions


def compose(rows: list[np.ndarray], captions: list[str]) -> Image.Image:
    width = rows[0].shape[1]
    height = sum(r.shape[0] + LABEL_H for r in rows)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for row, caption in zip(rows, captions):
        draw.text((4, y + 3), caption, fill="black")
        canvas.paste(Image.fromarray(row), (0, y + LABEL_H))
        y += row.shape[0] + LABEL_H
    return canvas


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("MALLECONV_DATA"), help="dataset root")
    p.add_argument("--model", default=None, help="default: the model denoise picks")
    p.add_argument("--out", default="docs/figures/rni15-panel.png")
    args = p.parse_args(argv)
    if not args.data:
        p.error("--data is required (or set MALLECONV_DATA)")
    tune_allocator()
    rows, captions = panel(Path(args.data), args.model)
    image = compose(rows, captions)
    write_image(args.out, np.asarray(image), overwrite=True)
    print("\n".join(captions))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
