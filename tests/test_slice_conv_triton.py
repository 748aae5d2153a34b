"""The fused Triton kernels of depthwise slice_conv against the reference.

Run on the CPU by Triton's interpreter (TRITON_INTERPRET=1, set before the kernels are
defined), so CI checks the same kernels a GPU runs; on a CUDA machine the last test also
runs them compiled.
"""

import math
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from malleconv import slice_conv, slice_conv_reference  # noqa: E402
from malleconv.ops.slice_conv_triton import depthwise_slice_conv  # noqa: E402

# (C, k, H, W, gh, gw): odd sizes, k = 1 / 3 / 5, a single cell, a grid larger than the
# image, a tall image with one grid column.
CASES = [
    (3, 3, 9, 11, 3, 4),
    (2, 1, 5, 6, 2, 3),
    (2, 5, 7, 13, 3, 4),
    (1, 3, 1, 1, 1, 1),
    (2, 3, 5, 6, 8, 9),
    (2, 3, 40, 9, 3, 1),
]


def _inputs(c, k, h, w, gh, gw, device="cpu"):
    g = torch.Generator().manual_seed(c * 1000 + k * 100 + h + w + gh + gw)
    x = torch.rand(2, c, h, w, generator=g, dtype=torch.float64)
    grid = torch.randn(2, c, 1, k, k, gh, gw, generator=g, dtype=torch.float64) / math.sqrt(k * k)
    weights = torch.randn(2, c, h, w, generator=g, dtype=torch.float64)
    return x.to(device), grid.to(device), weights.to(device)


@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
    reason="needs TRITON_INTERPRET=1 or a GPU",
)
@pytest.mark.parametrize("case", CASES)
def test_forward_and_gradients_match_the_reference(case):
    device = (
        "cuda" if torch.cuda.is_available() and os.environ["TRITON_INTERPRET"] != "1" else "cpu"
    )
    x, grid, weights = _inputs(*case, device=device)
    x.requires_grad_()
    grid.requires_grad_()
    ref = slice_conv_reference(x, grid, groups=x.shape[1])
    want = torch.autograd.grad((ref * weights).sum(), (x, grid))
    xf = x.detach().float().requires_grad_()
    gf = grid.detach().float().requires_grad_()
    out = depthwise_slice_conv(xf, gf)
    got = torch.autograd.grad((out * weights.float()).sum(), (xf, gf))
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert (out.double() - ref).abs().max().item() <= 1e-5
    for g, wnt in zip(got, want):
        assert (g.double() - wnt).abs().max().item() <= 1e-5


def test_only_depthwise_grids_are_accepted():
    x = torch.rand(1, 4, 8, 8)
    with pytest.raises(ValueError, match="depthwise"):
        depthwise_slice_conv(x, torch.rand(1, 4, 2, 3, 3, 2, 2))
    with pytest.raises(ValueError, match="depthwise"):
        depthwise_slice_conv(x, torch.rand(1, 8, 1, 3, 3, 2, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_slice_conv_selects_the_fused_kernel_on_cuda(monkeypatch):
    from malleconv.ops import slice_conv_triton

    calls = []
    real = slice_conv_triton.depthwise_slice_conv
    monkeypatch.setattr(
        slice_conv_triton, "depthwise_slice_conv", lambda *a: calls.append(1) or real(*a)
    )
    x, grid, _ = _inputs(4, 3, 33, 20, 5, 3, device="cuda")
    out = slice_conv(x.float(), grid.float(), groups=4)
    assert calls and (out.double() - slice_conv_reference(x, grid, groups=4)).abs().max() < 1e-4
