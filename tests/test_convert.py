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
