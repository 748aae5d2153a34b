"""Synthetic camera noise: the statistics it claims, demosaicing, determinism."""

import math

import numpy as np
import pytest
import torch

from malleconv.data.camera_noise import (
    CameraNoiseRanges,
    add_camera_noise,
    camera_noise_draw,
    demosaic_bilinear,
    demosaic_malvar,
    enlarge_camera_noise,
    local_noise_std,
    mosaic_masks,
    soften_scene,
)

# One fixed sensor and ISP, nothing after the tone curve: statistics with a known shape.
PINNED = CameraNoiseRanges(
    log_shot=(math.log(4e-3), math.log(4e-3)),
    read_jitter=0.0,
    red_gain=(2.0, 2.0),
    blue_gain=(1.7, 1.7),
    ccm_mix=(0.2, 0.2),
    malvar_prob=0.0,
    sharpen_prob=0.0,
    chroma_smooth_prob=0.0,
    smooth_prob=0.0,
    jpeg_prob=0.0,
)


def _neighbour_correlation(noise: torch.Tensor) -> float:
    """Mean correlation of horizontally adjacent pixels of ``(B, C, H, W)`` noise."""
    n = noise - noise.mean(dim=(-2, -1), keepdim=True)
    return float((n[..., 1:] * n[..., :-1]).mean() / n.pow(2).mean())


def _channel_correlation(noise: torch.Tensor) -> float:
    flat = noise.permute(1, 0, 2, 3).reshape(3, -1).double().numpy()
    cc = np.corrcoef(flat)
    return float((cc[0, 1] + cc[0, 2] + cc[1, 2]) / 3)


def _flat(level: float, size: int = 96, batch: int = 4) -> torch.Tensor:
    return torch.full((batch, 3, size, size), level)


def test_camera_noise_is_spatially_and_across_channel_correlated():
    clean = _flat(0.45)
    noisy = add_camera_noise(clean, torch.Generator().manual_seed(0), PINNED)
    noise = (noisy - clean)[..., 8:-8, 8:-8]
    # Demosaicing spreads each site's noise over its neighbours; white noise gives about 0.
    assert 0.3 < _neighbour_correlation(noise) < 0.9
    white = torch.randn_like(noise)
    assert abs(_neighbour_correlation(white)) < 0.05


def test_in_camera_chroma_smoothing_correlates_the_channels():
    # The colour matrix alone anti-correlates the channels' noise; cameras' chroma noise
    # reduction (and 4:2:0 JPEG) leave mostly luma noise, shared by R, G and B.
    plain = add_camera_noise(_flat(0.45), torch.Generator().manual_seed(0), PINNED) - 0.45
    smoothed = CameraNoiseRanges(**{**PINNED.__dict__, "chroma_smooth_prob": 1.0})
    noisy = add_camera_noise(_flat(0.45), torch.Generator().manual_seed(0), smoothed)
    assert _channel_correlation(plain) < 0
    assert _channel_correlation(noisy - 0.45) > 0.1


def test_smoothing_raises_the_correlation_to_the_camera_range():
    smooth = CameraNoiseRanges(
        **{**PINNED.__dict__, "smooth_prob": 1.0, "smooth_sigma": (1.2, 1.2)}
    )
    clean = _flat(0.45)
    noisy = add_camera_noise(clean, torch.Generator().manual_seed(0), smooth)
    noise = (noisy - clean)[..., 8:-8, 8:-8]
    assert _neighbour_correlation(noise) > 0.7


def test_noise_grows_with_brightness_until_the_tone_curve_flattens():
    # Shot noise: variance proportional to the signal in linear space.
    gen = torch.Generator().manual_seed(1)
    stds = []
    for level in (0.15, 0.35):
        clean = _flat(level)
        stds.append(float((add_camera_noise(clean, gen, PINNED) - clean).std()))
    assert stds[1] > stds[0] > 0


def test_published_ranges_give_levels_from_clean_to_very_noisy():
    gen = torch.Generator().manual_seed(2)
    clean = _flat(0.4, size=64, batch=48)
    noise = add_camera_noise(clean, gen) - clean
    per_image = noise.flatten(1).std(dim=1) * 255
    assert per_image.min() < 3.0 and per_image.max() > 12.0
    assert 3.0 < per_image.median() < 20.0


