"""``malleconv denoise``: denoise image files and folders."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from ..inference.prepare import BACKENDS, DEFAULT_BACKEND
from ..inference.tiling import COMMAND_OVERLAP, COMMAND_TILE
from ..models.precision import PRECISIONS

_EPILOG = """\
OUTPUT is a file when there is exactly one input file and OUTPUT has an image extension;
otherwise it is a folder (created if missing) receiving
OUTPUT/<relative folder>/<name><suffix><ext>.
Bit depth (16-bit PNG/TIFF), ICC profiles and alpha are kept. Existing outputs are not
replaced without --overwrite. Exit status: 0 all done, 1 some files failed or were skipped,
2 usage error (bad sigma, missing model, no input).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "denoise",
        help="denoise image files or folders",
        description="Denoise images with a MalleNet model.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or globs")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="output file or folder")
    p.add_argument(
        "--sigma",
        default="auto",
        help="'auto' (default): find the noise level of each image, camera noise included; "
        "or a number 0-75: white Gaussian noise of that std in 8-bit units",
    )
    p.add_argument(
        "--strength",
        type=float,
        default=1.0,
        metavar="K",
        help="multiply the noise level (estimated or given) by K: below 1 keeps more grain "
        "and detail, above 1 removes more (default 1)",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="NAME_OR_PATH",
        help="registered model name or .safetensors path (default: 'auto' with --sigma "
        "auto, which reads each image and sends white noise to mallenet-s and camera noise "
        "to mallenet-s-real; mallenet-s with a given sigma; shipped models and their "
        "measured quality and speed: docs/models.md)",
    )
    p.add_argument(
        "--tile",
        type=int,
        default=COMMAND_TILE,
        metavar="N",
        help="process images larger than this in overlapping tiles of this side, bounding "
        f"memory (default {COMMAND_TILE}, as the page; 0 = whole images; why that size: "
        "docs/design.md, tile size)",
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=COMMAND_OVERLAP,
        metavar="N",
        help=f"tile overlap (default {COMMAND_OVERLAP})",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--suffix", default="_denoised", help="added to output file names (default _denoised)"
    )
    p.add_argument("--recursive", action="store_true", help="search subfolders of folders")
    p.add_argument(
        "--format",
        choices=("same", "png"),
        default="same",
        help="output format for folder outputs: same as the input (default) or png",
    )
    p.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average the model over 8 flips/rotations: 8x slower, slightly better",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="bfloat16 runs the convolutions in bfloat16: faster on CPUs with hardware "
        "bfloat16 (AVX-512 BF16, AMX), slower on others (default float32; measured cost "
        "and speed: docs/models.md)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default=DEFAULT_BACKEND,
        help="torch (default), onnxruntime or openvino: run the model's exported ONNX graph "
        "in ONNX Runtime or OpenVINO on the CPU (extras: pip install 'malleconv[onnx]' or "
        "'malleconv[openvino]'; openvino also runs --precision bfloat16; speed: "
        "docs/benchmarks/onnx_speed.md)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _collect(inputs: list[str], recursive: bool) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Images of all inputs, and error messages for the inputs that could not be expanded."""
    from ..io import list_images

    found: list[tuple[Path, Path]] = []
    errors: list[str] = []
    seen: set[Path] = set()
    for item in inputs:
        try:
            pairs = list_images([item], recursive=recursive)
        except (FileNotFoundError, ValueError) as err:
            errors.append(str(err))
            continue
        for file, rel in pairs:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                found.append((file, rel))
    return found, errors


