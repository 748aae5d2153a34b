"""The slice-and-conv operator against its readable definition, gradients and errors."""

import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from malleconv import slice_conv, slice_conv_reference

# (C_in, C_out, groups): depthwise, depthwise with multiplier, grouped, dense.
CHANNELS = [(4, 4, 4), (4, 8, 4), (4, 6, 2), (3, 5, 1)]
# (H, W, gh, gw): tiny, odd, wide, and a grid larger than the image.
SIZES = [(1, 1, 1, 1), (7, 13, 3, 4), (33, 65, 5, 9), (5, 6, 8, 9)]


def _inputs(cin, cout, groups, k, h, w, gh, gw, gd=0, guide_channels=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(hash((cin, cout, groups, k, h, w, gh, gw, gd)) % 2**31)
    x = torch.rand(2, cin, h, w, generator=g, dtype=dtype)
    # Kernels scaled like a conv layer's initialisation, so outputs are O(1).
    fan_in = cin // groups * k * k
    shape = (2, cout, cin // groups, k, k) + ((gd,) if gd else ()) + (gh, gw)
    grid = torch.randn(shape, generator=g, dtype=dtype) / math.sqrt(fan_in)
    bias = torch.randn(2, cout, gh, gw, generator=g, dtype=dtype)
    guide = torch.rand(2, guide_channels, h, w, generator=g, dtype=dtype) if gd else None
    return x, grid, bias, guide


@pytest.mark.parametrize("cin,cout,groups", CHANNELS)
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("h,w,gh,gw", SIZES)
@pytest.mark.parametrize("gd", [0, 3])
def test_matches_reference(cin, cout, groups, k, h, w, gh, gw, gd):
    guide_channels = 1 if cout % 2 else cout
    x, grid, bias, guide = _inputs(cin, cout, groups, k, h, w, gh, gw, gd, guide_channels)
    fast = slice_conv(x, grid, bias, groups=groups, guide=guide)
    ref = slice_conv_reference(x, grid, bias, groups=groups, guide=guide)
    assert fast.shape == (2, cout, h, w)
    assert (fast - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("cout", [4, 8])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("h,w,gh,gw", SIZES + [(40, 9, 3, 1)])
@pytest.mark.parametrize("chunk_bytes", [1 << 21, 64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_depthwise_banded_path_matches_reference(
    monkeypatch, cout, k, h, w, gh, gw, chunk_bytes, channels_last
):
    # Large depthwise inputs take the row-chunked forward; force it on small ones, with
    # chunks as small as one row, so that every band/chunk/border case is covered.
    ops = importlib.import_module("malleconv.ops.slice_conv_depthwise")
    monkeypatch.setattr(ops, "BANDED_MIN_NUMEL", 0)
    monkeypatch.setattr(ops, "CHUNK_BYTES", chunk_bytes)
    x, grid, bias, _ = _inputs(4, cout, 4, k, h, w, gh, gw)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    grid.requires_grad_()
    fast = slice_conv(x, grid, bias, groups=4)
    ref = slice_conv_reference(x, grid, bias, groups=4)
    assert (fast - ref).abs().max().item() <= 1e-5
    # The backward runs in the same chunks: gradients of x and of the grid.
    weights = torch.randn(fast.shape, generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad((fast * weights).sum(), (x, grid))
    want = torch.autograd.grad((ref * weights).sum(), (x, grid))
    for g, wnt in zip(got, want):
        assert (g - wnt).abs().max().item() <= 1e-4


@pytest.mark.parametrize("cin,cout,groups", CHANNELS)
def test_constant_grid_equals_conv2d(cin, cout, groups):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, cin, 19, 23, generator=g, dtype=torch.float64)
    weight = torch.randn(cout, cin // groups, 3, 3, generator=g, dtype=torch.float64)
    grid = weight[None, ..., None, None].expand(2, -1, -1, -1, -1, 4, 5).contiguous()
    out = slice_conv(x, grid, groups=groups)
    torch.testing.assert_close(out, F.conv2d(x, weight, padding=1, groups=groups))


def test_interpolation_convention_matches_interpolate():
    # A 1x1 kernel makes the output the interpolated kernel times the input.
    grid = torch.randn(1, 2, 1, 1, 1, 3, 4, dtype=torch.float64)
    x = torch.ones(1, 2, 10, 9, dtype=torch.float64)
    out = slice_conv(x, grid, groups=2)
    expected = F.interpolate(
        grid[:, :, 0, 0, 0], size=(10, 9), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(out, expected)


def test_guided_depth_convention():
    # Planes hold constants 0, 1, 2, 3: the sliced 1x1 kernel is the depth coordinate z.
    gd = 4
    grid = (
        torch.arange(gd, dtype=torch.float64)
        .view(1, 1, 1, 1, 1, gd, 1, 1)
        .expand(1, 1, 1, 1, 1, gd, 2, 2)
    )
    guide = torch.tensor([0.0, 0.05, 0.3, 0.5, 0.9, 1.0], dtype=torch.float64).view(1, 1, 1, 6)
    out = slice_conv(torch.ones(1, 1, 1, 6, dtype=torch.float64), grid.contiguous(), guide=guide)
    z = (guide * gd - 0.5).clamp(0, gd - 1)
    torch.testing.assert_close(out, z)


@pytest.mark.parametrize(
    "cin,cout,groups,gd",
    [(3, 3, 3, 0), (2, 4, 2, 0), (4, 2, 2, 0), (2, 3, 1, 0), (2, 2, 2, 2), (2, 3, 1, 2)],
)
def test_gradcheck(cin, cout, groups, gd):
    x, grid, bias, guide = _inputs(
        cin, cout, groups, 3, 5, 6, 2, 3, gd, guide_channels=cout, dtype=torch.float64
    )
    args = [t.requires_grad_() for t in (x, grid, bias)]
    if guide is not None:
        # Keep the guide away from the depth-interpolation kinks and the clamp.
        guide = (0.15 + 0.7 * guide).requires_grad_()

    def f(x, grid, bias, guide=None):
        return slice_conv(x, grid, bias, groups=groups, guide=guide)

    assert torch.autograd.gradcheck(f, (*args, guide) if guide is not None else tuple(args))


@pytest.mark.parametrize("channels_last", [False, True])
def test_gradcheck_of_the_row_chunked_depthwise_path(monkeypatch, channels_last):
    ops = importlib.import_module("malleconv.ops.slice_conv_depthwise")
    monkeypatch.setattr(ops, "BANDED_MIN_NUMEL", 0)
    monkeypatch.setattr(ops, "CHUNK_BYTES", 64)  # chunks of one or two rows
    x, grid, bias, _ = _inputs(3, 3, 3, 3, 7, 6, 3, 2, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    args = (x.requires_grad_(), grid.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, grid: slice_conv(x, grid, groups=3), args)


def test_does_not_store_per_pixel_kernels():
    # The saved tensors of the autograd graph are only the inputs: nothing of size
    # C_out * C_in/g * k * k * H * W is kept for backward.
    x, grid, bias, _ = _inputs(8, 8, 8, 3, 64, 64, 4, 4)
    x.requires_grad_()
    grid.requires_grad_()
    biggest = []

    def pack(t):
        biggest.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = slice_conv(x, grid, bias, groups=8)
    out.sum().backward()
    assert max(biggest) <= x.numel()


BAD = [
    (dict(grid_k=2), "odd"),
    (dict(groups=3), "groups"),
    (dict(grid_b=3), "grid"),
    (dict(bias_hw=(2, 2)), "bias"),
    (dict(guide_range=2.0), "guide"),
    (dict(guide_shape=(1, 2, 8, 8)), "guide"),
    (dict(int_x=True), "x"),
]


@pytest.mark.parametrize("case,word", BAD)
def test_bad_arguments(case, word):
    k = case.get("grid_k", 3)
    gd = 2 if ("guide_range" in case or "guide_shape" in case) else 0
    x = torch.rand(1, 4, 8, 8)
    shape = (case.get("grid_b", 1), 4, 4 // case.get("groups", 4), k, k) + ((gd,) if gd else ())
    grid = torch.rand(*shape, 3, 3)
    bias = torch.rand(1, 4, *case.get("bias_hw", (3, 3)))
    guide = None
    if gd:
        guide = torch.rand(*case.get("guide_shape", (1, 1, 8, 8))) * case.get("guide_range", 1.0)
    if case.get("int_x"):
        x = (x * 10).long()
    with pytest.raises(ValueError, match=word):
        slice_conv(x, grid, bias, groups=case.get("groups", 4), guide=guide)


@pytest.mark.parametrize("h, w, k", [(2, 64, 7), (2, 2, 7), (1, 1, 5), (3, 1, 7)])
def test_kernels_longer_than_the_image_equal_conv2d(h, w, k):
    """Taps farther out than the image is long read only zero padding."""
    x = torch.randn(1, 4, h, w)
    weight = torch.randn(4, 1, k, k)
    grid = weight[None, ..., None, None].expand(1, 4, 1, k, k, 1, 1).contiguous()
    torch.testing.assert_close(
        slice_conv(x, grid, groups=4), F.conv2d(x, weight, padding=k // 2, groups=4),
        rtol=1e-5, atol=1e-5,
    )


@pytest.mark.parametrize("groups, cg_in", [(2, 1), (1, 2)])
def test_a_second_derivative_is_refused_not_silently_wrong(groups, cg_in):
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    grid = torch.randn(1, 2, cg_in, 3, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="first-order gradients only"):
        torch.autograd.grad(slice_conv(x, grid, groups=groups).square().sum(), x,
                            create_graph=True)


def test_empty_input_and_nan_guide_are_named():
    grid = torch.randn(1, 2, 1, 3, 3, 2, 2)
    with pytest.raises(ValueError, match="x must not have empty dimensions"):
        slice_conv(torch.randn(1, 2, 0, 5), grid, groups=2)
    x = torch.randn(1, 2, 6, 6)
    guided = torch.randn(1, 2, 1, 3, 3, 4, 2, 2)
    with pytest.raises(ValueError, match="guide contains NaN"):
        slice_conv(x, guided, groups=2, guide=torch.full((1, 1, 6, 6), float("nan")))
