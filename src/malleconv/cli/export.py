"""``malleconv export``: write a model as an ONNX graph."""

from __future__ import annotations

import argparse

_EPILOG = """\
White-noise models (mallenet-s, mallenet-s-gray) take inputs noisy [N, C, H, W] in [0, 1],
sigma [N] (8-bit units) and strength [1], and give denoised [N, C, H, W]; the blind model
(mallenet-s-real) estimates its level map inside the graph and takes noisy [N, 3, H, W],
strength [1], max_level and min_level [N] (+inf and 0: no cap, no bound), giving denoised
and level [N, 1, H, W].
Batch, height and width are dynamic. The automatic mode's choice between the two stays
outside the graphs (docs/design.md, the ONNX export). The file's metadata holds the model
card's facts (name, version, training data, sigma units, inputs).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a model as an ONNX graph",
        description="Export a model to ONNX (needs the extra: pip install 'malleconv[onnx]').",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="NAME_OR_PATH",
        help="registered model name (mallenet-s, mallenet-s-real, mallenet-s-gray) or "
        ".safetensors path",
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="the file to write")
    p.add_argument(
        "--target",
        choices=("cpu", "web", "openvino"),
        default="cpu",
        help="what the graph is tuned for: cpu, ONNX Runtime's CPU provider (default); web, "
        "onnxruntime-web (the page); openvino, OpenVINO. Only PReLU is written differently; "
        "same results to float rounding (docs/design.md, the ONNX export)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..models.export import export_onnx

    out = Path(args.output)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"--output must end in .onnx, got {out}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists (use --overwrite to replace it)")
    try:
        path = export_onnx(args.model, out, target=args.target)
    except ImportError as err:
        raise ValueError(str(err)) from None
    except TypeError as err:
        raise ValueError(f"--model {args.model}: {err}") from None
    print(f"{args.model} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
