"""Tests for malleconv.data: synthetic noise and image-folder datasets."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from malleconv.data import (
    ImageFolderPatches,
    add_gaussian_noise,
    apply_augmentation,
    noise_level_map,
    seed_for,
)
from malleconv.io import ImageReadError, rgb_to_gray, write_image

P = 16


def _image(seed: int, shape=(32, 48, 3), dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)


@pytest.fixture
def folder(tmp_path):
    """Three images: 8-bit RGB PNG, 16-bit gray PNG, 8-bit RGB BMP in a subfolder."""
    root = tmp_path / "train"
    write_image(root / "a.png", _image(0))
    write_image(root / "b.png", _image(1, (40, 24), np.uint16))
    write_image(root / "sub" / "c.bmp", _image(2, (20, 36, 3)))
    return root


# ------------------------------------------------------------------------------------------
# Noise


def test_seed_for_is_stable():
    # Literal computed once: must not change across runs, Python versions or platforms.
    assert seed_for("0001.png", 25) == 1979562106032706614
    assert seed_for("0001.png", 25.0) == seed_for("0001.png", np.float32(25))
    digest = hashlib.sha256(b"0001.png:25").digest()
    assert seed_for("0001.png", 25) == int.from_bytes(digest[:8], "little") & (2**63 - 1)
    assert seed_for("0001.png", 50) != seed_for("0001.png", 25) != seed_for("0002.png", 25)
    assert 0 <= seed_for("x", 12.5) < 2**63


@pytest.mark.parametrize("bad", [-1, 75.5, 100, float("nan"), torch.tensor([10.0, 80.0])])
def test_sigma_outside_range_is_rejected(bad):
    clean = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"sigma.*\[0, 75\]"):
        add_gaussian_noise(clean, bad)
    with pytest.raises(ValueError, match="sigma"):
        noise_level_map(bad, clean)
    if not isinstance(bad, torch.Tensor):
        with pytest.raises(ValueError, match="sigma"):
            seed_for("x", bad)


def test_add_gaussian_noise_statistics_and_reproducibility():
    clean = torch.zeros(1, 3, 64, 64)
    noisy = add_gaussian_noise(clean, 25, torch.Generator().manual_seed(0))
    assert noisy.shape == clean.shape and noisy.dtype == torch.float32
    assert abs(noisy.std().item() - 25 / 255) < 0.03 * 25 / 255
    assert noisy.min() < 0  # not clipped
    again = add_gaussian_noise(clean, 25.0, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    assert torch.equal(add_gaussian_noise(clean, 0), clean)


def test_per_sample_sigma():
    clean = torch.full((3, 1, 32, 32), 0.5)
    sigma = torch.tensor([0.0, 10.0, 50.0])
    noisy = add_gaussian_noise(clean, sigma, torch.Generator().manual_seed(1))
    stds = (noisy - clean).flatten(1).std(dim=1) * 255
    assert stds[0] == 0
    assert abs(stds[1] - 10) < 1.5 and abs(stds[2] - 50) < 7


def test_noise_level_map():
    like = torch.zeros(2, 3, 5, 7)
    m = noise_level_map(torch.tensor([15.0, 30.0]), like)
    assert m.shape == (2, 1, 5, 7)
    assert torch.allclose(m[0], torch.full((1, 5, 7), 15 / 255))
    assert torch.allclose(m[1], torch.full((1, 5, 7), 30 / 255))
    assert noise_level_map(25, like[0]).shape == (1, 5, 7)


# ------------------------------------------------------------------------------------------
# Augmentation


def test_apply_augmentation_is_the_dihedral_group():
    x = np.arange(3 * 4 * 2).reshape(3, 4, 2)
    expected = [
        x,
        np.rot90(x, 1),
        np.rot90(x, 2),
        np.rot90(x, 3),
        x[:, ::-1],
        np.rot90(x, 1)[:, ::-1],
        np.rot90(x, 2)[:, ::-1],
        np.rot90(x, 3)[:, ::-1],
    ]
    outputs = [apply_augmentation(x, m) for m in range(8)]
    for out, exp in zip(outputs, expected):
        np.testing.assert_array_equal(out, exp)
    assert len({out.tobytes() + bytes(out.shape) for out in outputs}) == 8
    chw = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
    for m in range(8):
        t = apply_augmentation(chw, m, channels_last=False)
        np.testing.assert_array_equal(t.permute(1, 2, 0).numpy(), outputs[m])
    with pytest.raises(ValueError):
        apply_augmentation(x, 8)


# ------------------------------------------------------------------------------------------
# ImageFolderPatches


def test_patches_shapes_and_values(folder):
    ds = ImageFolderPatches(folder, P, length=10)
    assert len(ds) == 10 and ds.num_images == 3
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (3, P, P) and x.dtype == torch.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
    gray = ImageFolderPatches(folder, P, gray=True)
    assert len(gray) == 3 and gray[0].shape == (1, P, P)


def test_patches_are_reproducible(folder):
    a = ImageFolderPatches(folder, P, seed=7, length=6)
    b = ImageFolderPatches(folder, P, seed=7, length=6)
    first = [a[i] for i in range(6)]
    assert all(torch.equal(x, b[i]) for i, x in enumerate(first))
    # Access order must not matter (DataLoader workers and shuffling).
    assert all(torch.equal(first[i], b[i]) for i in reversed(range(6)))

    a.set_epoch(1)
    epoch1 = [a[i] for i in range(6)]
    assert not all(torch.equal(x, y) for x, y in zip(first, epoch1))
    b.set_epoch(1)  # a resumed run at epoch 1 sees the same patches
    assert all(torch.equal(x, b[i]) for i, x in enumerate(epoch1))
    a.set_epoch(0)
    assert all(torch.equal(x, a[i]) for i, x in enumerate(first))

    other = ImageFolderPatches(folder, P, seed=8, length=6)
    assert not all(torch.equal(x, other[i]) for i, x in enumerate(first))


def test_augmentations_are_consistent(folder):
    plain = ImageFolderPatches(folder, P, augment=False, length=64)
    augmented = ImageFolderPatches(folder, P, augment=True, length=64)
    modes = set()
    for i in range(len(plain)):
        image_index, top, left, mode = augmented.crop_params(i)
        assert plain.crop_params(i) == (image_index, top, left, 0)
        expected = apply_augmentation(plain[i], mode, channels_last=False)
        assert torch.equal(augmented[i], expected)
        modes.add(mode)
    assert modes == set(range(8))


def test_patch_content_matches_source(tmp_path):
    rgb = _image(5, (P, P + 4, 3))
    write_image(tmp_path / "one.png", rgb)
    ds = ImageFolderPatches(tmp_path, P, augment=False)
    _, top, left, _ = ds.crop_params(0)
    crop = rgb[top : top + P, left : left + P]
    np.testing.assert_allclose(ds[0].permute(1, 2, 0).numpy(), crop / 255.0, atol=1e-6)

    gray = ImageFolderPatches(tmp_path, P, augment=False, gray=True)
    _, top, left, _ = gray.crop_params(0)
    luma = rgb_to_gray(rgb)[top : top + P, left : left + P]
    np.testing.assert_allclose(gray[0][0].numpy(), luma / 255.0, atol=1e-6)


def test_small_images_are_reflect_padded(tmp_path):
    small = _image(6, (10, 12), np.uint16)
    write_image(tmp_path / "small.tif", small)
    ds = ImageFolderPatches(tmp_path, P, augment=False, gray=True)
    padded = np.pad(small, ((3, 3), (2, 2)), mode="reflect")
    np.testing.assert_allclose(ds[0][0].numpy(), padded / 65535.0, atol=1e-6)
    colour = ImageFolderPatches(tmp_path, P, augment=False)
    assert colour[0].shape == (3, P, P)
    assert torch.equal(colour[0][0], colour[0][2])  # gray replicated


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        ImageFolderPatches(tmp_path / "empty", P)


def test_corrupt_images(folder):
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n definitely not a png")
    with pytest.raises(ImageReadError, match="broken.png"):
        ImageFolderPatches(folder, P)
    with pytest.warns(UserWarning, match="broken.png"):
        ds = ImageFolderPatches(folder, P, skip_corrupt=True)
    assert ds.num_images == 3 and all(f.name != "broken.png" for f in ds.files)


def test_folder_with_only_corrupt_images(tmp_path):
    root = tmp_path / "allbad"
    root.mkdir()
    (root / "x.jpg").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="x.jpg"), pytest.raises(ValueError, match="allbad"):
        ImageFolderPatches(root, P, skip_corrupt=True)


def test_dataloader(folder):
    ds = ImageFolderPatches(folder, P, length=8)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)
    batches = list(loader)
    assert [tuple(b.shape) for b in batches] == [(4, 3, P, P), (4, 3, P, P)]
    assert torch.equal(batches[1][0], ds[4])


def test_downscale_half_is_a_box_average():
    from malleconv.data.datasets import downscale_half

    img = np.array([[0, 2, 10, 11, 99], [4, 2, 10, 11, 99], [7, 7, 7, 7, 7]], dtype=np.uint8)
    np.testing.assert_array_equal(downscale_half(img), [[2, 10]])  # rint(2.0), rint(10.5) -> 10
    rgb16 = _image(3, (9, 6, 3), np.uint16)
    half = downscale_half(rgb16)
    assert half.shape == (4, 3, 3) and half.dtype == np.uint16
    block = rgb16[2:4, 4:6].astype(np.float64).mean(axis=(0, 1))
    np.testing.assert_array_equal(half[1, 2], np.rint(block))
    with pytest.raises(ValueError, match="too small"):
        downscale_half(np.zeros((1, 5), np.uint8))


def test_step_batches_mix_half_size_patches(tmp_path):
    from malleconv.training.batches import StepBatches

    root = tmp_path / "rgb"
    write_image(root / "a.png", _image(0, (32, 40, 3)))
    write_image(root / "b.png", _image(1, (24, 20, 3)))
    patches = ImageFolderPatches(root, 8)
    assert StepBatches(patches, 4, [10, 10], seed=1).halves == []
    mixed = StepBatches(patches, 4, [10, 10], seed=1, downscale_prob=0.5)
    assert [h.shape for h in mixed.halves] == [(16, 20, 3), (12, 10, 3)]

    def crops_of(images):
        found = set()
        for img in images:
            for top in range(img.shape[0] - 7):
                for left in range(img.shape[1] - 7):
                    for mode in range(8):
                        crop = apply_augmentation(img[top : top + 8, left : left + 8], mode)
                        found.add(np.ascontiguousarray(crop).tobytes())
        return found

    def from_halves(batches, steps=6):
        half = crops_of(batches.halves)
        verdicts = []
        for step in range(steps):
            clean, _, sigma, full_size = batches[step]
            assert clean.shape == (4, 3, 8, 8) and torch.all(sigma == 10)
            for patch, full in zip(clean, full_size.tolist()):
                as_uint8 = np.rint(patch.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
                verdicts.append(as_uint8.tobytes() in half)
                # The flag says where the patch came from.
                assert full == (not verdicts[-1])
        return verdicts

    assert all(from_halves(StepBatches(patches, 4, [10, 10], seed=1, downscale_prob=1.0)))
    verdicts = from_halves(mixed)
    assert any(verdicts) and not all(verdicts)


def test_color_jitter_reorders_channels_and_scales_chroma():
    from malleconv.data.datasets import color_jitter

    rgb = np.array([[[0.2, 0.5, 0.8], [0.4, 0.4, 0.4]], [[0.0, 0.3, 0.9], [1.0, 0.9, 0.2]]])
    same = color_jitter(rgb, (0, 1, 2), 1.0)
    assert same.dtype == np.float32 and same.shape == (2, 2, 3)
    np.testing.assert_allclose(same, rgb, atol=1e-7)
    np.testing.assert_allclose(color_jitter(rgb, (2, 0, 1), 1.0), rgb[..., [2, 0, 1]], atol=1e-7)
    boosted = color_jitter(rgb, (0, 1, 2), 1.5)
    # Gray pixels stay put; the first pixel (mean 0.5) moves 1.5x as far from its gray level.
    np.testing.assert_allclose(boosted[0, 1], [0.4, 0.4, 0.4], atol=1e-7)
    np.testing.assert_allclose(boosted[0, 0], [0.05, 0.5, 0.95], atol=1e-6)
    # Values pushed out of range are clipped, never beyond [0, 1].
    assert boosted.min() == 0.0 and boosted.max() == 1.0


def test_step_batches_color_jitter(tmp_path):
    from malleconv.training.batches import StepBatches

    write_image(tmp_path / "rgb" / "a.png", _image(0, (32, 40, 3)))
    patches = ImageFolderPatches(tmp_path / "rgb", 8)
    plain = StepBatches(patches, 4, [0, 0], seed=3)
    never = StepBatches(patches, 4, [0, 0], seed=3, color_jitter_prob=0.0, saturation_max=2.0)
    always = StepBatches(patches, 4, [0, 0], seed=3, color_jitter_prob=1.0, saturation_max=1.0)
    for step in range(3):
        base, jit = plain[step][0], always[step][0]
        torch.testing.assert_close(never[step][0], base)
        # With saturation 1 the jitter only reorders channels: same crops, same values per
        # pixel as a multiset, and at least one patch in the run has a new channel order.
        torch.testing.assert_close(jit.sort(dim=1).values, base.sort(dim=1).values)
    assert any(not torch.equal(plain[s][0], always[s][0]) for s in range(3))
    gray = ImageFolderPatches(tmp_path / "rgb", 8, gray=True)
    torch.testing.assert_close(
        StepBatches(gray, 4, [0, 0], seed=3, color_jitter_prob=1.0)[0][0],
        StepBatches(gray, 4, [0, 0], seed=3)[0][0],
    )


def test_step_batches_sigma_focus(tmp_path):
    from malleconv.training.batches import StepBatches

    write_image(tmp_path / "rgb" / "a.png", _image(0, (32, 40, 3)))
    patches = ImageFolderPatches(tmp_path / "rgb", 8)
    plain = StepBatches(patches, 16, [0, 75], seed=5)
    off = StepBatches(patches, 16, [0, 75], seed=5, sigma_focus=[5, 30], sigma_focus_prob=0.0)
    always = StepBatches(patches, 16, [0, 75], seed=5, sigma_focus=[5, 30], sigma_focus_prob=1.0)
    half = StepBatches(patches, 16, [0, 75], seed=5, sigma_focus=[5, 30], sigma_focus_prob=0.5)
    sigmas = {"plain": [], "always": [], "half": []}
    for step in range(40):
        base = plain[step]
        # Off means unchanged, crops and noise alike; the focus never changes the crops.
        for a, b in zip(off[step], base):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(always[step][0], base[0])
        sigmas["plain"].append(base[2])
        sigmas["always"].append(always[step][2])
        sigmas["half"].append(half[step][2])
    plain_s, always_s, half_s = (torch.cat(v) for v in sigmas.values())
    assert plain_s.min() < 5 and plain_s.max() > 30
    assert always_s.min() >= 5 and always_s.max() <= 30
    # A mixture: a few values outside the band, and far more inside it than uniform gives
    # (1/3 inside for uniform [0, 75], 1/2 + 1/6 = 2/3 for the half-and-half mixture).
    inside = ((half_s >= 5) & (half_s <= 30)).float().mean().item()
    assert 0.58 < inside < 0.75 and (half_s > 30).any()
    with pytest.raises(ValueError, match="sigma_focus"):
        StepBatches(patches, 4, [0, 75], seed=5, sigma_focus_prob=0.5)
    with pytest.raises(ValueError, match="sigma_focus_prob"):
        StepBatches(patches, 4, [0, 75], seed=5, sigma_focus=[5, 30], sigma_focus_prob=1.5)


def test_dead_leaves_is_deterministic_sharp_and_uses_the_palette():
    from malleconv.data.dead_leaves import dead_leaves

    palette = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
    a = dead_leaves(64, palette, np.random.default_rng(3), shading=0.0)
    b = dead_leaves(64, palette, np.random.default_rng(3), shading=0.0)
    c = dead_leaves(64, palette, np.random.default_rng(4), shading=0.0)
    assert a.shape == (64, 64, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    # Flat leaves: most pixels are exactly a palette colour, every palette colour is used,
    # and the rest are anti-aliased edge pixels, mixtures of palette colours (sum 1 here).
    exact = (np.abs(a[:, :, None, :] - palette[None, None]).max(-1) == 0).any(-1)
    assert 0.5 < exact.mean() < 1.0
    used = {tuple(px) for px in a[exact].tolist()}
    assert used == {tuple(c) for c in palette.tolist()}
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
    # Edges at every scale: neighbouring pixels often jump by a whole colour, and a leaf
    # count the size of the image is reached (many more leaves than an image's few regions).
    jumps = np.abs(np.diff(a, axis=1)).max(-1)
    assert (jumps > 0.9).mean() > 0.02
    # One-channel palettes give one-channel images; tiny images work.
    gray = dead_leaves(5, np.array([[0.2], [0.8]]), np.random.default_rng(0))
    assert gray.shape == (5, 5, 1)
    with pytest.raises(ValueError, match="palette"):
        dead_leaves(8, np.zeros((0, 3)), np.random.default_rng(0))


def test_step_batches_dead_leaves(tmp_path):
    from malleconv.training.batches import StepBatches

    write_image(tmp_path / "rgb" / "a.png", _image(0, (32, 40, 3)))
    patches = ImageFolderPatches(tmp_path / "rgb", 16)
    plain = StepBatches(patches, 8, [0, 75], seed=5)
    off = StepBatches(patches, 8, [0, 75], seed=5, dead_leaves_prob=0.0)
    always = StepBatches(patches, 8, [0, 75], seed=5, dead_leaves_prob=1.0)
    half = StepBatches(patches, 8, [0, 75], seed=5, dead_leaves_prob=0.5)
    replaced = 0
    for step in range(6):
        base = plain[step]
        for x, y in zip(off[step], base):
            torch.testing.assert_close(x, y)
        clean, noisy, sigma, full = always[step]
        assert clean.shape == base[0].shape and not full.any()
        torch.testing.assert_close(sigma, base[2])  # noise levels are not touched
        # Leaves take the image's colours: every leaf pixel is near the image's colour range.
        lo = base[0].amin(dim=(0, 2, 3)).view(1, 3, 1, 1) - 0.11
        hi = base[0].amax(dim=(0, 2, 3)).view(1, 3, 1, 1) + 0.11
        assert ((clean >= lo) & (clean <= hi)).all()
        # The patches it leaves alone are the plain run's, full-size flag included.
        h_clean, _, _, h_full = half[step]
        for n in range(8):
            if h_full[n]:
                torch.testing.assert_close(h_clean[n], base[0][n])
            else:
                replaced += 1
    assert 10 < replaced < 38  # about half of 48
    with pytest.raises(ValueError, match="dead_leaves_prob"):
        StepBatches(patches, 4, [0, 75], seed=5, dead_leaves_prob=1.5)


def test_step_batches_texture_prob_picks_busy_crops(tmp_path):
    """texture_prob: a patch is the busiest of a few crops of its image (its texture), and
    with it off the batches are those of a run without the option."""
    from malleconv.training.batches import StepBatches, _diagonal_energy

    # Left half flat grey, right half fine texture: a busy crop lies mostly on the right.
    img = np.full((64, 128, 3), 120, np.uint8)
    img[:, 64:] = _image(3, (64, 64, 3))
    write_image(tmp_path / "t" / "a.png", img)
    patches = ImageFolderPatches(tmp_path / "t", 32)
    plain = StepBatches(patches, 8, [0, 75], seed=4)
    off = StepBatches(patches, 8, [0, 75], seed=4, texture_prob=0.0)
    busy = StepBatches(patches, 8, [0, 75], seed=4, texture_prob=1.0)
    energy = {"plain": [], "busy": []}
    for step in range(5):
        base = plain[step]
        for x, y in zip(off[step], base):
            torch.testing.assert_close(x, y)
        clean, _, sigma, _ = busy[step]
        torch.testing.assert_close(sigma, base[2])  # noise levels are not touched
        for name, patch in (("plain", base[0]), ("busy", clean)):
            energy[name] += [_diagonal_energy(p.permute(1, 2, 0)) for p in patch]
    # The busiest of 4 crops has the most texture: never less than the plain crop's.
    assert np.mean(energy["busy"]) > 1.3 * np.mean(energy["plain"])
    assert all(b >= p - 1e-9 for b, p in zip(energy["busy"], energy["plain"]))
    with pytest.raises(ValueError, match="texture_prob"):
        StepBatches(patches, 4, [0, 75], seed=5, texture_prob=1.5)


def test_step_batches_quarter_size_mosaics(tmp_path):
    from malleconv.data.datasets import downscale_half
    from malleconv.training.batches import StepBatches

    root = tmp_path / "mixed"
    write_image(root / "a.png", _image(0, (48, 64, 3)))
    write_image(root / "b.png", _image(1, (40, 36, 3)))
    write_image(root / "c.png", _image(2, (36, 44, 1))[..., 0])  # gray, replicated
    patches = ImageFolderPatches(root, 8)
    batches = StepBatches(patches, 4, [10, 10], seed=2, quarter_prob=1.0)
    assert [q.shape[:2] for q in batches.quarters] == [(12, 16), (10, 9), (9, 11)]

    tiles = set()
    for img in patches.images:
        quarter = downscale_half(downscale_half(img))
        quarter = quarter if quarter.ndim == 3 else quarter[..., None]
        quarter = np.repeat(quarter, 3 // quarter.shape[2], axis=2)
        for top in range(quarter.shape[0] - 3):
            for left in range(quarter.shape[1] - 3):
                for mode in range(8):
                    crop = apply_augmentation(quarter[top : top + 4, left : left + 4], mode)
                    tiles.add(np.ascontiguousarray(crop).tobytes())
    for step in range(4):
        clean, _, _, full_size = batches[step]
        assert clean.shape == (4, 3, 8, 8) and not full_size.any()
        for patch in clean:
            as_uint8 = np.rint(patch.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            for top in (0, 4):
                for left in (0, 4):
                    tile = np.ascontiguousarray(as_uint8[top : top + 4, left : left + 4])
                    assert tile.tobytes() in tiles

    # Adding quarters keeps the halved patches of a run: they take the lowest draws.
    halves = StepBatches(patches, 4, [10, 10], seed=2, downscale_prob=0.5)
    both = StepBatches(patches, 4, [10, 10], seed=2, downscale_prob=0.5, quarter_prob=0.5)
    for step in range(4):
        a, b = halves[step], both[step]
        for n in range(4):
            if not a[3][n]:
                torch.testing.assert_close(a[0][n], b[0][n])
    assert not any(both[s][3].any() for s in range(4))  # no full-size patch left

    with pytest.raises(ValueError, match="at most 1"):
        StepBatches(patches, 4, [10, 10], seed=2, downscale_prob=0.6, quarter_prob=0.6)
    with pytest.raises(ValueError, match="even patch size"):
        StepBatches(ImageFolderPatches(root, 7), 4, [10, 10], seed=2, quarter_prob=0.5)


def test_reseeded_step_batches_keep_the_training_mix(tmp_path):
    # BatchNorm recalibration draws its batches with reseeded(): they must come from the
    # training distribution (here every patch from a halved image), only other draws.
    from malleconv.training.batches import StepBatches

    root = tmp_path / "rgb"
    write_image(root / "a.png", _image(0, (32, 40, 3)))
    write_image(root / "b.png", _image(1, (24, 20, 3)))
    patches = ImageFolderPatches(root, 8)
    train = StepBatches(patches, 4, [5, 30], seed=1, downscale_prob=1.0)
    recal = train.reseeded(2)
    assert recal.seed == 2 and train.seed == 1
    assert recal.downscale_prob == 1.0 and recal.halves is train.halves
    clean, _, sigma, full_size = recal[0]
    assert not full_size.any()  # all from halved images, as in training
    assert not torch.equal(clean, train[0][0]) and not torch.equal(sigma, train[0][2])
    assert torch.equal(recal[0][0], train.reseeded(2)[0][0])  # reproducible


def test_parse_sigma_and_check_strength():
    from malleconv.data import check_strength, parse_sigma

    assert parse_sigma(None) is None and parse_sigma(" Auto ") is None
    assert parse_sigma("12.5") == 12.5 and parse_sigma(75) == 75.0
    for bad in ("x", "76", -1, float("nan"), [1]):
        with pytest.raises(ValueError, match="sigma"):
            parse_sigma(bad)
    assert check_strength("0.5") == 0.5
    for bad in (0, 10.5, float("nan"), "strong"):
        with pytest.raises(ValueError, match="strength"):
            check_strength(bad)


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(downscale_prob=0.3, quarter_prob=0.3, color_jitter_prob=0.5, saturation_max=2.0),
        dict(sigma_focus=[5, 20], sigma_focus_prob=0.5, dead_leaves_prob=0.3),
        dict(camera_noise_prob=0.5, clean_prob=0.2),
    ],
)
def test_batches_made_on_the_device_are_the_host_batches(tmp_path, options):
    from malleconv.training.batches import StepBatches

    root = tmp_path / "rgb"
    write_image(root / "a.png", _image(0, (40, 48, 3)))
    write_image(root / "b.png", _image(1, (36, 30, 3)))
    write_image(root / "c.png", _image(2, (32, 32)))  # gray, replicated to 3 channels
    host = StepBatches(ImageFolderPatches(root, 16), 4, [0, 75], seed=3, **options)
    device = host.on_device("cpu")
    assert all(isinstance(img, torch.Tensor) for img in device.images)
    for step in (0, 1, 5):
        for a, b in zip(host[step], device[step]):
            assert a.dtype == b.dtype and a.shape == b.shape
            # The colour jitter's gray level is a torch mean instead of a numpy one.
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    if not options:
        assert all(torch.equal(a, b) for a, b in zip(host[2], device[2]))
