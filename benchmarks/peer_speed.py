"""Speed and memory of mallenet-s against the networks of the published colour tables.

    pip install -e ".[peers]" && pip install --no-deps spandrel spandrel_extra_arches
    python benchmarks/peer_speed.py [--size 256] [--repeat 3] [--threads N] [--device cuda]
        [--models mallenet-s mallenet-l dncnn-c drunet swinir restormer nafnet scunet]
        [--out docs/benchmarks]

The paper's headline is speed at a given quality ("8.9x faster than SwinIR"); this measures
the speed half on the machine at hand. Each network runs in a fresh subprocess (so its peak
memory is its own), batch 1, float32, ``torch.inference_mode``, on one ``size x size``
colour image, one after the other in a single command so the ratios are side by side.
Weights are random: time does not depend on their values. The peer architectures come from
spandrel (installed with ``--no-deps``: its other dependency, torchvision, is a multi-GB
CUDA build and is only used by two architectures not timed here):

* ``dncnn-c``: this package's DnCNN (CDnCNN-B: 20 layers, 64 channels), BatchNorm folded.
* ``drunet``: DRUNet, colour (4 input channels: RGB + noise-level map), the published
  configuration (64/128/256/512 channels, 4 residual blocks per level).
* ``swinir``: SwinIR colour denoising, the published configuration (6 RSTB x 6 layers,
  embedding 180, window 8, MLP ratio 2).
* ``restormer``: Restormer, its Gaussian colour denoising configuration (48 channels,
  4/6/6/8 blocks, 4 refinement blocks, bias-free LayerNorm), from spandrel_extra_arches.
* ``nafnet``: NAFNet-width64, its SIDD real-noise configuration (2/2/4/8 encoder blocks,
  12 middle, 2/2/2/2 decoder).
* ``scunet``: SCUNet, its colour denoising configuration (7 stages of 4 blocks, 64 channels).
* ``mallenet-s`` / ``-m`` / ``-w`` / ``-l`` / ``-paper``: as ``malleconv denoise`` runs them
  (BatchNorm folded, channels-last). ``mallenet-l`` has the paper's widths.

Every process uses ``malleconv.runtime.tune_allocator`` (freed memory is reused), as the
``malleconv`` command does.

Writes ``peer_speed.md`` / ``.json``: seconds per image (median of ``--repeat`` after a
warm-up), conv + matmul GFLOPs (``torch.utils.flop_counter``), parameters, and the peak
resident memory of the subprocess, and how much of it the forward pass added (peak less the
resident memory once Python, torch and the model were loaded); a ``--size`` other than 256
adds ``_SIZE`` to the names. With ``--device cuda`` they are ``peer_speed_cuda*``, timed
with the GPU synchronised around each forward, and the memory column is the peak GPU memory
the forward pass allocated.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types

import torch

from malleconv.runtime import command_line, cpu_name, write_report

PEERS = ("dncnn-c", "drunet", "swinir", "restormer", "nafnet", "scunet")
OURS = ("mallenet-s", "mallenet-m", "mallenet-l", "mallenet-paper")


def _import_spandrel_arch(name: str, package: str = "spandrel"):
    """Import one spandrel architecture class without torchvision.

    ``package`` is ``spandrel`` or ``spandrel_extra_arches`` (Restormer lives there).

    ``import spandrel`` builds its registry, which imports every architecture; two of them
    (LaMa, RestoreFormer) import torchvision at module level. Neither is timed here, so a
    placeholder module that fails loudly if used stands in for it.
    """
    if "torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except ImportError:

            def _unavailable(*args, **kwargs):
                raise RuntimeError("torchvision is not installed")

            fn = types.ModuleType("torchvision.transforms.functional")
            fn.InterpolationMode = None
            fn.rotate = fn.normalize = _unavailable
            tv = types.ModuleType("torchvision")
            tv.transforms = types.ModuleType("torchvision.transforms")
            tv.transforms.functional = fn
            sys.modules.update(
                {
                    "torchvision": tv,
                    "torchvision.transforms": tv.transforms,
                    "torchvision.transforms.functional": fn,
                }
            )
    try:
        module = importlib.import_module(f"{package}.architectures.{name}")
    except ImportError as e:
        raise SystemExit(
            f"peer model {name!r} needs {package}: pip install -e '.[peers]' && "
            f"pip install --no-deps spandrel spandrel_extra_arches ({e})"
        ) from e
    return getattr(module, name)


def build(name: str):
    """``(model, forward(x) -> y, input_channels)`` for a model name, in eval mode."""
    from malleconv.inference import prepare_model
    from malleconv.models import create_model, fuse_batchnorm

    sigma = 25.0
    if name in OURS or name == "dncnn-c":
        # Ours exactly as malleconv denoise runs them; dncnn-c is timed as a peer
        # (module docstring), BatchNorm folded.
        if name in OURS:
            model = prepare_model(name, pretrained=False)
        else:
            model = fuse_batchnorm(create_model(name))
        return model, (lambda x: model(x, sigma)), 3
    if name == "drunet":
        cls = _import_spandrel_arch("DRUNet")
        model = cls(in_nc=4, out_nc=3, nc=[64, 128, 256, 512], nb=4, act_mode="R")
        level = sigma / 255.0

        def forward(x):
            noise_map = torch.full_like(x[:, :1], level)
            return model(torch.cat([x, noise_map], 1))

        return model.eval(), forward, 3
    if name == "swinir":
        cls = _import_spandrel_arch("SwinIR")
        model = cls(
            upscale=1,
            in_chans=3,
            img_size=128,
            window_size=8,
            img_range=1.0,
            depths=[6] * 6,
            embed_dim=180,
            num_heads=[6] * 6,
            mlp_ratio=2,
            upsampler="",
            resi_connection="1conv",
        )
        return model.eval(), model, 3
    if name == "restormer":
        # Restormer's Gaussian colour denoising configuration (bias-free LayerNorm).
        cls = _import_spandrel_arch("Restormer", "spandrel_extra_arches")
        model = cls(
            inp_channels=3,
            out_channels=3,
            dim=48,
            num_blocks=[4, 6, 6, 8],
            num_refinement_blocks=4,
            heads=[1, 2, 4, 8],
            ffn_expansion_factor=2.66,
            bias=False,
            LayerNorm_type="BiasFree",
        )
        return model.eval(), model, 3
    if name == "nafnet":
        # NAFNet-width64, its SIDD (real noise) denoising configuration.
        cls = _import_spandrel_arch("NAFNet")
        model = cls(
            img_channel=3,
            width=64,
            middle_blk_num=12,
            enc_blk_nums=[2, 2, 4, 8],
            dec_blk_nums=[2, 2, 2, 2],
        )
        return model.eval(), model, 3
    if name == "scunet":
        # SCUNet's colour denoising configuration (7 stages of 4 blocks, 64 channels).
        cls = _import_spandrel_arch("SCUNet")
        model = cls(in_nc=3, config=[4, 4, 4, 4, 4, 4, 4], dim=64)
        return model.eval(), model, 3
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(OURS + PEERS)}")


def measure(name: str, size: int, repeat: int, threads: int, device: str = "cpu") -> dict:
    """Time one model in this process: the worker side of :func:`main`."""
    from torch.utils.flop_counter import FlopCounterMode

    from malleconv.runtime import tune_allocator

    # Every network gets the allocator setting the malleconv command uses: without it,
    # page faults on fresh feature maps cost about as much system time as the compute.
    tune_allocator()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, forward, channels = build(name)
    cuda = device == "cuda"
    if cuda:  # plain float32 for every network: no TF32 in convolutions or matmuls
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    model.to(device)
    # Python, torch and the weights: subtracted to give the memory the forward pass needs.
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    x = torch.rand(1, channels, size, size, device=device)
    if name in OURS:
        x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            forward(x)
        if cuda:
            sync()
            base_gpu = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        runs = []
        for i in range(repeat + 1):
            sync()
            t = time.perf_counter()
            y = forward(x)
            sync()
            if i:  # the first run is the warm-up
                runs.append(time.perf_counter() - t)
    assert y.shape == (1, 3, size, size), (name, tuple(y.shape))
    row = {
        "model": name,
        "seconds": statistics.median(runs),
        "gflops": counter.get_total_flops() / 1e9,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "base_rss_mb": base_rss,
    }
    # What the forward pass itself needed: GPU memory on a GPU, resident memory on a CPU.
    row["forward_mb"] = row["peak_rss_mb"] - base_rss
    if cuda:
        row["gpu_name"] = torch.cuda.get_device_name()
        row["forward_gpu_mb"] = row["forward_mb"] = (
            torch.cuda.max_memory_allocated() - base_gpu
        ) / 2**20
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--models", nargs="+", default=["mallenet-s", "mallenet-l", *PEERS], choices=OURS + PEERS
    )
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default="docs/benchmarks")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available")
    if args.size < 8 or args.size % 8:
        ap.error(f"--size must be a positive multiple of 8 (DRUNet's levels), got {args.size}")
    if args.repeat < 1:
        ap.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.worker:
        print(json.dumps(measure(args.worker, args.size, args.repeat, args.threads, args.device)))
        return 0
    cuda = args.device == "cuda"
    rows = []
    for name in args.models:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            name,
            "--size",
            str(args.size),
            "--repeat",
            str(args.repeat),
            "--threads",
            str(args.threads),
            "--device",
            args.device,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stderr)
            print(f"{name}: failed (exit {done.returncode})", file=sys.stderr)
            return done.returncode
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        memory = (
            f"{row['forward_mb']:.0f} MB of GPU memory in the forward pass"
            if cuda
            else f"peak RSS {row['peak_rss_mb']:.0f} MB (+{row['forward_mb']:.0f} MB in the "
            "forward pass)"
        )
        print(
            f"{name:11s} {row['seconds']:8.4f} s  {row['gflops']:8.1f} GFLOPs  "
            f"{row['params_m']:6.2f} M params  {memory}",
            flush=True,
        )
    meta = {
        "command": command_line("benchmarks/peer_speed.py", argv),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "machine": rows[0]["gpu_name"] if cuda else f"{cpu_name()}, {os.cpu_count()} CPUs",
        "device": args.device,
        "threads": args.threads,
        "size": args.size,
        "repeat": args.repeat,
    }
    # One file per setting, so that runs at other sizes or on a GPU sit side by side.
    stem = "peer_speed" + ("_cuda" if cuda else "") + ("" if args.size == 256 else f"_{args.size}")
    base = rows[0]
    if cuda:
        setting = f"{meta['machine']}, float32 (TF32 off)"
        mem_head, mem_sep = "GPU memory of the forward pass (MB) |", "---:|"
    else:
        setting = f"{meta['machine']}, torch threads: {args.threads}, float32"
        mem_head = "peak RSS (MB) | of which the forward pass (MB) |"
        mem_sep = "---:|---:|"
    lines = [
        "# Speed against the published peers" + (" on a GPU" if cuda else ""),
        "",
        f"Command: `{meta['command']}`  ",
        f"{meta['date']}, torch {meta['torch']}, {setting}, one "
        f"{args.size}x{args.size} colour image, batch 1, random weights, median of "
        f"{args.repeat} runs after a warm-up, each network in its own process.",
        "",
        f"| model | s / image | time / {base['model']} | GFLOPs | params (M) | {mem_head}",
        f"|---|---:|---:|---:|---:|{mem_sep}",
    ]
    for r in rows:
        memory = (
            f"{r['forward_mb']:.0f} |"
            if cuda
            else f"{r['peak_rss_mb']:.0f} | {r['forward_mb']:.0f} |"
        )
        lines.append(
            f"| {r['model']} | {r['seconds']:.4g} | {r['seconds'] / base['seconds']:.1f}x | "
            f"{r['gflops']:.1f} | {r['params_m']:.2f} | {memory}"
        )
    write_report(args.out, stem, {"meta": meta, "rows": rows}, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
