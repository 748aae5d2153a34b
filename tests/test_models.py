"""MalleNet and the registry: shapes, gradients, sizes, export and loading."""

import pytest
import torch

from malleconv.models import (
    MalleNet,
    PlainDenoiser,
    available_models,
    create_model,
    load_model,
    model_stats,
    save_model,
)

SMALL = [n for n in available_models() if not n.startswith("mallenet-l")]


@pytest.mark.parametrize("name", available_models())
def test_every_config_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = create_model(name)
    c = model.config.in_channels if hasattr(model, "config") else 3
    net = getattr(model, "denoiser", model)  # a blind model's MalleNet
    if isinstance(net, (MalleNet, PlainDenoiser)):
        # The noise head starts at zero (identity); give it weights so gradients reach
        # every level, as they do once training has started.
        last = net.tail[-1] if isinstance(net, MalleNet) else net.body[-1]
        torch.nn.init.normal_(last.weight, std=0.1)
        for mod in net.modules():
            if hasattr(mod, "gate"):
                torch.nn.init.normal_(mod.gate, std=0.1)
    x = torch.rand(2, c, 24, 40, requires_grad=True)
    y = model(x, torch.tensor([10.0, 30.0]))
    assert y.shape == x.shape
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    heads = [p.grad for n, p in net.named_parameters() if n.startswith(("heads", "body.0"))]
    assert heads and all(g is not None and g.abs().sum() > 0 for g in heads)


@pytest.mark.parametrize("hw", [(1, 1), (3, 5), (17, 23), (64, 8)])
@pytest.mark.parametrize("channels", [1, 3])
def test_any_size(hw, channels):
    model = create_model("mallenet-tiny", in_channels=channels).eval()
    x = torch.rand(1, channels, *hw)
    with torch.no_grad():
        assert model(x, 25.0).shape == x.shape


def test_fresh_model_is_identity_and_noise_map_accepted():
    model = create_model("mallenet-tiny").eval()
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(model(x, 25.0), x)
        sigma_map = torch.full((1, 1, 20, 20), 25.0)
        assert model(x, sigma_map).shape == x.shape


def test_sigma_required_and_shape_checked():
    model = create_model("mallenet-tiny")
    with pytest.raises(ValueError, match="sigma"):
        model(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="noisy"):
        model(torch.rand(1, 4, 8, 8), 25.0)


def test_mallenet_s_cheaper_than_dncnn():
    s = model_stats(create_model("mallenet-s"), 128)
    d = model_stats(create_model("dncnn-c"), 128)
    assert s["gflops"] < d["gflops"] / 4


def test_export_and_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = create_model("mallenet-tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.eval()
    path = save_model(model, tmp_path / "tiny.safetensors", half=False)
    loaded = load_model(path)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 20.0), model(x, 20.0))
    assert not loaded.training


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        load_model("no-such-model")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_model(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name", ["mallenet-tiny", "dncnn-c"])
def test_fuse_batchnorm_keeps_outputs(name):
    from malleconv.models import fuse_batchnorm

    torch.manual_seed(0)
    model = create_model(name)
    # Non-trivial BN statistics and a non-zero head, as after training.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    if isinstance(model, MalleNet):
        torch.nn.init.normal_(model.tail[-1].weight, std=0.1)
    model.eval()
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        before = model(x, 25.0)
        fused = fuse_batchnorm(model)
        after = fused(x, 25.0)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)


def test_integer_images_are_refused_by_the_network_and_the_estimator():
    """uint8 into a MalleNet came back as garbage; int64 into estimate_sigma read /65535."""
    from malleconv import estimate_sigma

    with pytest.raises(TypeError, match="noisy must be a float tensor"):
        create_model("mallenet-tiny")(torch.zeros(1, 3, 16, 16, dtype=torch.uint8), 25.0)
    with pytest.raises(TypeError, match="uint8 or uint16"):
        estimate_sigma(torch.zeros(3, 16, 16, dtype=torch.int64))