def test_same_generator_state_same_noise():
    clean = torch.rand(2, 3, 32, 32)
    a = add_camera_noise(clean, torch.Generator().manual_seed(5))
    b = add_camera_noise(clean, torch.Generator().manual_seed(5))
    c = add_camera_noise(clean, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == clean.shape and a.min() >= 0 and a.max() <= 1
    # Quantised to 8 bits, as a camera's output is.
    assert torch.equal((a * 255).round(), a * 255) or torch.allclose((a * 255).round(), a * 255)


@pytest.mark.parametrize("demosaic", [demosaic_bilinear, demosaic_malvar])
@pytest.mark.parametrize("phase", range(4))
def test_demosaic_reconstructs_smooth_gray_ramps(demosaic, phase):
    h, w = 24, 28
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ramp = (0.2 + 0.01 * yy + 0.005 * xx).float()
    rgb = ramp.expand(1, 3, h, w)
    masks = mosaic_masks(h, w, phase)
    mosaic = (rgb * masks).sum(dim=1, keepdim=True)
    out = demosaic(mosaic, masks)
    torch.testing.assert_close(out[..., 3:-3, 3:-3], rgb[..., 3:-3, 3:-3], atol=1e-5, rtol=0)


def test_mosaic_masks_cover_every_site_once():
    masks = mosaic_masks(6, 8, 3)
    assert torch.equal(masks.sum(dim=0), torch.ones(6, 8))
    assert masks[1].sum() == 24  # half the sites are green


def test_local_noise_std_reads_the_level_of_white_noise():
    gen = torch.Generator().manual_seed(3)
    clean = torch.rand(2, 3, 64, 64, generator=gen)
    noisy = clean + torch.randn(clean.shape, generator=gen) * (20 / 255)
    level = local_noise_std(noisy, clean)
    assert level.shape == (2, 1, 64, 64)
    assert abs(float(level.mean()) - 20) < 1.0


def test_ranges_round_trip_through_a_config_mapping_and_reject_bad_values():
    mapping = PINNED.as_mapping()
    assert (
        mapping["smooth_sigma"] == [0.3, 1.2] and CameraNoiseRanges.from_mapping(mapping) == PINNED
    )
    with pytest.raises(ValueError, match="unknown camera noise parameter"):
        CameraNoiseRanges.from_mapping({"iso": 100})
    with pytest.raises(ValueError, match="chroma_smooth_sigma must be a range"):
        CameraNoiseRanges(chroma_smooth_sigma=(2.0, 0.5))


def test_ranges_take_name_value_settings_as_the_config_section_does():
    ranges = CameraNoiseRanges().with_settings(["smooth_prob=0.8", "jpeg_quality=[90, 98]"])
    assert ranges.smooth_prob == 0.8 and ranges.jpeg_quality == (90, 98)
    assert ranges.smooth_sigma == CameraNoiseRanges().smooth_sigma
    assert CameraNoiseRanges().with_settings([]) == CameraNoiseRanges()
    with pytest.raises(ValueError, match="smooth_prb"):
        CameraNoiseRanges().with_settings(["smooth_prb=0.8"])
    with pytest.raises(ValueError, match="smooth_prob must be in"):
        CameraNoiseRanges().with_settings(["smooth_prob=1.5"])
    with pytest.raises(ValueError, match="name=value"):
        CameraNoiseRanges().with_settings(["smooth_prob"])


def _finest_to_next_scale(x: torch.Tensor) -> float:
    """Energy of the 1-pixel Haar detail over that of the 2-pixel detail (white: 1)."""

    def detail(y):
        a, b = y[..., 0::2, 0::2], y[..., 0::2, 1::2]
        c, d = y[..., 1::2, 0::2], y[..., 1::2, 1::2]
        energy = ((a - b + c - d) ** 2 + (a + b - c - d) ** 2 + (a - b - c + d) ** 2).mean()
        return float(energy), (a + b + c + d) / 4

    e1, low = detail(x)
    e2, _ = detail(low)
    return e1 / e2


def test_soften_scene_blurs_the_finest_scale_only_when_asked():
    scene = torch.rand(4, 3, 64, 64)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(soften_scene(scene, gen, CameraNoiseRanges()), scene)  # off by default
    ranges = CameraNoiseRanges(optics_prob=1.0, optics_sigma=(0.7, 0.7))
    soft = soften_scene(scene, torch.Generator().manual_seed(0), ranges)
    again = soften_scene(scene, torch.Generator().manual_seed(0), ranges)
    assert torch.equal(soft, again)
    # A camera's pixels are soft: the finest scale loses most of its energy against the next.
    assert _finest_to_next_scale(soft) < 0.5 * _finest_to_next_scale(scene)
    assert torch.allclose(soft.mean(), scene.mean(), atol=1e-3)
    half = soften_scene(scene, torch.Generator().manual_seed(1), CameraNoiseRanges(optics_prob=0.5))
    kept = [torch.equal(half[i], scene[i]) for i in range(4)]
    assert any(kept) or not all(kept)
    with pytest.raises(ValueError, match="optics_prob"):
        CameraNoiseRanges(optics_prob=1.5)


def test_enlarged_photos_carry_wider_grain_on_their_enlarged_small_scene():
    clean = _flat(0.45, size=96)
    off = CameraNoiseRanges(jpeg_prob=0.0)
    scene, noisy = enlarge_camera_noise(clean, torch.Generator().manual_seed(0), off)
    # Off by default: the images' own camera noise, drawn as add_camera_noise draws it.
    assert torch.equal(scene, clean)
    gen = torch.Generator().manual_seed(0)
    # Each image's choice and factor come before its noise.
    torch.rand((), generator=gen), torch.rand((), generator=gen, dtype=torch.float64)
    assert torch.equal(noisy[:1], add_camera_noise(clean[:1], gen, off))

    ranges = CameraNoiseRanges(jpeg_prob=0.0, enlarge_prob=1.0, enlarge_factor=(2.5, 2.5))
    scene, noisy = enlarge_camera_noise(clean, torch.Generator().manual_seed(0), ranges)
    again = enlarge_camera_noise(clean, torch.Generator().manual_seed(0), ranges)
    assert torch.equal(scene, again[0]) and torch.equal(noisy, again[1])
    assert torch.allclose(scene, clean, atol=1e-6)  # a flat scene stays flat
    assert torch.equal(noisy, (noisy * 255).round() / 255)  # an 8-bit image
    native = add_camera_noise(clean, torch.Generator().manual_seed(0), off)
    wide = _neighbour_correlation((noisy - scene)[..., 8:-8, 8:-8])
    assert wide > _neighbour_correlation((native - clean)[..., 8:-8, 8:-8]) + 0.15
    assert wide > 0.8
    with pytest.raises(ValueError, match="enlarge_factor"):
        CameraNoiseRanges(enlarge_factor=(3.0, 2.0))


def test_validation_draws_are_named_and_soften_the_reference_with_the_scene():
    from malleconv.data.noise import seed_for

    clean = np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    reference, noisy = camera_noise_draw(clean, "a.png", 1)
    x = torch.from_numpy(clean.astype(np.float32) / 255).permute(2, 0, 1)[None]
    expected = add_camera_noise(x, torch.Generator().manual_seed(seed_for("a.png", 1)))
    assert reference is clean and torch.equal(noisy, expected)
    soft_ranges = CameraNoiseRanges(optics_prob=1.0)
    soft_reference, soft_noisy = camera_noise_draw(clean, "a.png", 1, soft_ranges)
    assert soft_reference.dtype == np.uint8 and soft_reference.shape == clean.shape
    assert (
        np.abs(np.diff(soft_reference.astype(float), axis=1)).mean()
        < 0.7 * np.abs(np.diff(clean.astype(float), axis=1)).mean()
    )
    again = camera_noise_draw(clean, "a.png", 1, soft_ranges)
    assert np.array_equal(again[0], soft_reference) and torch.equal(again[1], soft_noisy)
    # Enlarged draws: the reference is the enlarged small scene, the noise the same draw's.
    wide_ranges = CameraNoiseRanges(enlarge_prob=1.0)
    wide_reference, wide_noisy = camera_noise_draw(clean, "a.png", 1, wide_ranges)
    scene, expected = enlarge_camera_noise(
        x, torch.Generator().manual_seed(seed_for("a.png", 1)), wide_ranges
    )
    assert torch.equal(wide_noisy, expected) and wide_reference.dtype == np.uint8
    assert np.array_equal(wide_reference, (scene[0].permute(1, 2, 0).numpy() * 255).round())
