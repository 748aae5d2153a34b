"""The noise floor: an image-wide noise reading that texture does not raise, and the
automatic mode's cap on the level built on it."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from malleconv import denoise
from malleconv.inference import AutoDenoiser, read_noise
from malleconv.inference.auto import CLEAN_FLOOR, FLOOR_CAP, MIN_FLOOR, floor_noise
from malleconv.inference.noise_floor import read_noise_floor
from malleconv.inference.prepare import EstimatedLevel, set_level_cap
from malleconv.models.blind import BlindMalleNet, NoiseLevelEstimator
from malleconv.models.mallenet import MalleNet, MalleNetConfig


def _textured(h=256, w=256, seed=0, grain=0.8) -> torch.Tensor:
    """``(1, 3, H, W)``: fine random texture (detail a few pixels wide, of std ~12) on the
    left three quarters, flat grey on the right, and a faint grain of std ``grain`` (a clean
    8-bit photo's own, as its quantisation and fine detail leave): a clean image that a
    wavelet reading and the learned map take for noise."""
    g = torch.Generator().manual_seed(seed)
    x = 0.5 + torch.randn(1, 3, h, w, generator=g) * grain / 255
    t = w * 3 // 4
    texture = F.avg_pool2d(torch.randn(1, 3, h + 2, t + 2, generator=g), 3, stride=1)
    x[..., :t] += texture / texture.std() * 12 / 255
    return x


def test_white_noise_reads_its_std_at_both_resolutions():
    g = torch.Generator().manual_seed(1)
    for sigma in (2.0, 10.0, 30.0):
        x = 0.5 + torch.randn(1, 3, 256, 256, generator=g) * sigma / 255
        floor = read_noise_floor(x)
        assert floor.fine == pytest.approx(sigma, rel=0.05)
        assert floor.coarse == pytest.approx(sigma, rel=0.08)
        assert floor.level == max(floor.fine, floor.coarse)


def test_texture_does_not_raise_the_floor_where_the_wavelet_reading_rises():
    clean = _textured()
    assert read_noise(clean).coarse_sigma > 5  # the wavelet reading sees the texture
    assert read_noise_floor(clean).level < 1.2  # the flat quarter reads only the grain
    g = torch.Generator().manual_seed(2)
    noisy = clean + torch.randn(clean.shape, generator=g) * 6 / 255
    # A quarter of flat blocks: the 5th percentile falls at their 20th, so it reads a little
    # high (at half resolution more so: 16 coefficients a block spread more than 64).
    assert 6 <= read_noise_floor(noisy).level <= 6 * 1.3


def test_correlated_noise_reads_higher_at_half_resolution():
    g = torch.Generator().manual_seed(3)
    n = F.avg_pool2d(torch.randn(1, 3, 258, 258, generator=g), 3, stride=1)
    floor = read_noise_floor(0.5 + n / n.std() * 10 / 255)
    assert floor.coarse > 2 * floor.fine
    assert floor.level == floor.coarse


def test_clipped_and_tiny_images_and_input_kinds():
    g = torch.Generator().manual_seed(4)
    white = (1.0 + torch.randn(1, 3, 128, 128, generator=g) * 5 / 255).clamp(0, 1)
    assert read_noise_floor(white).level == 0.0  # only near-white blocks: nothing to read
    assert read_noise_floor(torch.rand(1, 3, 8, 8)).level == 0.0  # no whole block
    x = (0.5 + torch.randn(3, 128, 128, generator=g) * 8 / 255).clamp(0, 1)
    arr = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    rgba = np.concatenate([arr, np.zeros_like(arr[..., :1])], axis=2)
    assert read_noise_floor(rgba) == read_noise_floor(arr)
    assert read_noise_floor(arr).fine == pytest.approx(read_noise_floor(x).fine, rel=0.05)
    bad = x.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        read_noise_floor(bad)


def _blind() -> BlindMalleNet:
    torch.manual_seed(0)
    cfg = MalleNetConfig(widths=(8, 16), noise_map=True)
    return BlindMalleNet(MalleNet(cfg), NoiseLevelEstimator(width=8)).eval()


@torch.no_grad()
def test_max_level_caps_the_estimated_map_before_the_strength():
    net, x = _blind(), _textured(64, 64)
    _, level = net(x, return_level=True)
    cap = float(level.mean()) / 2
    _, capped = net(x, return_level=True, max_level=cap)
    assert float(capped.max()) <= cap + 1e-5
    _, strong = net(x, return_level=True, max_level=cap, strength=2.0)
    torch.testing.assert_close(strong, (capped * 2).clamp(max=75))
    # a cap above the map changes nothing; a given sigma ignores the cap
    torch.testing.assert_close(net(x, max_level=1e3), net(x))
    torch.testing.assert_close(net(x, 10.0, max_level=0.5), net(x, 10.0))
    # one cap per image of a batch
    batch = torch.cat([x, x])
    _, per_image = net(batch, return_level=True, max_level=torch.tensor([cap, 75.0]))
    torch.testing.assert_close(per_image[1], level[0])


@torch.no_grad()
def test_auto_mode_caps_the_level_at_a_multiple_of_the_floor():
    white, blind = _blind().denoiser, EstimatedLevel(_blind())
    auto = AutoDenoiser(white, blind, ("w", "b"))
    clean = _textured()
    route = auto.route(clean)
    assert route.kind == "clean" and MIN_FLOOR <= route.floor.level < CLEAN_FLOOR
    assert route.cap == pytest.approx(FLOOR_CAP * floor_noise(route.floor.level))
    assert blind.max_level == pytest.approx(route.cap)
    blind.levels.clear()
    blind(clean)
    assert blind.levels[-1] <= route.cap + 1e-4
    g = torch.Generator().manual_seed(5)
    n = F.avg_pool2d(torch.randn(1, 3, 258, 258, generator=g), 3, stride=1)
    noisy = clean + n / n.std() * 12 / 255
    route = auto.route(noisy)
    assert route.kind == "camera noise" and route.cap > 2 * 12
    set_level_cap(blind, None)
    assert blind.max_level is None
    # Texture with no correlation between neighbours reads as white noise: its level is
    # capped the same way.
    g = torch.Generator().manual_seed(6)
    iid = 0.5 + torch.randn(1, 3, 256, 256, generator=g) * 0.8 / 255
    iid[..., :192] += torch.rand(1, 3, 256, 192, generator=g) * 40 / 255 - 20 / 255
    route = auto.route(iid)
    assert route.sigma is not None and route.sigma > 5
    assert auto.white_level(route) == pytest.approx(route.cap) and route.cap < 5
    # Flat areas with no grain at all (JPEG or smoothing flattened them) say nothing of the
    # noise elsewhere: no cap.
    route = auto.route(_textured(grain=0.0))
    assert route.floor.level < MIN_FLOOR and route.cap == 75 and route.kind != "clean"


def test_denoise_reports_the_floor_and_leaves_a_clean_photo_nearly_unchanged():
    """The shipped automatic mode on a clean, finely textured image: the level is capped
    low, and the output stays much closer to the input than without the cap."""
    clean = _textured(128, 128)[0].permute(1, 2, 0).numpy()
    decided: dict = {}
    out = denoise(clean, report=decided)
    assert decided["noise"] == "clean"
    assert decided["cap"] == pytest.approx(FLOOR_CAP * floor_noise(decided["floor"]))
    assert decided["sigma"] <= decided["cap"] + 1e-4

    def kept(y) -> float:
        return float(10 * np.log10(1 / np.mean((y.astype(np.float64) - clean) ** 2)))

    # The blind model alone (its map uncapped) reads the texture as noise and smooths it.
    uncapped = denoise(clean, model="mallenet-s-real")
    assert kept(out) > kept(uncapped) + 3 and kept(out) > 35


@torch.no_grad()
def test_coarse_noise_gets_at_least_the_coarse_floor():
    """Noise two pixels wide (as in an enlarged small photo) reads high in the coarse floor
    and low in the fine one; the blind route then gets at least the coarse floor, which the
    learned map under-reads, and the command reports that bound."""
    from malleconv.inference.auto import BOUND_RATIO, FLOOR_BOUND, level_bound

    g = torch.Generator().manual_seed(8)
    blotches = torch.randn(1, 3, 64, 64, generator=g) * 8 / 255
    noisy = (_textured(128, 128) + F.interpolate(blotches, scale_factor=2)).clamp(0, 1)
    floor = read_noise_floor(noisy)
    assert floor.coarse >= BOUND_RATIO * floor.fine and floor.level >= CLEAN_FLOOR
    assert level_bound(floor) == pytest.approx(FLOOR_BOUND * floor.coarse)
    blind = EstimatedLevel(_blind())
    auto = AutoDenoiser(_blind().denoiser, blind, ("w", "b"))
    route = auto.route(noisy)
    assert route.sigma is None and route.bound == pytest.approx(level_bound(floor))
    assert blind.min_level == pytest.approx(route.bound)
    blind(noisy)
    assert blind.levels[-1] >= route.bound - 1e-4
    # White noise and clean images get no bound.
    assert level_bound(read_noise_floor(_textured(128, 128))) is None
    white = _textured(128, 128) + torch.randn(1, 3, 128, 128, generator=g) * 10 / 255
    assert level_bound(read_noise_floor(white)) is None
    decided: dict = {}
    denoise(noisy[0].permute(1, 2, 0).numpy(), report=decided)
    assert decided["bound"] == pytest.approx(route.bound, rel=1e-5)


def test_no_bound_where_even_the_flattest_blocks_are_busy():
    """A photo with no flat area (gravel, grass filling the frame) reads high in both floors,
    the coarse one well above the fine one as coarse grain does: its fine floor withholds the
    bound, which would paint the texture over."""
    from malleconv.inference.auto import BOUND_MAX_FINE, BOUND_RATIO, level_bound

    rng = np.random.default_rng(5)
    busy = rng.normal(0, 30, (128, 128, 3)).repeat(2, axis=0).repeat(2, axis=1)
    busy = np.clip(128 + busy + rng.normal(0, 7, busy.shape), 0, 255).round().astype(np.uint8)
    floor = read_noise_floor(busy)
    assert floor.fine >= BOUND_MAX_FINE and floor.coarse >= BOUND_RATIO * floor.fine
    assert level_bound(floor) is None
    assert level_bound(floor, max_fine=np.inf) == pytest.approx(floor.coarse)
    blind = EstimatedLevel(_blind())
    route = AutoDenoiser(_blind().denoiser, blind, ("w", "b")).route(busy)
    assert route.sigma is None and route.bound is None and blind.min_level is None


def test_merge_half_keeps_the_high_band_and_takes_the_low_band():
    """``merge_half`` gives the full output back where the half pass agrees with its block
    means (odd sizes too), and otherwise moves the 2x2 means to the half pass's."""
    from malleconv.inference.auto import half_resolution, merge_half

    g = torch.Generator().manual_seed(9)
    for h, w in ((1, 1), (7, 10), (33, 32)):
        full = torch.rand(2, 3, h, w, generator=g)
        half = half_resolution(full)
        assert half.shape == (2, 3, (h + 1) // 2, (w + 1) // 2)
        torch.testing.assert_close(merge_half(full, half), full)
        # A constant shift of the low band shifts every pixel.
        torch.testing.assert_close(merge_half(full, half + 0.25), full + 0.25)
    with pytest.raises(ValueError, match="half-resolution output"):
        merge_half(torch.zeros(1, 3, 5, 4), torch.zeros(1, 3, 2, 2))


def test_half_floor_is_the_floor_of_the_block_means():
    from malleconv.inference.noise_floor import read_half_floor

    x = _textured(96, 130)
    means = F.avg_pool2d(x, 2)
    half, direct = read_half_floor(x), read_noise_floor(means)
    assert half.fine == pytest.approx(direct.fine, rel=1e-5)
    assert half.coarse == pytest.approx(direct.coarse, rel=1e-5)
    # The image as uint8 H x W x C reads as its float tensor does.
    u8 = (x[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    assert read_half_floor(u8).level == pytest.approx(read_half_floor(torch.from_numpy(
        u8).permute(2, 0, 1).float() / 255).level, rel=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        read_half_floor(torch.full((1, 3, 16, 16), float("nan")))


@torch.no_grad()
def test_wide_grain_gets_the_half_resolution_pass():
    """Grain two pixels wide reads far higher at half resolution than at full: the blind
    route gets the bound and, at a reading ratio of at least ``half_ratio``, the pass over the
    block means, with the cap and bound read at half resolution; the output is the merge."""
    from malleconv.inference.auto import (
        HalfPass,
        half_resolution,
        merge_half,
    )

    g = torch.Generator().manual_seed(10)
    blotches = torch.randn(1, 3, 64, 64, generator=g) * 8 / 255
    noisy = (_textured(128, 128) + F.interpolate(blotches, scale_factor=2)).clamp(0, 1)
    model = _blind()
    blind = EstimatedLevel(model)
    auto = AutoDenoiser(_blind().denoiser, blind, ("w", "b"), half_ratio=1.5)
    route = auto.route(noisy)
    assert route.bound is not None and route.reading.ratio >= 1.5
    assert route.half == HalfPass.of(noisy) and blind.half == route.half
    out = blind(noisy)
    full = model(noisy, max_level=route.cap, min_level=route.bound)
    low = model(half_resolution(noisy), max_level=route.half.cap, min_level=route.half.bound)
    torch.testing.assert_close(out, merge_half(full, low))
    # Above the reading's ratio, or with the pass off (0), no pass; nor for white noise.
    for ratio in (route.reading.ratio + 1, 0.0):
        auto.half_ratio = ratio
        assert auto.route(noisy).half is None and blind.half is None
    auto.half_ratio = 1.5
    white = _textured(128, 128) + torch.randn(1, 3, 128, 128, generator=g) * 10 / 255
    assert auto.route(white).half is None


def test_a_prepared_model_reports_each_image_own_level():
    """``denoise`` with a prepared automatic mode reused across images reports each image's
    own level, not a running mean over every image it has seen."""
    from malleconv.inference.prepare import prepare_auto

    g = torch.Generator().manual_seed(11)
    blotches = torch.randn(1, 3, 48, 48, generator=g) * 12 / 255
    coarse = (_textured(96, 96) + F.interpolate(blotches, scale_factor=2)).clamp(0, 1)
    mild = (_textured(96, 96, seed=1) + F.avg_pool2d(
        torch.randn(1, 3, 98, 98, generator=g), 3, stride=1) * 4 / 255).clamp(0, 1)
    images = [x[0].permute(1, 2, 0).numpy() for x in (coarse, mild)]
    alone = []
    for image in images:
        decided: dict = {}
        denoise(image, report=decided)
        alone.append(decided["sigma"])
    net = prepare_auto()
    for image, want in zip(images, alone, strict=True):
        decided = {}
        denoise(image, model=net, report=decided)
        assert decided["sigma"] == pytest.approx(want, rel=1e-6)
    assert abs(alone[0] - alone[1]) > 0.5  # the two images do read apart
