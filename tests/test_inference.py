"""Tests for malleconv.inference: noise estimation, tiled inference and the denoise API.

They test the mechanics, not the shipped weights (tests/test_pretrained.py does that), so
the models are small random ones (``mallenet-tiny``) that run in milliseconds. A
freshly created MalleNet is the identity (its last conv and the MalleConv gates start at
0), so :func:`_random_model` gives those non-zero values to make the network actually
depend on its input and context.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import synthetic_image

import malleconv
from malleconv.inference import denoise, denoise_tensor, estimate_sigma
from malleconv.inference.prepare import _cached_model
from malleconv.inference.tiling import _ramp, _tile_starts, _window
from malleconv.models import DnCNN, create_model, save_model


def _random_model(name: str = "mallenet-tiny", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model(name)
    with torch.no_grad():
        torch.nn.init.normal_(model.tail[-1].weight, std=0.05)
        for pname, p in model.named_parameters():
            if pname.endswith("gate"):
                p.fill_(0.5)
    return model.eval()


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: the tests run on small shared machines, where two threads
    competing with other processes for two cores are many times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return _random_model()


def _noisy(h: int, w: int, sigma: float = 25.0, seed: int = 0) -> torch.Tensor:
    """A synthetic photo-like (1, 3, h, w) image plus Gaussian noise, not clipped."""
    clean = torch.from_numpy(synthetic_image(seed, h, w)).permute(2, 0, 1)[None].float() / 255
    gen = torch.Generator().manual_seed(seed)
    return clean + torch.randn(clean.shape, generator=gen) * (sigma / 255)


# --------------------------------------------------------------------------------------------
# Tiling


@pytest.mark.parametrize("size", [65, 100, 150, 170, 600, 1000])
@pytest.mark.parametrize("tile,overlap", [(64, 16), (64, 32), (128, 0), (512, 32)])
def test_tile_starts_cover_with_full_tiles(size, tile, overlap):
    starts = _tile_starts(size, tile, overlap)
    assert starts[0] == 0
    assert starts[-1] + min(tile, size) == size  # last tile ends on the border, full size
    assert all(0 <= s <= size - min(tile, size) for s in starts)
    for a, b in zip(starts, starts[1:]):
        assert tile - (b - a) >= overlap  # neighbours overlap by at least `overlap`


def test_small_axis_is_one_tile():
    assert _tile_starts(50, 64, 16) == [0]
    assert _tile_starts(64, 64, 16) == [0]


def test_window_ramps_are_a_partition_of_unity():
    ramp = _ramp(16)
    assert torch.allclose(ramp + ramp.flip(0), torch.ones(16, dtype=ramp.dtype))
    assert float(ramp.min()) > 0
    w = _window(64, ramp, left=True, right=False)
    assert torch.equal(w[16:], torch.ones(48, dtype=w.dtype))
    assert torch.equal(_window(64, ramp, False, False), torch.ones(64, dtype=w.dtype))


def test_tiled_identity_model_is_exact():
    """The blending itself adds nothing: with an identity network (a fresh MalleNet) the
    tiled result equals the input to float precision, on sizes that are not tile multiples."""
    identity = create_model("mallenet-tiny").eval()
    x = torch.rand(2, 3, 150, 170) * 1.2 - 0.1
    y = denoise_tensor(identity, x, 25.0, tile=64, overlap=16)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)


def test_tiled_matches_untiled(model):
    """Tile 64 / overlap 16 on a 150x170 image: mean |diff| < 1e-2, max bounded.

    Tiled and whole-image results cannot agree exactly: the network's receptive field
    (about +-34 pixels for mallenet-tiny, the MalleConv kernel predictor works at 1/16
    resolution) is wider than half a 64-pixel tile, so no pixel of a tile sees all the
    context it sees in the whole image. The blending gives tile borders almost no weight,
    so the remaining differences are small and spread out (mean < 1e-2, away from the image
    border max < 0.05). The largest ones are on the last rows and columns: the whole
    150x170 image is reflect-padded by the model to 152x176 while the 64-pixel tiles need no
    padding, so there the two runs see different content beyond the border (max < 0.2 for
    these random weights).
    """
    x = _noisy(150, 170)
    whole = denoise_tensor(model, x, 25.0)
    tiled = denoise_tensor(model, x, 25.0, tile=64, overlap=16)
    diff = (whole - tiled).abs()
    assert (whole - x).abs().mean() > 0.01  # the model does change the image
    assert diff.mean() < 1e-2
    assert diff[..., :-8, :-8].max() < 0.05
    assert diff.max() < 0.2


def test_tiled_matches_untiled_small_receptive_field():
    """With a receptive field (+-3 px) well inside the overlap (16 px) tiles are nearly
    exact: only pixels within 3 px of a tile border differ, and they get weights < 0.06."""
    torch.manual_seed(0)
    net = DnCNN(in_channels=3, depth=3, width=16).eval()
    x = _noisy(152, 168)
    whole = denoise_tensor(net, x, 25.0)
    tiled = denoise_tensor(net, x, 25.0, tile=64, overlap=16)
    diff = (whole - tiled).abs()
    assert diff.max() < 1e-2
    assert diff.mean() < 1e-4


def test_large_image_runs_tiled(model):
    x = _noisy(600, 500)
    calls = []
    y = denoise_tensor(
        model, x, 25.0, tile=256, overlap=32, progress=lambda d, t: calls.append((d, t))
    )
    assert y.shape == x.shape and torch.isfinite(y).all()
    total = len(_tile_starts(600, 256, 32)) * len(_tile_starts(500, 256, 32))
    assert total > 1 and calls[-1] == (total, total) and len(calls) == total


@pytest.mark.parametrize("h,w", [(1, 1), (3, 5), (1, 40), (40, 1)])
def test_tiny_images(model, h, w):
    x = torch.rand(1, 3, h, w)
    assert denoise_tensor(model, x, 25.0).shape == x.shape
    assert denoise_tensor(model, x, 25.0, tile=16, overlap=4).shape == x.shape
    out = denoise(np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8), 25, model)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


def test_tile_only_along_the_long_side(model):
    x = _noisy(40, 300)
    y = denoise_tensor(model, x, 25.0, tile=64, overlap=16)
    assert y.shape == x.shape


def test_bad_tile_arguments(model):
    x = torch.rand(1, 3, 80, 80)
    with pytest.raises(ValueError, match="tile"):
        denoise_tensor(model, x, 25.0, tile=8)
    with pytest.raises(ValueError, match="overlap"):
        denoise_tensor(model, x, 25.0, tile=64, overlap=40)


@pytest.mark.parametrize("tile, overlap, name", [
    (8, 2, "tile"), (-1, 0, "tile"), (20.5, 4, "tile"), (True, 0, "tile"), ("64", 8, "tile"),
    (16, 16, "overlap"), (64, -3, "overlap"), (None, -3, "overlap"), (64, 4.5, "overlap"),
])
def test_denoise_checks_tile_and_overlap_as_the_command_does(model, tile, overlap, name):
    """Both the whole-image and the streamed path refuse what ``--tile`` refuses."""
    with pytest.raises(ValueError, match=f"^{name} must"):
        denoise(_image(np.uint8, 3, 40, 40), 25, model, tile=tile, overlap=overlap)


def test_tile_zero_means_no_tiling(model):
    img = _image(np.uint8, 3, 40, 40)
    np.testing.assert_array_equal(denoise(img, 25, model, tile=0), denoise(img, 25, model))


def test_big_endian_arrays_come_back_big_endian(model):
    img = _image(np.uint16, 3)
    out = denoise(img.astype(">u2"), 25, model)
    assert out.dtype == np.dtype(">u2")
    np.testing.assert_array_equal(out, denoise(img, 25, model))


def test_denoise_tensor_restores_training_mode_and_returns_normal_tensor():
    net = _random_model()
    net.train()
    y = denoise_tensor(net, torch.rand(1, 3, 20, 20), 10.0)
    assert net.training
    assert not y.is_inference()
    y += 1  # in place works outside inference mode
    y2 = denoise_tensor(net.eval(), torch.rand(1, 3, 100, 100), 10.0, tile=64, overlap=16)
    assert not y2.is_inference()


def test_denoise_tensor_accepts_sigma_per_image_and_map(model):
    x = _noisy(80, 90).expand(2, -1, -1, -1).contiguous()
    per_image = denoise_tensor(model, x, torch.tensor([25.0, 25.0]), tile=64, overlap=16)
    scalar = denoise_tensor(model, x, 25.0, tile=64, overlap=16)
    full_map = denoise_tensor(model, x, torch.full((2, 1, 80, 90), 25.0), tile=64, overlap=16)
    torch.testing.assert_close(per_image, scalar)
    torch.testing.assert_close(full_map, scalar)


# --------------------------------------------------------------------------------------------
# denoise(): kinds, dtypes, shapes, channels


def _image(dtype, channels: int | None, h: int = 24, w: int = 20) -> np.ndarray:
    rng = np.random.default_rng(1)
    shape = (h, w) if channels is None else (h, w, channels)
    if dtype == np.float32:
        return rng.random(shape, dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4])
def test_denoise_keeps_dtype_and_shape(model, dtype, channels):
    img = _image(dtype, channels)
    out = denoise(img, sigma=20, model=model)
    assert out.dtype == img.dtype and out.shape == img.shape
    if dtype == np.float32:
        assert out.min() >= 0 and out.max() <= 1
    if channels in (2, 4):
        np.testing.assert_array_equal(out[..., -1], img[..., -1])  # alpha untouched
        assert not np.array_equal(out[..., :-1], img[..., :-1])
    else:
        assert not np.array_equal(out, img)


class _TiledInside(torch.nn.Module):
    """``model`` run by ``denoise_tensor`` with tiles, seen by ``denoise`` as one network."""

    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.config = model.config

    def forward(self, x, sigma):
        return denoise_tensor(self.inner, x, sigma, tile=64, overlap=16)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _image(np.uint8, 3, 150, 170),
        lambda: _image(np.uint16, 4, 150, 170),
        lambda: _image(np.float32, None, 170, 150),
        lambda: _image(np.float32, 2, 90, 150).astype(np.float64),
        lambda: torch.from_numpy(_image(np.uint8, 4, 100, 130)).permute(2, 0, 1).repeat(2, 1, 1, 1),
        lambda: torch.rand(130, 100),
    ],
    ids=["u8-rgb", "u16-rgba", "f32-gray", "f64-gray-alpha", "tensor-u8-rgba-batch", "tensor-2d"],
)
@pytest.mark.parametrize("sigma", [25, "auto"])
def test_big_images_stream_tiles_with_the_same_result(model, make, sigma):
    """``denoise(..., tile=...)`` on an image larger than a tile never converts the whole
    image to float; its result equals the whole-image path (conversion, channels, alpha)
    around a tiled ``denoise_tensor``, up to one unit of rounding in integer outputs."""
    img = make()
    streamed = denoise(img, sigma, model, tile=64, overlap=16)
    reference = denoise(img, sigma, _TiledInside(model).eval())
    assert type(streamed) is type(img) and streamed.shape == img.shape
    assert streamed.dtype == img.dtype
    a, b = (np.asarray(t, dtype=np.float64) for t in (streamed, reference))
    tolerance = 1.0 if np.dtype(str(img.dtype).replace("torch.", "")).kind == "u" else 1e-5
    assert np.abs(a - b).max() <= tolerance
    if torch.is_tensor(img) and img.dim() == 4:
        assert torch.equal(streamed[:, -1], img[:, -1])  # alpha untouched
    elif img.ndim == 3 and img.shape[-1] in (2, 4):
        np.testing.assert_array_equal(streamed[..., -1], img[..., -1])


def test_float64_and_float16_arrays(model):
    img = _image(np.float32, 3).astype(np.float64)
    assert denoise(img, 10, model).dtype == np.float64
    assert denoise(img.astype(np.float16), 10, model).dtype == np.float16


@pytest.mark.parametrize(
    "shape", [(24, 20), (1, 24, 20), (3, 24, 20), (4, 24, 20), (2, 3, 24, 20), (2, 4, 24, 20)]
)
def test_denoise_tensors_keep_dtype_and_shape(model, shape):
    x = torch.rand(shape, dtype=torch.float32)
    out = denoise(x, sigma=15, model=model)
    assert torch.is_tensor(out) and out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    if len(shape) >= 3 and shape[-3] == 4:
        assert torch.equal(out[..., 3, :, :], x[..., 3, :, :])  # alpha untouched


def test_denoise_uint8_and_float64_tensors(model):
    x8 = torch.randint(0, 256, (3, 24, 20), dtype=torch.uint8)
    out8 = denoise(x8, 15, model)
    assert out8.dtype == torch.uint8 and out8.shape == x8.shape
    x64 = torch.rand(1, 3, 24, 20, dtype=torch.float64)
    out64 = denoise(x64, 15, model)
    assert out64.dtype == torch.float64 and out64.shape == x64.shape


def test_alpha_untouched_bit_exact(model):
    img = _image(np.float32, 4).astype(np.float64)
    img[..., 3] = np.linspace(0, 1, img[..., 3].size).reshape(img.shape[:2]) * (1 + 1e-12)
    out = denoise(img, 25, model)
    np.testing.assert_array_equal(out[..., 3], img[..., 3])


def test_float_input_outside_range_is_used_and_output_clipped(model):
    rng = np.random.default_rng(0)
    img = (0.5 + rng.normal(0, 0.4, (32, 32, 3))).astype(np.float32)  # strays outside [0, 1]
    out = denoise(img, 50, model)
    assert out.min() >= 0 and out.max() <= 1
    expected = denoise_tensor(model, torch.from_numpy(img).permute(2, 0, 1)[None], 50.0)
    np.testing.assert_allclose(
        out, expected[0].permute(1, 2, 0).clamp(0, 1).numpy(), atol=1e-6, rtol=0
    )


def test_gray_image_with_colour_model_is_mean_of_channels(model):
    gray = _image(np.float32, None, 40, 36)
    out = denoise(gray, 25, model)
    x = torch.from_numpy(gray)[None, None].expand(1, 3, -1, -1)
    expected = denoise_tensor(model, x, 25.0).mean(dim=1)[0].clamp(0, 1).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6, rtol=0)


def test_gray_model():
    gray_model = _random_model("mallenet-s-gray")
    img = _image(np.uint8, None, 30, 30)
    assert denoise(img, 25, gray_model).shape == img.shape
    assert denoise(_image(np.uint8, 2), 25, gray_model).shape == (24, 20, 2)
    with pytest.raises(ValueError, match="gray"):
        denoise(_image(np.uint8, 3), 25, gray_model)


@pytest.mark.parametrize("bad", [-1, 75.5, 200, float("nan"), "loud"])
def test_sigma_out_of_range_is_rejected(model, bad):
    with pytest.raises(ValueError, match=r"sigma.*\[0, 75\]"):
        denoise(_image(np.uint8, 3), sigma=bad, model=model)


def test_sigma_auto_uses_the_estimate(model):
    img = (_noisy(64, 64, 30.0)[0].permute(1, 2, 0).numpy()).astype(np.float32)
    est = estimate_sigma(img)
    assert 20 < est < 40
    explicit = denoise(img, est, model)
    np.testing.assert_array_equal(denoise(img, None, model), explicit)
    np.testing.assert_array_equal(denoise(img, "auto", model), explicit)


def test_bad_inputs(model):
    with pytest.raises(ValueError, match="shape"):
        denoise(np.zeros((4, 4, 5), np.uint8), 10, model)
    with pytest.raises(TypeError):
        denoise(np.zeros((4, 4), np.int32), 10, model)
    with pytest.raises(ValueError, match="NaN"):
        denoise(np.full((4, 4), np.nan, np.float32), 10, model)
    with pytest.raises(TypeError):
        denoise([[0.5]], 10, model)


def test_model_by_path_is_cached(tmp_path):
    path = save_model(_random_model(), tmp_path / "tiny.safetensors", half=False)
    img = _image(np.uint8, 3)
    first = denoise(img, 25, str(path))
    hits = _cached_model.cache_info().hits
    second = denoise(img, 25, path)
    assert _cached_model.cache_info().hits == hits + 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, denoise(img, 25, _random_model()))


def test_missing_model_and_bad_device(tmp_path, model):
    with pytest.raises(FileNotFoundError):
        denoise(_image(np.uint8, 3), 25, tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="device"):
        denoise(_image(np.uint8, 3), 25, model, device="meta")
    with pytest.raises(ValueError, match="device 'gpu'"):
        denoise(_image(np.uint8, 3), 25, "mallenet-s", device="gpu")
    with pytest.raises(ValueError, match="sigma"):
        denoise(_image(np.uint8, 3), True, model)


def test_package_exports():
    assert malleconv.denoise is denoise
    assert malleconv.estimate_sigma is estimate_sigma
    for name in ("denoise", "estimate_sigma", "load_model", "create_model"):
        assert name in malleconv.__all__ and hasattr(malleconv, name)


# --------------------------------------------------------------------------------------------
# Noise estimation


def _smooth_image(h: int = 256, w: int = 256) -> np.ndarray:
    """A smooth pattern (gradient plus low-frequency waves), values in [0.2, 0.8]."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    return 0.45 + 0.2 * np.sin(2 * np.pi * 2 * xx) * np.cos(2 * np.pi * 1.5 * yy) + 0.1 * xx


