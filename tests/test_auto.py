"""The automatic mode: reading an image's noise and choosing the white-noise or blind model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from malleconv import denoise
from malleconv.inference import AUTO_MODEL, AutoDenoiser, prepare_model, read_noise
from malleconv.inference.auto import FLOOR_CAP, WHITE_MAX_RATIO, floor_noise
from malleconv.inference.noise_floor import read_noise_floor
from malleconv.inference.prepare import EstimatedLevel


def _white_noise(h=128, w=128, sigma=15.0, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.5 + torch.randn(1, 3, h, w, generator=g) * sigma / 255


def _correlated_noise(h=128, w=128, sigma=15.0, seed=0) -> torch.Tensor:
    """Noise made correlated between neighbours by a 3 x 3 blur, as demosaicing does."""
    g = torch.Generator().manual_seed(seed)
    n = torch.randn(1, 3, h + 2, w + 2, generator=g)
    n = F.avg_pool2d(n, 3, stride=1)
    return 0.5 + n / n.std() * sigma / 255


class _Recorder(nn.Module):
    """A stand-in model that records the levels it is given and returns a constant."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.calls: list = []

    def forward(
        self, noisy, sigma=None, *, strength=1.0, return_level=False, max_level=None, min_level=None
    ):
        self.calls.append((tuple(noisy.shape), sigma, strength))
        self.max_level, self.min_level = max_level, min_level
        out = torch.full_like(noisy, self.value)
        level = torch.full_like(noisy[:, :1], 7.0 * strength)
        return (out, level) if return_level else out


def _auto(strength=1.0):
    white, blind = _Recorder(0.25), _Recorder(0.75)
    auto = AutoDenoiser(white, EstimatedLevel(blind, strength), ("w", "b"), strength)
    return auto, white, blind


