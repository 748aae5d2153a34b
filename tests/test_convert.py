"""Model conversions: colour to gray, narrow to wide, and the x8 self-ensemble."""

import pytest
import torch

from malleconv.models import create_model
from malleconv.models.convert import gray_from_color


def _randomised(model):
    # Fresh models have a zero last conv (identity denoiser); make every weight matter.
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("name", ["mallenet-tiny", "mallenet-s"])
def test_gray_model_equals_color_model_on_replicated_gray(name):
    color = _randomised(create_model(name))
    gray = gray_from_color(color)
    assert gray.config.in_channels == 1
    y = torch.rand(2, 1, 24, 40)
    sigma = torch.tensor([10.0, 40.0])
    with torch.no_grad():
        expected = color(y.expand(-1, 3, -1, -1), sigma).mean(1, keepdim=True)
        got = gray(y, sigma)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_gray_from_color_rejects_gray_models():
    with pytest.raises(ValueError, match="3-channel"):
        gray_from_color(create_model("mallenet-s-gray"))


def test_self_ensemble_averages_the_eight_transforms():
    from malleconv.models.ensemble import SelfEnsemble

    model = _randomised(create_model("mallenet-tiny"))
    x = torch.rand(1, 3, 20, 28)
    sigma_map = torch.full((1, 1, 20, 28), 20.0)
    with torch.no_grad():
        expected = torch.zeros_like(x)
        for k in range(8):
            xt = torch.rot90(x, k % 4, dims=(-2, -1))
            xt = xt.flip(-1) if k >= 4 else xt
            y = model(xt, 20.0)
            y = y.flip(-1) if k >= 4 else y
            expected += torch.rot90(y, -(k % 4), dims=(-2, -1)) / 8
        ens = SelfEnsemble(model)
        torch.testing.assert_close(ens(x, 20.0), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ens(x, sigma_map), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(SelfEnsemble(model, 1)(x, 20.0), model(x, 20.0))
    assert ens.config.in_channels == 3
    with pytest.raises(ValueError, match="transforms"):
        SelfEnsemble(model, 3)


def _with_random_state(model):
    """Every parameter and BatchNorm statistic random, so that each one shows in the output."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(0.1 * torch.randn_like(t))
                if name.endswith("running_var"):
                    t.abs_().add_(0.5)
    return model


@pytest.mark.parametrize(
    "malle",
    [
        {},
        dict(malle_guided=True, malle_grid_depth=4),
        dict(malle_guided=True, malle_guide="self", malle_kernel=1),
    ],
    ids=["plain", "bilateral-grid", "self-guided"],
)
def test_widened_mallenet_computes_the_same_function(malle):
    from malleconv.models.mallenet import MalleNet
    from malleconv.models.widen import widen_mallenet

    kw = dict(expand=2, encoder_blocks=1, decoder_blocks=1, malle_predictor_width=8, **malle)
    small = _with_random_state(MalleNet(widths=(8, 8, 16, 16), **kw))
    # Every level grows, and unevenly: the concatenations before each fuse and the
    # MalleConv grid layout (kernels, then biases) must be remapped, not just extended.
    wide = widen_mallenet(small, MalleNet(widths=(16, 12, 16, 24), **kw))
    assert wide.config.widths == (16, 12, 16, 24)
    x = torch.rand(2, 3, 37, 45)  # not a multiple of 8: padding is exercised too
    sigma = torch.tensor([5.0, 50.0])
    for train_mode in (False, True):
        small.train(train_mode)
        wide.train(train_mode)
        with torch.no_grad():
            expected = small(x, sigma)
            assert expected.abs().mean() > 0.1  # the random state really does something
            torch.testing.assert_close(wide(x, sigma), expected, rtol=1e-5, atol=1e-5)
    # The zeroed weights from new channels into old ones get gradients: they can learn.
    wide.train()
    wide(x, sigma).square().mean().backward()
    grad = wide.tail[-1].weight.grad[:, 8:]
    assert grad.abs().sum() > 0


def test_widen_mallenet_rejects_other_changes_and_narrowing():
    from malleconv.models.mallenet import MalleNet
    from malleconv.models.widen import widen_mallenet

    small = MalleNet(widths=(8, 8, 16, 16), expand=2)
    with pytest.raises(ValueError, match="expand"):
        widen_mallenet(small, MalleNet(widths=(16, 8, 16, 16), expand=3))
    with pytest.raises(ValueError, match="at least"):
        widen_mallenet(small, MalleNet(widths=(16, 4, 16, 16), expand=2))
    with pytest.raises(ValueError, match="at least"):
        widen_mallenet(small, MalleNet(widths=(16, 8, 16), expand=2))
