"""``malleconv demo``: denoise the bundled sample photo and show the result."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def sample_path() -> Path:
    """The bundled clean sample (a 256x256 crop of Kodak image 23, unrestricted use)."""
    return Path(__file__).resolve().parent.parent / "assets" / "sample.png"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="denoise the bundled sample image (noisy, result, comparison)")
    p.add_argument("--out", default="out", help="output folder (default: out)")
    p.add_argument("--sigma", type=float, default=25.0, help="noise level to add (default 25)")
    p.add_argument("--model", default="mallenet-s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace earlier demo outputs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..data.noise import check_sigma
    from ..evaluation.metrics import psnr
    from ..inference import denoise
    from ..io import from_float, read_image, write_image

    try:
        check_sigma(args.sigma)
    except ValueError as err:
        raise ValueError(f"--sigma: {err}") from None
    out = Path(args.out)
    names = ("sample_noisy.png", "sample_denoised.png", "sample_comparison.png")
    existing = [str(out / n) for n in names if (out / n).exists()]
    if existing and not args.overwrite:  # all three or none: never a mix of two runs
        raise FileExistsError(f"{', '.join(existing)} exist(s): pass --overwrite to replace")
    clean8 = read_image(sample_path()).pixels
    clean = clean8.astype(np.float32) / 255
    gen = torch.Generator().manual_seed(args.seed)
    noise = torch.randn(clean.shape, generator=gen).numpy() * (args.sigma / 255)
    noisy = clean + noise  # not clipped: the model sees the true noisy values
    start = time.perf_counter()
    result = denoise(noisy, sigma=args.sigma, model=args.model)
    seconds = time.perf_counter() - start
    noisy8, result8 = from_float(noisy), from_float(result)
    side = np.concatenate([noisy8, result8, clean8], axis=1)
    ow = args.overwrite
    write_image(out / "sample_noisy.png", noisy8, overwrite=ow)
    write_image(out / "sample_denoised.png", result8, overwrite=ow)
    write_image(out / "sample_comparison.png", side, overwrite=ow)
    print(f"sample: {clean8.shape[1]}x{clean8.shape[0]}, Gaussian noise sigma={args.sigma:g}")
    print(f"PSNR noisy    {psnr(noisy8, clean8):6.2f} dB")
    print(f"PSNR denoised {psnr(result8, clean8):6.2f} dB  ({args.model}, {seconds:.2f} s)")
    print(f"wrote {out / 'sample_comparison.png'} (noisy | denoised | clean)")
    return 0