def test_read_noise_tells_white_from_correlated_noise():
    white = read_noise(_white_noise(sigma=15))
    assert white.sigma == pytest.approx(15, rel=0.1)
    assert white.ratio == pytest.approx(1.0, abs=0.1)
    correlated = read_noise(_correlated_noise(sigma=15))
    assert correlated.sigma < 10  # the full-resolution reading misses most of it
    assert correlated.ratio > 2.0
    # uint8 arrays read as their float equivalents; alpha is ignored
    arr = (_white_noise()[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    rgba = np.concatenate([arr, np.zeros_like(arr[..., :1])], axis=2)
    assert read_noise(rgba) == read_noise(arr)
    assert read_noise(arr).sigma == pytest.approx(white.sigma, rel=0.05)


def test_read_noise_edge_cases():
    assert read_noise(torch.full((3, 16, 16), 0.5)).ratio == float("inf")  # nothing reads
    tiny = read_noise(torch.rand(3, 3, 3))
    assert tiny.coarse_sigma == 0.0
    with pytest.raises(ValueError, match="NaN"):
        read_noise(torch.full((3, 8, 8), float("nan")))


def test_auto_sends_white_noise_to_the_white_model_with_the_level_read():
    auto, white, blind = _auto()
    noisy = _white_noise(64, 80)
    decided: dict = {}
    out = denoise(noisy, model=auto, report=decided)
    assert torch.all(out == 0.25) and not blind.calls
    expected = read_noise(noisy).sigma
    assert white.calls[0][1] == pytest.approx(expected)
    floor = read_noise_floor(noisy).level
    assert decided == {
        "model": "w",
        "noise": "white noise",
        "sigma": pytest.approx(expected),
        "how": "estimated",
        "floor": pytest.approx(floor),
        "cap": pytest.approx(FLOOR_CAP * floor_noise(floor)),
    }


def test_auto_sends_correlated_noise_to_the_blind_model():
    auto, white, blind = _auto()
    decided: dict = {}
    out = denoise(_correlated_noise(64, 80), model=auto, report=decided)
    assert torch.all(out == 0.75) and not white.calls and len(blind.calls) == 1
    assert blind.calls[0][1] is None  # the blind model finds its own level
    assert decided["model"] == "b" and decided["noise"] == "camera noise"
    assert decided["how"] == "estimated map" and decided["sigma"] == pytest.approx(7.0)


def test_auto_strength_scales_the_level_on_both_routes():
    auto, white, blind = _auto(strength=2.0)
    denoise(_white_noise(64, 64), model=auto)
    assert white.calls[0][1] == pytest.approx(2 * read_noise(_white_noise(64, 64)).sigma)
    decided: dict = {}
    denoise(_correlated_noise(64, 64), model=auto, report=decided)
    assert blind.calls[0][2] == 2.0 and decided["sigma"] == pytest.approx(14.0)


def test_denoise_refuses_a_strength_or_sigma_that_a_prepared_auto_model_would_ignore():
    auto, white, blind = _auto(strength=2.0)
    with pytest.raises(ValueError, match=r"strength=1.5: this model was prepared with strength 2"):
        denoise(_correlated_noise(64, 64), model=auto, strength=1.5)
    with pytest.raises(ValueError, match="prepared with strength 2"):
        denoise(_white_noise(64, 64), model=auto.blind, strength=1.5)
    assert not white.calls and not blind.calls
    # A given sigma is white noise of that level, scaled by the call's strength as always.
    denoise(_white_noise(64, 64), 10.0, model=auto, strength=1.5)
    assert white.calls[0][1] == pytest.approx(15.0)
    # The blind model in automatic mode would run on its own estimate, not on a given sigma.
    with pytest.raises(ValueError, match="sigma=10: this model was prepared in automatic mode"):
        denoise(_white_noise(64, 64), 10.0, model=auto.blind)
    assert not blind.calls


def test_auto_decides_once_per_image_before_tiling():
    auto, white, blind = _auto()
    # White noise on the left, correlated on the right: tiles would disagree, the whole
    # image decides once.
    noisy = torch.cat([_white_noise(64, 96), _correlated_noise(64, 32)], dim=3)
    route = auto.route(noisy)
    decided: dict = {}
    denoise(noisy, model=auto, tile=32, overlap=8, report=decided)
    used, unused = (white, blind) if route.sigma is not None else (blind, white)
    assert len(used.calls) > 1 and not unused.calls
    assert decided["model"] == route.name
    # and the streaming path (numpy input) too
    auto, white, blind = _auto()
    arr = noisy[0].permute(1, 2, 0).clamp(0, 1).numpy()
    denoise(arr, model=auto, tile=32, overlap=8)
    used, unused = (white, blind) if route.sigma is not None else (blind, white)
    assert len(used.calls) > 1 and not unused.calls


def test_auto_decides_per_image_of_a_batch():
    auto, white, blind = _auto()
    batch = torch.cat([_white_noise(48, 48), _correlated_noise(48, 48)])
    decided: dict = {}
    out = denoise(batch, model=auto, report=decided)
    assert out.shape == batch.shape
    assert torch.all(out[0] == 0.25) and torch.all(out[1] == 0.75)
    assert decided["model"] == ["w", "b"]
    assert decided["noise"] == ["white noise", "camera noise"]
    # called directly, the module decides per image too
    with torch.no_grad():
        direct = auto(batch)
    assert torch.all(direct[0] == 0.25) and torch.all(direct[1] == 0.75)


def test_auto_with_a_given_sigma_is_the_white_model():
    auto, white, blind = _auto()
    decided: dict = {}
    denoise(_correlated_noise(48, 48), sigma=10, model=auto, report=decided)
    assert white.calls[0][1] == 10.0 and not blind.calls
    assert decided["how"] == "given" and decided["sigma"] == 10.0
    # by name: with a given level "auto" is the white-noise model itself
    assert prepare_model(AUTO_MODEL, auto=False) is prepare_model("mallenet-s")
    named = prepare_model(AUTO_MODEL, auto=True)
    assert isinstance(named, AutoDenoiser) and named.max_ratio == WHITE_MAX_RATIO


def test_eval_runs_the_automatic_mode_per_image():
    from malleconv.cli.evaluate import model_denoiser

    auto, white, blind = _auto()
    run = model_denoiser(auto)
    noisy = _white_noise(48, 48)
    run(noisy, None)
    assert run.last_sigma == pytest.approx(read_noise(noisy).sigma) and not blind.calls
    run(_correlated_noise(48, 48), None)
    assert run.last_sigma == pytest.approx(7.0) and len(blind.calls) == 1
    run(noisy, 20.0)
    assert white.calls[-1][1] == 20.0 and run.last_sigma == 20.0
