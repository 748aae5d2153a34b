"""Where a CPU training step of a model spends its time, by kind of operation.

    python benchmarks/train_profile.py [--model mallenet-s] [--patch 128] [--batch 32]
        [--steps 3] [--threads N] [--out docs/benchmarks]

Runs ``--steps`` training steps (forward, backward, AdamW step) of the model on random
patches after one warm-up step, under ``torch.profiler``, float32 channels-last as
``malleconv train`` runs it (with :func:`malleconv.runtime.tune_allocator`), and sorts the
inclusive CPU time of each leaf module's forward (depthwise and dense convolutions,
BatchNorm, PReLU), of slice_conv, of each autograd node's backward and of the optimiser
step into parts of the step; the rest is everything else. Writes ``train_profile.md`` /
``.json``: the profile to beat before any fusion of the training step, and to compare
after it.
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch

from malleconv.runtime import command_line, cpu_name, tune_allocator, write_report
from malleconv.training.config import build_model, load_config
from malleconv.training.losses import make_loss

# Inclusive CPU time of these profiler events, by kind: forward ranges recorded around each
# leaf module (below), autograd nodes of the backward, and the optimiser step. Leaf modules
# do not nest, and slice_conv's autograd function runs outside any leaf module (inside
# MalleConv2d.forward), so no time is counted twice.
EVENT_KINDS = {
    "forward: depthwise conv": ("fwd depthwise conv",),
    "forward: dense conv (1x1, 3x3)": ("fwd conv",),
    "forward: BatchNorm": ("fwd BatchNorm2d",),
    "forward: PReLU": ("fwd PReLU",),
    "forward: slice_conv": ("_DepthwiseSliceConv", "_SliceConvFunction"),
    "backward: conv": ("ConvolutionBackward0",),
    "backward: BatchNorm": ("NativeBatchNormBackward0",),
    "backward: PReLU": ("_PReLUFunctionBackward", "PreluKernelBackward0"),
    "backward: slice_conv": ("_DepthwiseSliceConvBackward", "_SliceConvFunctionBackward"),
    "optimizer step": ("Optimizer.step#AdamW.step",),
}


def _label(module: torch.nn.Module) -> str | None:
    if isinstance(module, torch.nn.Conv2d):
        depthwise = module.groups > 1 and module.groups == module.in_channels
        return "fwd depthwise conv" if depthwise else "fwd conv"
    if isinstance(module, torch.nn.BatchNorm2d):
        return "fwd BatchNorm2d"
    if isinstance(module, torch.nn.PReLU):
        return "fwd PReLU"
    return None


def _record_leaf_modules(model: torch.nn.Module) -> None:
    """Wrap each leaf conv / BatchNorm / PReLU forward in a named profiler range."""
    for module in model.modules():
        label = _label(module)
        if label is None or any(True for _ in module.children()):
            continue

        def pre(mod, inputs, label=label):
            mod._profile_range = torch.autograd.profiler.record_function(label)
            mod._profile_range.__enter__()

        def post(mod, inputs, output):
            mod._profile_range.__exit__(None, None, None)

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mallenet-s")
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="docs/benchmarks")
    args = ap.parse_args(argv)
    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(None, [f"model.name={args.model}"])
    model = build_model(cfg).train().to(memory_format=torch.channels_last)
    _record_leaf_modules(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = make_loss("charbonnier")
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.patch, args.patch)
    clean = torch.rand(shape, generator=gen).contiguous(memory_format=torch.channels_last)
    noisy = clean + torch.randn(shape, generator=gen) * 25 / 255
    sigma = torch.full((args.batch,), 25.0)

    def step():
        loss = loss_fn(model(noisy, sigma), clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        wall = time.perf_counter() - t0
    totals = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}
    per_kind = {
        kind: sum(totals.get(name, 0.0) for name in names) / args.steps
        for kind, names in EVENT_KINDS.items()
    }
    per_step = wall / args.steps
    per_kind["everything else (loss, elementwise glue, allocation, profiler)"] = max(
        0.0, per_step - sum(per_kind.values())
    )
    rate = args.batch * args.patch**2 / per_step
    meta = {
        "command": command_line("benchmarks/train_profile.py", argv),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "threads": torch.get_num_threads(),
        "model": args.model,
        "batch": f"{args.batch}x{args.patch}x{args.patch}",
        "steps": args.steps,
    }
    lines = [
        "# Where a CPU training step spends its time",
        "",
        f"Command: `{meta['command']}`  ",
        f"{meta['date']}, torch {meta['torch']}, {meta['cpu']}, {meta['threads']} threads, "
        f"`{args.model}`, batch {meta['batch']}, float32 channels-last, {args.steps} profiled "
        f"steps after a warm-up: {per_step:.2f} s per step under the profiler "
        f"({rate:,.0f} training pixels/s; the profiler adds overhead). Inclusive CPU time of "
        "each leaf module's forward and of each autograd node's backward.",
        "",
        "| part of the step | share | s per step |",
        "|---|---:|---:|",
    ]
    for kind, seconds in per_kind.items():
        lines.append(f"| {kind} | {seconds / per_step:.1%} | {seconds:.3f} |")
    data = {"meta": meta, "step_seconds": per_step, "seconds": per_kind}
    write_report(args.out, "train_profile", data, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
