"""MalleConv2d and PerPixelConv2d: shapes, initial behaviour, training, errors."""

import pytest
import torch

from malleconv import MalleConv2d, PerPixelConv2d


@pytest.mark.parametrize("cls", [MalleConv2d, PerPixelConv2d])
@pytest.mark.parametrize("cin,cout,groups", [(8, 8, 8), (8, 16, 8), (6, 4, 2), (3, 5, 1)])
@pytest.mark.parametrize("hw", [(1, 1), (17, 40), (32, 32)])
def test_shapes_and_fresh_layer_is_static_conv(cls, cin, cout, groups, hw):
    torch.manual_seed(0)
    layer = cls(cin, cout, 3, groups, grid_stride=8)
    x = torch.randn(2, cin, *hw)
    y = layer(x)
    assert y.shape == (2, cout, *hw)
    torch.testing.assert_close(y, layer.static_forward(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("h,w,stride", [(17, 40, 8), (64, 64, 16), (5, 100, 16)])
def test_grid_size_is_ceil(h, w, stride):
    layer = MalleConv2d(4, 4, 3, 4, grid_stride=stride)
    grid, bias = layer.predict_grid(torch.randn(1, 4, h, w))
    gh, gw = -(-h // stride), -(-w // stride)
    assert grid.shape == (1, 4, 1, 3, 3, gh, gw)
    assert bias.shape == (1, 4, gh, gw)


def test_guided_layer_shapes():
    layer = MalleConv2d(4, 6, 3, 2, guided=True, grid_depth=4, grid_stride=8)
    grid, bias = layer.predict_grid(torch.randn(1, 4, 20, 12))
    assert grid.shape == (1, 6, 2, 3, 3, 4, 3, 2)
    assert layer(torch.randn(1, 4, 20, 12)).shape == (1, 6, 20, 12)


@pytest.mark.parametrize("guided", [False, True])
def test_training_lowers_loss(guided):
    # The target is a spatially varying filter (identity on the left, negation on the
    # right), which no static conv fits but a malleable one can.
    torch.manual_seed(0)
    layer = MalleConv2d(2, 2, 3, 2, grid_stride=8, predictor_width=8, guided=guided)
    x = torch.randn(4, 2, 32, 32)
    target = x.clone()
    target[..., 16:] *= -1
    x[..., 16:] += 3  # makes the two halves distinguishable for the predictor
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(layer(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(kernel_size=2), "kernel_size"),
        (dict(groups=3), "groups"),
        (dict(grid_stride=12), "grid_stride"),
        (dict(grid_stride=6, downsample=4), "grid_stride"),
    ],
)
def test_bad_constructor_arguments(kwargs, word):
    args = dict(in_channels=4, out_channels=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        MalleConv2d(**args)


def test_self_guided_layer_uses_own_channel_as_guide():
    layer = MalleConv2d(4, 4, 1, 4, guided=True, guide="self", grid_stride=8)
    assert layer.to_guide is None
    x = torch.rand(1, 4, 16, 16)
    torch.testing.assert_close(layer(x), layer.static_forward(x), atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        MalleConv2d(4, 8, 1, 4, guided=True, guide="self")


@pytest.mark.parametrize("num_parameters", [1, 6])
@pytest.mark.parametrize("channels_last", [False, True])
def test_prelu_matches_torch_values_and_gradients(num_parameters, channels_last):
    from malleconv.layers.blocks import PReLU

    torch.manual_seed(0)
    ours, ref = PReLU(num_parameters), torch.nn.PReLU(num_parameters)
    with torch.no_grad():
        ref.weight.uniform_(-0.5, 0.5)
        ours.weight.copy_(ref.weight)
    x = torch.randn(2, 6, 5, 7)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(2, 6, 5, 7)
    y1, y2 = ours(x1), ref(x2)
    assert torch.equal(y1, y2)
    y1.backward(g)
    y2.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=0)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
    assert set(ours.state_dict()) == set(ref.state_dict())


@pytest.mark.parametrize("num_parameters", [1, 3])
def test_prelu_gradcheck_and_frozen_parts(num_parameters):
    from malleconv.layers.blocks import PReLU, _PReLUFunction

    torch.manual_seed(0)
    layer = PReLU(num_parameters).double()
    with torch.no_grad():
        layer.weight.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(_PReLUFunction.apply, (x, w))
    # Frozen slope: only the input gets a gradient, and it is the slope where x < 0.
    layer.weight.requires_grad_(False)
    layer(x).sum().backward()
    slope = layer.weight.view(1, -1, 1, 1) if num_parameters > 1 else layer.weight
    expected = torch.where(x > 0, torch.ones_like(x), slope.expand_as(x))
    torch.testing.assert_close(x.grad, expected)
    # Constant input: only the slope gets a gradient, the sum of the negative inputs.
    layer.weight.requires_grad_(True)
    xc = x.detach()
    layer(xc).sum().backward()
    dims = (0, 2, 3) if num_parameters > 1 else (0, 1, 2, 3)
    torch.testing.assert_close(layer.weight.grad, xc.clamp(max=0).sum(dims).view(-1))


@pytest.mark.parametrize("num_parameters", [1, 16])
def test_prelu_compiled_backward_equals_eager_and_falls_back(num_parameters, monkeypatch):
    """On float32 CPU tensors the backward runs compiled (one fused pass); it gives the
    eager passes' input gradient exactly and the slope's to float rounding (another order of
    summation), and if compiling fails the eager passes run, with a warning, from then on."""
    from malleconv.layers import blocks

    torch.manual_seed(0)
    layer = blocks.PReLU(num_parameters)
    with torch.no_grad():
        layer.weight.uniform_(-0.5, 0.5)
    x = torch.randn(4, 16, 24, 20).contiguous(memory_format=torch.channels_last)
    g = torch.randn(4, 16, 24, 20)

    def grads():
        xi = x.clone().requires_grad_()
        layer.weight.grad = None
        layer(xi).backward(g)
        return xi.grad, layer.weight.grad.clone()

    monkeypatch.setattr(blocks, "_compiled_backward", None)
    if not blocks._fused_backward():
        pytest.skip("MALLECONV_COMPILED_PRELU=0")
    fused = grads()
    monkeypatch.setattr(blocks, "_compiled_backward", False)
    eager = grads()
    torch.testing.assert_close(fused[0], eager[0], rtol=0, atol=0)
    torch.testing.assert_close(fused[1], eager[1], rtol=1e-4, atol=1e-5)

    def broken(*args):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(blocks, "_compiled_backward", broken)
    with pytest.warns(RuntimeWarning, match="compiled backward failed"):
        fallback = grads()
    assert blocks._compiled_backward is False
    torch.testing.assert_close(fallback[0], eager[0], rtol=0, atol=0)
    torch.testing.assert_close(fallback[1], eager[1], rtol=0, atol=0)


def test_prelu_compiled_backward_keeps_compiling_past_dynamos_default_limit(monkeypatch):
    """A network meets many layouts and sizes (channels-last or not, one slope or one per
    channel, a batch equal to the channel count): each is a graph of its own, and more than
    dynamo's default of 8 must not fail the compiled backward into the eager passes."""
    import warnings

    from malleconv.layers import blocks

    monkeypatch.setattr(blocks, "_compiled_backward", None)
    if not blocks._fused_backward():
        pytest.skip("MALLECONV_COMPILED_PRELU=0")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for channels_last in (False, True):
            for single in (False, True):
                for batch, channels, h, w in ((2, 8, 6, 10), (8, 8, 6, 10), (2, 8, 1, 10),
                                              (2, 8, 6, 1), (2, 4, 48, 48)):
                    layer = blocks.PReLU(1 if single else channels)
                    x = torch.randn(batch, channels, h, w)
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    layer(x.requires_grad_()).sum().backward()
    assert blocks._compiled_backward not in (None, False)


@pytest.mark.parametrize("kwargs, name", [
    (dict(guided=True, grid_depth=0), "grid_depth"),
    (dict(predictor_width=0), "predictor_width"),
    (dict(grid_stride=16.0), "grid_stride"),
    (dict(kernel_size=3.0), "kernel_size"),
])
def test_malleconv_arguments_are_checked_by_name(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must be a positive integer"):
        MalleConv2d(4, 4, groups=4, **kwargs)


def test_malleconv_input_shape_is_checked():
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4, H, W\)"):
        MalleConv2d(4, 4, groups=4)(torch.randn(4, 16, 16))


def test_malleconv_training_on_one_grid_cell_is_named():
    layer = MalleConv2d(4, 4, groups=4, grid_stride=8)
    with pytest.raises(ValueError, match="one grid cell .*grid_stride=8.*eval"):
        layer(torch.randn(1, 4, 8, 6))
    layer(torch.randn(2, 4, 8, 6))  # two cells' values per channel: trains
    layer(torch.randn(1, 4, 9, 6))
    layer.eval()(torch.randn(1, 4, 8, 6))
