"""``malleconv train``: train a denoiser from a YAML config."""

from __future__ import annotations

import argparse
import os


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a denoiser",
        description="Train a denoiser. Overrides: --set section.key=value (YAML values), "
        "e.g. --set train.steps=2000 --set data.batch_size=8.",
    )
    p.add_argument("--config", help="YAML config (configs/*.yaml); defaults apply to missing keys")
    p.add_argument(
        "--data",
        default=None,
        nargs="+",
        help="folder(s) of training images (default: $MALLECONV_DATA/train/CBSD432)",
    )
    p.add_argument("--val", default=None, help="folder of validation images")
    p.add_argument("--out", help="run folder (checkpoints, metrics, weights); required to train")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="continue from OUT/checkpoints/last.pt (or a given checkpoint)",
    )
    p.add_argument(
        "--init",
        default=None,
        metavar="WEIGHTS",
        help="warm-start from exported weights (a .safetensors path or a shipped model name)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="measure training pixels/s for a few steps instead of training",
    )
    p.add_argument(
        "--export-only",
        nargs="?",
        const="",
        default=None,
        metavar="WEIGHTS",
        help="do not train: write the weights of the run's checkpoint (the one --resume names, "
        "else OUT/checkpoints/last.pt) to WEIGHTS (default OUT/NAME-stepN.safetensors)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training import load_config, train

    cfg = load_config(args.config, args.overrides)
    data = args.data
    if data is None:
        root = os.environ.get("MALLECONV_DATA")
        if not root:
            raise ValueError("--data is required (or set MALLECONV_DATA)")
        data = os.path.join(root, "train", "CBSD432")
    if args.profile:
        from ..training.profile import profile_training

        profile_training(cfg, data)
        return 0
    if not args.out:
        raise ValueError("--out is required to train (the run folder)")
    if args.export_only is not None:
        from ..training import export_checkpoint

        checkpoint = args.resume if args.resume not in (None, "auto") else None
        path, step = export_checkpoint(cfg, data, args.out, checkpoint, args.export_only or None)
        print(f"step {step}: weights {path}")
        return 0
    trainer = train(
        cfg,
        data,
        args.out,
        val=args.val,
        resume=args.resume,
        progress=not args.no_progress,
        init=args.init,
    )
    print(f"step {trainer.step}: weights {trainer.out / (cfg['model']['name'] + '.safetensors')}")
    return 0