@pytest.mark.parametrize("sigma", [10, 25, 50])
def test_estimate_sigma_within_15_percent(sigma):
    """Known added Gaussian noise on a smooth image is estimated within +-15 %."""
    rng = np.random.default_rng(sigma)
    clean = _smooth_image()
    gray = clean + rng.normal(0, sigma / 255, clean.shape)
    assert estimate_sigma(gray) == pytest.approx(sigma, rel=0.15)
    rgb = np.stack([clean] * 3, -1) + rng.normal(0, sigma / 255, (*clean.shape, 3))
    assert estimate_sigma(rgb.astype(np.float32)) == pytest.approx(sigma, rel=0.15)
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)
    assert estimate_sigma(tensor) == pytest.approx(estimate_sigma(rgb), rel=1e-4)
    assert estimate_sigma(tensor[None]) == pytest.approx(estimate_sigma(rgb), rel=1e-4)


def test_estimate_sigma_on_clean_and_tiny_images():
    assert estimate_sigma(_smooth_image()) < 0.5
    assert estimate_sigma(np.zeros((1, 1))) == 0.0
    assert estimate_sigma(torch.zeros(3, 1, 7)) == 0.0


def test_estimate_sigma_integer_images_and_alpha():
    rng = np.random.default_rng(0)
    noisy = np.clip(_smooth_image() + rng.normal(0, 20 / 255, (256, 256)), 0, 1)
    as8 = np.rint(noisy * 255).astype(np.uint8)
    as16 = np.rint(noisy * 65535).astype(np.uint16)
    assert estimate_sigma(as8) == pytest.approx(20, rel=0.15)
    assert estimate_sigma(as16) == pytest.approx(estimate_sigma(noisy), rel=1e-3)
    rgba = np.dstack([as8] * 3 + [rng.integers(0, 256, as8.shape, dtype=np.uint8)])
    assert estimate_sigma(rgba) == pytest.approx(estimate_sigma(as8))  # alpha ignored


