"""Statistics of real camera noise (CC15) against the synthetic camera noise of training.

    python research/noise_stats.py --data $MALLECONV_DATA [--draws 4] [--holdout 8]
        [--camera-noise NAME=VALUE ...]

For each CC15 photo, the noise (noisy minus reference, 8-bit units): its std, the
correlation of horizontal neighbours one and two pixels apart, the correlation of the red
and green noise, its chroma against its luma, its luma's share at a coarse scale and the
balance of its luma between the 2-pixel and the 1-pixel scale (see :func:`noise_stats`).
Then the same for ``--draws`` synthetic camera-noise draws
(:func:`malleconv.data.camera_noise.add_camera_noise`) on a 512x512 crop of each of the
last ``--holdout`` OpenPhotos files (the held-out ones), as 10th / 50th / 90th percentiles.

Last, the **noise floor** of the sets the automatic mode is judged on: the finest Haar
diagonal detail (HH) in 16x16-pixel blocks, and the same on the 2x2 block means (times 2,
so white noise reads the same; correlated noise reads higher there), its root mean square
per block, the 5th percentile over the blocks that are neither near black nor near white:
what is left in the flattest parts of an image, which is noise (or film grain) rather than
content. Beside it, the **scene sharpness**: the luma's energy at the 1-pixel scale against
the 2-pixel scale (:func:`scene_sharpness`; white noise reads 4, a scene blurred as a
camera's pixels are much less). The sets are CC15, Kodak24, McMaster, the training folders,
and the held-out OpenPhotos also softened at both ends of ``optics_sigma``
(:func:`malleconv.data.camera_noise.soften_scene`). Median, min and max per set. Used in
docs/training-log.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from malleconv.cli.options import add_camera_noise_option
from malleconv.data.camera_noise import (
    OPPONENT,
    CameraNoiseRanges,
    add_camera_noise,
    soften_scene,
)
from malleconv.evaluation.real import find_pairs
from malleconv.io import list_images, read_image

STATS = [
    "std",
    "corr. 1 px",
    "corr. 2 px",
    "corr. red-green",
    "chroma / luma",
    "luma 8 px",
    "luma 2 px / 1 px",
]


def _block_means(x: np.ndarray, size: int) -> np.ndarray:
    """``size x size`` block means of an ``H x W`` plane, repeated back to full size."""
    h, w = x.shape[0] // size * size, x.shape[1] // size * size
    means = x[:h, :w].reshape(h // size, size, w // size, size).mean(axis=(1, 3))
    return np.kron(means, np.ones((size, size)))


def scale_energy(x: np.ndarray, size: int) -> float:
    """Energy per pixel of the detail of an ``H x W`` plane at the ``size``-pixel scale: its
    ``size`` block means less its ``2 size`` block means (``size`` 1: the plane itself)."""
    h, w = x.shape[0] // (2 * size) * 2 * size, x.shape[1] // (2 * size) * 2 * size
    x = x[:h, :w]
    fine = x if size == 1 else _block_means(x, size)
    return float(((fine - _block_means(x, 2 * size)) ** 2).mean())


def noise_stats(noisy: np.ndarray, clean: np.ndarray) -> tuple[float, ...]:
    """The noise's std, neighbour correlation at 1 and 2 pixels, red-green correlation, the
    ratio of its chroma to its luma std (opponent colours), and how much of the luma noise
    survives 8x8 block means (times 8, so white noise reads 1; coarse, blotchy noise higher),
    and the luma noise's energy at the 2-pixel scale against the 1-pixel scale
    (:func:`scale_energy`; white noise reads 0.25, grain two pixels wide about 1 or more).
    """
    n = noisy.astype(np.float64) - clean.astype(np.float64)
    opp = n @ OPPONENT.double().numpy().T
    luma = opp[..., 0]
    h, w = luma.shape[0] // 8 * 8, luma.shape[1] // 8 * 8
    blocks = luma[:h, :w].reshape(h // 8, 8, w // 8, 8).mean(axis=(1, 3))
    return (
        float(n.std()),
        float(np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1]),
        float(np.corrcoef(n[:, :-2].ravel(), n[:, 2:].ravel())[0, 1]),
        float(np.corrcoef(n[..., 0].ravel(), n[..., 1].ravel())[0, 1]),
        float(np.sqrt((opp[..., 1:] ** 2).mean()) / luma.std()),
        float(8 * blocks.std() / luma.std()),
        scale_energy(luma, 2) / scale_energy(luma, 1),
    )


def _haar(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The finest HH band and the 2x2 block means of an ``H x W`` plane."""
    h, w = x.shape[0] - x.shape[0] % 2, x.shape[1] - x.shape[1] % 2
    a, b, c, d = x[0:h:2, 0:w:2], x[0:h:2, 1:w:2], x[1:h:2, 0:w:2], x[1:h:2, 1:w:2]
    return (a - b - c + d) / 2, (a + b + c + d) / 4