def _plan(args, pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """``(input, output)`` for every input image."""
    from ..io import IMAGE_EXTENSIONS

    out = Path(args.output)
    is_file_target = out.suffix.lower() in IMAGE_EXTENSIONS and not out.is_dir()
    if is_file_target:
        if len(args.inputs) == 1 and len(pairs) == 1 and Path(args.inputs[0]).is_file():
            return [(pairs[0][0], out)]
        raise ValueError(
            f"OUTPUT {out} looks like an image file, but the inputs give {len(pairs)} images "
            "(or a folder / pattern): give an output folder"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"OUTPUT {out} exists and is not a folder")
    plan = []
    for file, rel in pairs:
        ext = ".png" if args.format == "png" else file.suffix
        plan.append((file, out / rel.parent / f"{rel.stem}{args.suffix}{ext}"))
    return plan


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``b`` exists and is the file ``a``: the same path, a path through a linked
    folder, or a hard link."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# White-noise estimates (models without a noise-level estimator of their own) below this
# get a hint after the summary: white noise that weak is rare in practice, so a low reading
# more likely means correlated camera noise that the wavelet estimator cannot see.
LOW_AUTO_SIGMA = 3.0


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..data.noise import check_strength, parse_sigma
    from ..inference import default_model, denoise, prepare_model
    from ..io import ImageReadError, read_image, write_image
    from ..models.precision import native_bf16

    fixed_sigma = parse_sigma(args.sigma)
    try:
        strength = check_strength(args.strength)
    except ValueError as err:
        raise ValueError(f"--strength: {err}") from None
    if args.tile < 0:
        raise ValueError(f"--tile must be 0 (no tiling) or at least 16, got {args.tile}")
    tile = args.tile or None
    if tile is not None and tile < 16:
        raise ValueError(f"--tile must be 0 (no tiling) or at least 16, got {args.tile}")
    if tile is not None and not 0 <= args.tile_overlap <= tile // 2:
        raise ValueError(f"--tile-overlap must be in [0, {tile // 2}], got {args.tile_overlap}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise ValueError(f"--device {args.device!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available")

    start = time.perf_counter()
    pairs, input_errors = _collect(args.inputs, args.recursive)
    for msg in input_errors:
        print(f"malleconv denoise: error: {msg}", file=sys.stderr)
    if not pairs:
        raise FileNotFoundError("no input image found")
    plan = _plan(args, pairs)
    # Loaded once, before the first image, so that a missing model fails fast; denoise()
    # gets it by name from the cache and adds the wrappers each image needs (automatic
    # level or choice of model, self-ensemble, precision).
    model = args.model or default_model(auto=fixed_sigma is None)
    try:
        prepare_model(
            model,
            device,
            auto=fixed_sigma is None,
            precision=args.precision,
            backend=args.backend,
        )
    except ImportError as err:  # an ONNX backend without its extra
        raise ValueError(f"--backend {args.backend}: {err}") from None
    if args.precision == "bfloat16" and not native_bf16(device):
        effect = (
            "OpenVINO runs float32 on it"
            if args.backend == "openvino"
            else "--precision bfloat16 may be slower than float32"
        )
        print(
            f"malleconv denoise: warning: {device} has no hardware bfloat16; {effect}",
            file=sys.stderr,
        )

    show = not args.no_progress
    done = failed = skipped = low_auto = 0
    failed += len(input_errors)
    claimed: dict[Path, Path] = {}
    bar = tqdm(plan, desc="denoise", unit="img", file=sys.stderr, disable=not show)

    def report(src: Path, msg: str, kind: str = "error") -> None:
        # Messages of read_image already start with the file name.
        text = msg if str(src) in msg else f"{src}: {msg}"
        tqdm.write(f"malleconv denoise: {kind}: {text}", file=sys.stderr)

    relayed: set[str] = set()
    for src, dst in bar:
        # realpath: a folder reached through a symbolic link is the same folder.
        key = Path(os.path.realpath(dst))
        if key in claimed:
            report(src, f"output {dst} is also the output of {claimed[key]}")
            failed += 1
            continue
        claimed[key] = src
        if _same_file(src, dst):
            report(src, "refusing to write the output onto the input file")
            failed += 1
            continue
        if dst.exists() and not args.overwrite:
            report(src, f"output {dst} exists (use --overwrite to replace it)", "skipped")
            skipped += 1
            continue
        tiles_bar = None

        def progress(n: int, total: int) -> None:
            nonlocal tiles_bar
            if total <= 1 or not show:
                return
            if tiles_bar is None:
                tiles_bar = tqdm(
                    total=total, desc="tiles", unit="tile", leave=False, file=sys.stderr
                )
            tiles_bar.update(n - tiles_bar.n)

        # Reading and writing warn with the file's name (frames dropped, alpha a format
        # cannot keep): relayed as the command's own warnings, each text once.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                img = read_image(src)
                decided: dict = {}
                pixels = denoise(
                    img.pixels,
                    sigma=fixed_sigma,
                    model=model,
                    device=device,
                    strength=strength,
                    report=decided,
                    tile=tile,
                    overlap=args.tile_overlap,
                    self_ensemble=args.self_ensemble,
                    precision=args.precision,
                    progress=progress,
                    backend=args.backend,
                )
                write_image(dst, pixels, icc_profile=img.icc_profile, overwrite=args.overwrite)
            except (ImageReadError, ValueError, TypeError, OSError, RuntimeError,
                    MemoryError) as err:
                report(src, str(err))
                failed += 1
                continue
            finally:
                if tiles_bar is not None:
                    tiles_bar.close()
                for w in caught:
                    if str(w.message) not in relayed:
                        relayed.add(str(w.message))
                        report(src, str(w.message), "warning")
        done += 1
        sigma, how = decided["sigma"], decided["how"]
        if how == "estimated" and "noise" not in decided and sigma < LOW_AUTO_SIGMA:
            low_auto += 1
        what = {"estimated map": "mean of the estimated noise-level map"}.get(how, how)
        if "noise" in decided:  # the automatic mode's choice
            what = (
                f"{decided['noise']}: {decided['model']}, {what}, noise floor "
                f"{decided['floor']:.2f} (level at most {decided['cap']:.2f}"
                + (f", at least {decided['bound']:.2f}" if "bound" in decided else "")
                + ")"
                + ("; low band from a half-resolution pass" if "half_pass" in decided else "")
            )
        extra = f", strength {strength:g}" if strength != 1.0 else ""
        tqdm.write(f"{src} -> {dst} (sigma {sigma:.2f}, {what}{extra})", file=sys.stdout)
    bar.close()

    seconds = time.perf_counter() - start
    print(f"done {done}, failed {failed}, skipped {skipped} in {seconds:.1f} s")
    if low_auto:
        print(
            f"malleconv denoise: note: --sigma auto read below {LOW_AUTO_SIGMA:g} on "
            f"{low_auto} image(s), so they were barely changed. This model's estimate "
            "measures white noise, and camera noise reads low: leave out --model (the "
            "automatic mode sends camera noise to mallenet-s-real), or pass a level "
            "(docs/models.md, Real camera noise).",
            file=sys.stderr,
        )
    return 1 if failed or skipped else 0