def test_estimate_sigma_is_clamped():
    rng = np.random.default_rng(0)
    assert estimate_sigma(rng.normal(0.5, 1.0, (64, 64))) == 75.0
    with pytest.raises(ValueError, match="NaN"):
        estimate_sigma(np.full((8, 8), np.inf))
    one_nan = np.zeros((8, 8))
    one_nan[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        estimate_sigma(one_nan)
    assert math.isfinite(estimate_sigma(np.zeros((8, 8))))


def test_self_ensemble_option(model):
    """``self_ensemble=True`` is the model averaged over the 8 flips/rotations, tiled or not."""
    from malleconv.models import SelfEnsemble

    img = np.clip(_noisy(40, 56)[0].permute(1, 2, 0).numpy(), 0, 1).astype(np.float32)
    plain = denoise(img, 25, model)
    ens = denoise(img, 25, model, self_ensemble=True)
    reference = denoise(img, 25, SelfEnsemble(model).eval())
    assert ens.shape == img.shape and ens.dtype == img.dtype
    np.testing.assert_allclose(ens, reference, atol=1e-6)
    assert np.abs(ens - plain).max() > 1e-4
    tiled = denoise(img, 25, model, tile=32, overlap=8, self_ensemble=True)
    assert tiled.shape == img.shape


def test_bfloat16_precision_option(model):
    """``precision="bfloat16"`` runs the model under autocast: close to float32, every
    input kind keeps its dtype and shape, alpha stays bit-exact, tiling works."""
    from malleconv.models import Autocast

    img = np.clip(_noisy(40, 56)[0].permute(1, 2, 0).numpy(), 0, 1).astype(np.float32)
    full = denoise(img, 25, model)
    half = denoise(img, 25, model, precision="bfloat16")
    reference = denoise(img, 25, Autocast(model))
    np.testing.assert_array_equal(half, reference)
    assert half.dtype == np.float32 and half.shape == img.shape
    assert 0 < np.abs(half - full).max() < 0.05
    rgba = np.concatenate([(img * 65535).astype(np.uint16), np.full((40, 56, 1), 7, np.uint16)], 2)
    for x in (
        img[..., 0],
        (img * 255).astype(np.uint8),
        rgba,
        torch.from_numpy(img).permute(2, 0, 1),
    ):
        out = denoise(x, 25, model, precision="bfloat16")
        assert out.dtype == x.dtype and out.shape == x.shape
    assert (denoise(rgba, 25, model, precision="bfloat16")[..., 3] == 7).all()
    tiled = denoise(img, 25, model, tile=32, overlap=8, precision="bfloat16")
    assert np.abs(tiled - half).max() < 0.05
    with pytest.raises(ValueError, match="precision"):
        denoise(img, 25, model, precision="float16")


# --------------------------------------------------------------------------------------------
# Model preparation


def test_prepare_model_folds_batchnorm_caches_and_wraps_in_order(tmp_path):
    """By name or path: BatchNorm folded, channels-last, cached; then self-ensemble inside
    autocast. A module is used as it is, and ``auto`` leaves non-blind models alone."""
    from malleconv.inference import estimated_levels, prepare_model
    from malleconv.models import Autocast, SelfEnsemble

    path = save_model(_random_model(), tmp_path / "tiny.safetensors", half=False)
    base = prepare_model(path)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in base.modules())
    convs = [m for m in base.modules() if isinstance(m, torch.nn.Conv2d)]
    conv = next(m for m in convs if m.kernel_size[0] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert prepare_model(str(path)) is base and not base.training
    net = prepare_model(path, self_ensemble=True, precision="bfloat16")
    assert isinstance(net, Autocast) and isinstance(net.model, SelfEnsemble)
    assert net.model.model is base and not net.training
    assert prepare_model(path, auto=True, strength=2.0) is base
    assert estimated_levels(net) is None
    module = _random_model()
    assert prepare_model(module) is module
    assert prepare_model(None, auto=False).model_name == "mallenet-s"
    with pytest.raises(ValueError, match="precision"):
        prepare_model(module, precision="float16")
    with pytest.raises(ValueError, match="strength"):
        prepare_model(module, strength=0)


def test_prepare_model_untrained_for_speed_benchmarks():
    from malleconv.inference import prepare_model

    net = prepare_model("mallenet-tiny", pretrained=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert prepare_model("mallenet-tiny", pretrained=False) is not net  # not cached
