"""``malleconv eval``: the standard synthetic-noise protocol on test-set folders."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from ..data.noise import check_strength, parse_sigma
from ..models.precision import PRECISIONS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a denoiser with the standard synthetic-noise protocol",
        description="AWGN with std sigma/255 seeded per image name and sigma, noisy input not "
        "clipped, output clipped and rounded to 8 bits, PSNR/SSIM on all channels, no crop.",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--model",
        default=None,
        help="model name or .safetensors path (default: as malleconv denoise picks it, "
        "the automatic mode 'auto' when the level is not told (--auto, --real with auto): "
        "mallenet-s for white noise, mallenet-s-real for other noise; else mallenet-s)",
    )
    what.add_argument(
        "--method",
        choices=["bm3d", "nlm"],
        help="a classical baseline instead of a model (optional extras)",
    )
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="DIR",
        help="test-set folders; a bare name such as CBSD68 is looked up in $MALLECONV_DATA/test/",
    )
    p.add_argument(
        "--sigma",
        nargs="+",
        default=None,
        help="noise levels in 8-bit units (default 15 25 50); with --real, the levels the "
        "denoiser is told, or 'auto' for the per-image estimate (default auto)",
    )
    p.add_argument(
        "--real",
        action="store_true",
        help="the folders hold real noisy photos and clean references, SCENE_real.* and "
        "SCENE_mean.* (CC15); bare names are also looked up in $MALLECONV_DATA/real/",
    )
    p.add_argument(
        "--auto",
        action="store_true",
        help="add the noise of each --sigma but do not tell the denoiser: it finds the "
        "level itself, as malleconv denoise does by default (--sigma 0: clean inputs)",
    )
    p.add_argument(
        "--strength",
        type=float,
        default=1.0,
        metavar="K",
        help="multiply the noise level the model is given or finds by K, as malleconv "
        "denoise --strength does (default 1)",
    )
    p.add_argument("--gray", action="store_true", help="evaluate on luminance (gray models)")
    p.add_argument("--out", default=None, help="folder for per_image.csv and summary.json")
    p.add_argument("--save-images", default=None, metavar="DIR", help="write the outputs")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run's results in --out and images in --save-images",
    )
    p.add_argument("--tile", type=int, default=None, help="denoise tile by tile")
    p.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average the model over 8 flips/rotations of each image (8x slower)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="run the model's convolutions in bfloat16 (autocast), as denoise --precision",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _resolve_dir(name: str) -> Path:
    p = Path(name)
    if p.is_dir():
        return p
    root = os.environ.get("MALLECONV_DATA")
    for kind in ("test", "real"):
        if root and (Path(root) / kind / name).is_dir():
            return Path(root) / kind / name
    raise FileNotFoundError(f"test-set folder not found: {name}")


def _parse_sigmas(values: list[str] | None, real: bool) -> list:
    """``--sigma`` values: floats in [0, 75], and 'auto' with --real only."""
    if values is None:
        return ["auto"] if real else [15.0, 25.0, 50.0]
    out = []
    for v in values:
        try:
            value = parse_sigma(v)
        except ValueError as err:
            raise ValueError(f"--sigma: {err}") from None
        if value is None:
            if not real:
                raise ValueError("--sigma auto needs --real (synthetic noise has a known sigma)")
            out.append("auto")
        else:
            out.append(value)
    return out


class _ModelDenoiser:
    """``(noisy (1, C, H, W), sigma or None) -> denoised (1, C, H, W)`` for a model run as
    :func:`~malleconv.inference.denoise` runs it (:func:`~malleconv.inference.prepare_model`).

    ``None`` lets a blind model estimate its noise-level map and gives other models
    :func:`~malleconv.inference.estimate_sigma`. Attributes: ``model``, the prepared model
    for a given level; ``auto``, the same for a level to be found; ``last_sigma``, the
    level used last (the mean of the map for a blind model).
    """

    def __init__(
        self,
        model,
        device="cpu",
        tile: int | None = None,
        *,
        self_ensemble: bool = False,
        precision: str = "float32",
        strength: float = 1.0,
    ):
        from ..inference import prepare_model

        options = dict(self_ensemble=self_ensemble, precision=precision)
        # Both wrap the same loaded model (prepare_model caches it by name / path).
        self.model = prepare_model(model, device, **options)
        self.auto = prepare_model(model, device, auto=True, strength=strength, **options)
        self.strength = strength
        self.tile = tile
        self.last_sigma: float | None = None

    def __call__(self, noisy, sigma):
        from ..inference import AutoDenoiser, denoise_tensor, estimate_sigma, estimated_levels

        net, levels = self.model, None
        if sigma is not None:
            sigma = float(sigma) * self.strength
        else:
            net = self.auto
            if isinstance(net, AutoDenoiser):  # the automatic mode: one model per image
                route = net.route(noisy)
                if route.sigma is not None:
                    sigma = net.white_level(route)
                net = route.model
            levels = estimated_levels(net)
            if levels is not None:
                sigma = 0.0  # the model finds its own level
                levels.clear()
            elif sigma is None:
                net, sigma = self.model, estimate_sigma(noisy) * self.strength
        out = denoise_tensor(net, noisy, float(sigma), tile=self.tile)
        self.last_sigma = float(np.mean(levels)) if levels else float(sigma)
        return out


def model_denoiser(
    model,
    device="cpu",
    tile: int | None = None,
    *,
    self_ensemble=False,
    precision="float32",
    strength: float = 1.0,
) -> _ModelDenoiser:
    """``(noisy (1, C, H, W), sigma or None) -> denoised`` for a model name, weights path or
    module, prepared as :func:`~malleconv.inference.denoise` prepares it (see
    :class:`_ModelDenoiser`); ``strength`` multiplies the level given or found."""
    return _ModelDenoiser(
        model, device, tile, self_ensemble=self_ensemble, precision=precision, strength=strength
    )


def _check_earlier_results(args: argparse.Namespace) -> None:
    """Refuse, before any work, to replace an earlier run's results or images unless
    ``--overwrite``."""
    if args.overwrite:
        return
    if args.out:
        for name in ("per_image.csv", "summary.json"):
            if (Path(args.out) / name).exists():
                raise FileExistsError(f"{Path(args.out) / name} exists: pass --overwrite to "
                                      "replace an earlier run's results, or give another --out")
    if args.save_images and Path(args.save_images).is_dir() and any(
        Path(args.save_images).iterdir()
    ):
        raise FileExistsError(f"{args.save_images} already holds images: pass --overwrite to "
                              "replace them, or give another --save-images")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..evaluation import classical_denoiser, evaluate, format_table

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    dirs = [_resolve_dir(d) for d in args.data]
    args.sigma = _parse_sigmas(args.sigma, args.real)
    _check_earlier_results(args)
    if args.method:
        if args.self_ensemble:
            raise ValueError("--self-ensemble applies to models, not to --method")
        if args.precision != "float32":
            raise ValueError("--precision applies to models, not to --method")
        if args.strength != 1.0:
            raise ValueError("--strength applies to models, not to --method")
        try:
            denoiser = classical_denoiser(args.method)
        except ImportError as err:  # an optional package (bm3d, scikit-image) not installed
            raise ValueError(f"--method {args.method}: {err}") from None
        label = args.method
    else:
        from ..inference import default_model, model_channels

        not_told = args.auto or (args.real and "auto" in args.sigma)
        label = args.model or default_model(auto=not_told)
        denoiser = model_denoiser(
            label,
            args.device,
            args.tile,
            self_ensemble=args.self_ensemble,
            precision=args.precision,
            strength=check_strength(args.strength),
        )
        if args.strength != 1.0:
            label += f", strength {args.strength:g}"
        if model_channels(denoiser.model) == 1 and not args.gray:
            args.gray = True
        if args.gray and model_channels(denoiser.model) == 3:
            raise ValueError(f"--gray scores gray images, but {label} is a colour model: "
                             "give a gray one (mallenet-s-gray) or leave out --gray")
        if args.self_ensemble:
            label += " x8 self-ensemble"
        if args.precision != "float32":
            label += f" ({args.precision})"
    if args.real:
        from ..evaluation.real import evaluate_real, format_real_table

        evaluate_fn, format_fn = evaluate_real, format_real_table
    else:
        evaluate_fn, format_fn = evaluate, format_table
    options = {}
    if args.auto:
        if args.real:
            raise ValueError("--auto is for synthetic noise; with --real use --sigma auto")
        options["tell_sigma"] = False
        label += ", level not told"
    summary = evaluate_fn(
        denoiser,
        dirs,
        args.sigma,
        gray=args.gray,
        out_dir=args.out,
        save_images=args.save_images,
        progress=not args.no_progress,
        **options,
    )
    print(f"{label} ({'gray' if args.gray else 'color'}), PSNR dB / SSIM")
    print(format_fn(summary))
    for dataset, per_sigma in summary.items():
        timed = [v for v in per_sigma.values() if "seconds_per_image" in v]  # not --real's input
        secs = [v["seconds_per_image"] for v in timed]
        print(f"{dataset}: {timed[0]['images']} images, {sum(secs) / len(secs):.3f} s per image")
    return 0