def noise_floor(pixels: np.ndarray, block: int = 8, pct: float = 5) -> tuple[float, float]:
    """8-bit ``H x W x C`` image -> the floor (8-bit units) at full and at half resolution."""
    floors = []
    for coarse in (False, True):
        values = []
        for c in range(min(pixels.shape[2], 3)):
            x = pixels[..., c].astype(np.float64)
            if coarse:
                x = 2 * _haar(x)[1]
            hh, mean = _haar(x)
            if coarse:
                mean = mean / 2
            h, w = hh.shape[0] - hh.shape[0] % block, hh.shape[1] - hh.shape[1] % block
            cut = (h // block, block, w // block, block)
            rms = np.sqrt((hh[:h, :w].reshape(cut) ** 2).mean(axis=(1, 3)))
            level = mean[:h, :w].reshape(cut).mean(axis=(1, 3))
            keep = (level > 8) & (level < 247)
            values.append(rms[keep] if keep.any() else rms.ravel())
        floors.append(float(np.percentile(np.concatenate(values), pct)))
    return floors[0], floors[1]


def scene_sharpness(pixels: np.ndarray) -> float:
    """8-bit ``H x W x 3`` image -> its luma's energy at the 1-pixel scale over that at the
    2-pixel scale (:func:`scale_energy`): how much of its detail is at the finest scale."""
    luma = pixels[..., :3].astype(np.float64) @ OPPONENT[0].double().numpy()
    return scale_energy(luma, 1) / scale_energy(luma, 2)


def _softened(path, sigma: float) -> np.ndarray:
    """The image at ``path`` through :func:`soften_scene` with a blur of ``sigma``, 8-bit."""
    x = torch.from_numpy(read_image(path).pixels[..., :3].astype(np.float32) / 255)
    ranges = CameraNoiseRanges(optics_prob=1.0, optics_sigma=(sigma, sigma))
    soft = soften_scene(x.permute(2, 0, 1)[None], torch.Generator(), ranges)[0]
    return (soft.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.environ.get("MALLECONV_DATA"), help="dataset root")
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--holdout", type=int, default=8)
    add_camera_noise_option(ap, example="'jpeg_quality=[90,98]'")
    args = ap.parse_args(argv)
    ranges = args.camera_noise
    if not args.data:
        ap.error("--data is required (or set MALLECONV_DATA)")
    root = Path(args.data)
    print("| CC15 photo | " + " | ".join(STATS) + " |")
    print("| --- |" + " --- |" * len(STATS))
    for scene, noisy_path, clean_path in find_pairs(root / "real" / "CC15"):
        values = noise_stats(read_image(noisy_path).pixels, read_image(clean_path).pixels)
        print(f"| {scene} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    files = [f for f, _ in list_images([root / "train" / "OpenPhotos"])][-args.holdout :]
    rows = []
    for i, file in enumerate(files):
        clean = read_image(file).pixels[:512, :512, :3]
        x = torch.from_numpy(clean.astype(np.float32) / 255).permute(2, 0, 1)[None]
        for draw in range(args.draws):
            noisy = add_camera_noise(x, torch.Generator().manual_seed(10 * i + draw), ranges)
            rows.append(noise_stats(noisy[0].permute(1, 2, 0).numpy() * 255, clean))
    p = np.percentile(np.array(rows), [10, 50, 90], axis=0)
    print(f"\nsynthetic, {len(rows)} draws: 10th / 50th / 90th percentiles")
    for j, name in enumerate(STATS):
        print(f"{name}: " + " / ".join(f"{v:.2f}" for v in p[:, j]))

    pairs = find_pairs(root / "real" / "CC15")
    sets = {
        "CC15 noisy": [n for _, n, _ in pairs],
        "CC15 references": [c for _, _, c in pairs],
        "Kodak24": [f for f, _ in list_images([root / "test" / "Kodak24"])],
        "McMaster": [f for f, _ in list_images([root / "test" / "McMaster"])],
        "CBSD432 (training)": [f for f, _ in list_images([root / "train" / "CBSD432"])],
        "OpenPhotos (training)": [f for f, _ in list_images([root / "train" / "OpenPhotos"])],
        "held-out OpenPhotos": files,
    }
    loaders = {
        name: [lambda p=p: read_image(p).pixels for p in paths] for name, paths in sets.items()
    }
    for sigma in ranges.optics_sigma:
        name = f"held-out OpenPhotos softened, sigma {sigma:g}"
        loaders[name] = [lambda p=p, s=sigma: _softened(p, s) for p in files]
    print(
        "\n| set | images | floor, full resolution | floor, half resolution | scene 1 px / 2 px |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, load in loaders.items():
        f = []
        for get in load:
            pixels = get()
            f.append([*noise_floor(pixels), scene_sharpness(pixels)])
        f = np.array(f)
        cells = [
            f"{np.median(f[:, k]):.2f} ({f[:, k].min():.2f}-{f[:, k].max():.2f})" for k in (0, 1, 2)
        ]
        print(f"| {name} | {len(load)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
