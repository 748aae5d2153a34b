"""``malleconv info``: versions, threads, device, and model statistics."""

from __future__ import annotations

import argparse
import platform


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions, threads, device (and model statistics)")
    p.add_argument("--model", help="also print parameters and FLOPs of this model name or path")
    p.add_argument("--size", type=int, default=256, help="image side for FLOPs (default 256)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import __version__

    print(f"malleconv  {__version__}")
    print(f"torch      {torch.__version__}")
    print(f"python     {platform.python_version()}")
    print(f"threads    {torch.get_num_threads()}")
    print(f"cpu        {torch.backends.cpu.get_cpu_capability()}")
    cuda = torch.cuda.is_available()
    print(f"device     {'cuda: ' + torch.cuda.get_device_name(0) if cuda else 'cpu'}")
    print(f"backends   {', '.join(_backends())}")
    if args.model:
        from ..models import load_model, model_stats

        model = load_model(args.model, pretrained=False)
        if args.size < 1:
            raise ValueError(f"--size must be at least 1, got {args.size}")
        stats = model_stats(model, args.size)
        print(f"model      {args.model}")
        print(f"params     {stats['params']:,}")
        print(f"GFLOPs     {stats['gflops']:.2f} at {args.size}x{args.size}")
    return 0


def _backends() -> list[str]:
    """The backends ``--backend`` can run here, with their runtime's version."""
    import importlib.metadata

    found = ["torch"]
    for backend, package in (("onnxruntime", "onnxruntime"), ("openvino", "openvino")):
        try:
            found.append(f"{backend} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return found
