"""The blind model (learned noise-level map + MalleNet) and blind training batches."""

import numpy as np
import pytest
import torch

from malleconv.data.datasets import ImageFolderPatches
from malleconv.models import create_model, load_model, save_model
from malleconv.models.blind import BlindMalleNet, NoiseLevelEstimator, noise_level_loss
from malleconv.models.mallenet import noise_level_map
from malleconv.training import load_config
from malleconv.training.batches import StepBatches
from malleconv.training.trainer import Trainer
from malleconv.training.validation import BLIND_VAL_KEYS


def _blind():
    torch.manual_seed(0)
    model = create_model("mallenet-s-real").eval()
    torch.nn.init.normal_(model.denoiser.tail[-1].weight, std=0.05)
    return model


def test_given_sigma_bypasses_the_estimator():
    model = _blind()
    x = torch.rand(1, 3, 40, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x, 25.0), model.denoiser(x, 25.0))
        sigma_map = torch.full((1, 1, 40, 24), 10.0)
        torch.testing.assert_close(model(x, sigma_map), model.denoiser(x, 10.0))


def test_auto_mode_uses_the_estimated_map_and_strength_scales_it():
    model = _blind()
    x = torch.rand(2, 3, 37, 50)
    with torch.no_grad():
        estimate = model.estimator(x)
        out, level = model(x, return_level=True)
        torch.testing.assert_close(level, estimate.clamp(0, 75))
        torch.testing.assert_close(out, model.denoiser(x, level))
        _, doubled = model(x, strength=2.0, return_level=True)
        torch.testing.assert_close(doubled, (estimate * 2).clamp(0, 75))
        _, given = model(x, 10.0, strength=0.5, return_level=True)
        torch.testing.assert_close(given, torch.full_like(given, 5.0))


def test_map_variation_flattens_the_estimated_map_per_image_and_is_stored(tmp_path):
    model = _blind()
    x = torch.rand(2, 3, 40, 32)
    with torch.no_grad():
        estimate = model.estimator(x)
        mean = estimate.mean(dim=(-2, -1), keepdim=True)
        for variation in (0.0, 0.25):
            model.map_variation = variation
            _, level = model(x, return_level=True)
            torch.testing.assert_close(level, (mean + variation * (estimate - mean)).clamp(0, 75))
        _, given = model(x, 10.0, return_level=True)  # a given sigma is left alone
        assert torch.equal(given, torch.full_like(given, 10.0))
    loaded = load_model(save_model(model, tmp_path / "b.safetensors", half=False))
    assert loaded.map_variation == 0.25
    with pytest.raises(ValueError, match="map_variation"):
        BlindMalleNet(model.denoiser, model.estimator, map_variation=1.5)


def test_blind_mask_conditions_those_samples_on_the_estimate():
    model = _blind()
    x = torch.rand(3, 3, 32, 24)
    sigma = torch.tensor([10.0, 20.0, 30.0])
    mask = torch.tensor([True, False, True])
    with torch.no_grad():
        out, estimate = model(x, sigma, also_estimate=True, blind=mask)
        level = noise_level_map(sigma, x) * 255.0
        level[mask] = estimate[mask]
        torch.testing.assert_close(out, model.denoiser(x, level.clamp(0, 75)))
        torch.testing.assert_close(estimate, model.estimator(x))
    with pytest.raises(ValueError, match="also_estimate"):
        model(x, sigma, blind=mask)


def test_blind_samples_get_the_estimate_as_inference_gives_it():
    model = _blind()
    model.map_variation = 0.25
    x = torch.rand(2, 3, 32, 24)
    mask = torch.tensor([True, False])
    with torch.no_grad():
        out, _ = model(x, torch.tensor([10.0, 20.0]), also_estimate=True, blind=mask)
        torch.testing.assert_close(out[:1], model(x[:1]))


def test_reconstruction_loss_reaches_the_estimator_only_through_blind_samples():
    model = _blind().train()
    x = torch.rand(2, 3, 32, 32)
    sigma = torch.tensor([15.0, 15.0])
    for mask, reaches in [([False, False], False), ([True, False], True)]:
        mask = torch.tensor(mask)
        model.zero_grad(set_to_none=True)
        out, _ = model(x, sigma, also_estimate=True, blind=mask)
        out.square().mean().backward()
        grads = [p.grad for p in model.estimator.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads) == reaches

    model.zero_grad(set_to_none=True)
    out, estimate = model(
        x, sigma, also_estimate=True, blind=torch.tensor([True, True]), detach_blind=True
    )
    out.square().mean().backward()
    assert all(p.grad is None for p in model.estimator.parameters())
    assert any(p.grad is not None for p in model.denoiser.parameters())
    assert estimate.requires_grad  # the level loss still trains the estimator


def test_estimator_any_size_non_negative():
    est = NoiseLevelEstimator()
    for hw in [(1, 1), (7, 13), (64, 48)]:
        level = est(torch.rand(1, 3, *hw))
        assert level.shape == (1, 1, *hw) and (level >= 0).all()


def test_level_loss_penalises_underestimates_more():
    target = torch.full((1, 1, 4, 4), 20.0)
    under = noise_level_loss(target - 5, target)
    over = noise_level_loss(target + 5, target)
    assert under > over > 0
    assert noise_level_loss(target, target) == 0
    # a plain squared error at 0.5, and the weights swap sides at 0.3
    assert noise_level_loss(target - 5, target, 0.5) == noise_level_loss(target + 5, target, 0.5)
    assert noise_level_loss(target + 5, target, 0.3) == under


def test_save_and_load_round_trip(tmp_path):
    model = _blind()
    path = save_model(model, tmp_path / "blind.safetensors", half=False)
    loaded = load_model(path)
    assert isinstance(loaded, BlindMalleNet)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


@pytest.fixture
def folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    return tmp_path


def test_mixed_batches_carry_level_maps_and_are_reproducible(folder):
    patches = ImageFolderPatches(folder, 32, seed=0)
    kw = dict(camera_noise_prob=0.5, clean_prob=0.25)
    batches = StepBatches(patches, 8, (0, 75), seed=3, **kw)
    clean, noisy, level, _ = batches[5]
    assert level.shape == (8, 1, 32, 32)
    again = StepBatches(patches, 8, (0, 75), seed=3, **kw)[5]
    assert torch.equal(noisy, again[1]) and torch.equal(level, again[2])
    # White-noise patches are those of a run without the mixture.
    plain_clean, plain_noisy, sigma, _ = StepBatches(patches, 8, (0, 75), seed=3)[5]
    kinds = []
    for i in range(8):
        if torch.equal(noisy[i], clean[i]):
            kinds.append("clean")
            assert float(level[i].max()) == 0
        elif torch.equal(noisy[i], plain_noisy[i]):
            kinds.append("white")
            assert torch.all(level[i] == sigma[i])
        else:
            kinds.append("camera")
            # Camera noise is 8-bit and its level is the local std of the residual.
            assert torch.allclose(noisy[i] * 255, (noisy[i] * 255).round(), atol=1e-4)
            assert float(level[i].mean()) > 0
    assert set(kinds) == {"clean", "white", "camera"}


def test_blind_training_step_and_warm_start(folder, tmp_path):
    cfg = load_config(
        None,
        [
            "model.name=mallenet-s-real",
            "data.patch_size=32",
            "data.batch_size=2",
            "data.camera_noise_prob=0.5",
            "data.val_holdout=1",
            "train.steps=2",
            "train.val_every=2",
            "train.val_crop=32",
            "train.blind_prob=0.5",
            "train.blind_detach=true",
            "train.level_under_weight=0.5",
        ],
    )
    for bad in ("train.level_under_weight=1.5", "train.blind_prob=-0.1"):
        with pytest.raises(ValueError, match=bad.split("=")[0]):
            load_config(None, [bad])
    trainer = Trainer(cfg, folder, tmp_path / "run", progress=False)
    masks = [trainer._blind_mask(8) for _ in range(2)]
    assert torch.equal(masks[0], masks[1]) and 0 < int(masks[0].sum()) < 8
    source = create_model("mallenet-s")
    path = save_model(source, tmp_path / "s.safetensors", half=False)
    trainer.init_from(str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(trainer.model.denoiser.state_dict()[key], value)
    trainer.fit()
    import csv

    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert rows[-1]["step"] == "2"
    for key in BLIND_VAL_KEYS:
        assert float(rows[-1][key]) > 0


def test_warm_start_from_a_blind_model_keeps_its_map_variation(folder, tmp_path):
    overrides = [
        "model.name=mallenet-s-real",
        "data.patch_size=32",
        "data.batch_size=2",
        "data.val_holdout=0",
        "train.steps=1",
        "train.val_every=0",
        "train.ckpt_every=1",
        "train.blind_prob=1.0",
    ]
    source = create_model("mallenet-s-real", map_variation=0.25)
    path = save_model(source, tmp_path / "real.safetensors", half=False)
    trainer = Trainer(load_config(None, overrides), folder, tmp_path / "run", progress=False)
    trainer.init_from(str(path))
    assert trainer.model.map_variation == 0.25
    trainer.fit()
    assert load_model(trainer.out / "mallenet-s-real.safetensors").map_variation == 0.25
    # a resumed run gets it from the checkpoint, not from --init
    resumed = Trainer(load_config(None, overrides), folder, tmp_path / "run", progress=False)
    assert resumed.model.map_variation == 1.0
    resumed.load_checkpoint(trainer.ckpt_path)
    assert resumed.model.map_variation == 0.25
    # an explicit override wins over the source's value
    explicit = overrides + ["model.overrides={map_variation: 0.5}"]
    trainer = Trainer(load_config(None, explicit), folder, tmp_path / "run2", progress=False)
    trainer.init_from(str(path))
    assert trainer.model.map_variation == 0.5


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _changed(module, before):
    return [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]


def test_frozen_denoiser_keeps_weights_and_statistics_and_is_not_run(folder, tmp_path):
    overrides = [
        "model.name=mallenet-s-real",
        "data.patch_size=32",
        "data.batch_size=2",
        "data.camera_noise_prob=0.5",
        "data.val_holdout=0",
        "train.steps=2",
        "train.val_every=0",
        "train.frozen=[denoiser]",
    ]
    trainer = Trainer(load_config(None, overrides), folder, tmp_path / "run", progress=False)
    assert trainer.estimate_only
    denoiser, estimator = _snapshot(trainer.model.denoiser), _snapshot(trainer.model.estimator)
    calls = []
    trainer.model.denoiser.register_forward_hook(lambda *_: calls.append(1))
    trainer.fit()
    assert not calls
    # BatchNorm running statistics are buffers: frozen means they stay too
    assert _changed(trainer.model.denoiser, denoiser) == []
    assert _changed(trainer.model.estimator, estimator)
    # with the reconstruction loss reaching the estimator the denoiser runs, still frozen
    through = overrides + ["train.blind_prob=0.5"]
    trainer = Trainer(load_config(None, through), folder, tmp_path / "run2", progress=False)
    assert not trainer.estimate_only
    denoiser = _snapshot(trainer.model.denoiser)
    trainer.fit()
    assert _changed(trainer.model.denoiser, denoiser) == []


def test_frozen_names_a_submodule_and_leaves_something_to_train(folder, tmp_path):
    base = ["model.name=mallenet-s-real", "data.patch_size=32", "data.val_holdout=0"]
    with pytest.raises(ValueError, match="no submodule 'denoisr'.*denoiser, estimator"):
        Trainer(load_config(None, base + ["train.frozen=[denoisr]"]), folder, tmp_path / "a")
    with pytest.raises(ValueError, match="leaves nothing to train"):
        Trainer(
            load_config(None, base + ["train.frozen=[denoiser, estimator]"]), folder, tmp_path / "b"
        )
    with pytest.raises(ValueError, match="train.frozen must be a list"):
        load_config(None, ["train.frozen=denoiser"])


# ---------------------------------------------------------------- automatic mode of denoise


def test_denoise_auto_runs_the_estimator_and_reports_its_level():
    from malleconv import denoise

    model = _blind()
    image = (np.random.default_rng(0).random((24, 40, 3)) * 255).astype(np.uint8)
    x = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    decided: dict = {}
    out = denoise(image, model=model, report=decided)
    with torch.no_grad():
        want, level = model(x, return_level=True)
    want8 = (want.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.abs(out.astype(int) - want8.astype(int)).max() <= 1
    assert decided["how"] == "estimated map"
    assert decided["sigma"] == pytest.approx(float(level.mean()), rel=1e-4)


def test_strength_multiplies_given_and_estimated_levels():
    from malleconv import denoise

    model = _blind()
    image = (np.random.default_rng(1).random((20, 20, 3)) * 255).astype(np.uint8)
    told: dict = {}
    a = denoise(image, sigma=10, strength=2.0, model=model.denoiser, report=told)
    b = denoise(image, sigma=20, model=model.denoiser)
    assert np.array_equal(a, b) and told == {"model": told["model"], "sigma": 20.0, "how": "given"}
    plain, strong = {}, {}
    denoise(image, model=model, report=plain)
    denoise(image, model=model, strength=1.5, report=strong)
    assert strong["sigma"] == pytest.approx(1.5 * plain["sigma"], rel=1e-4)
    with pytest.raises(ValueError, match="strength"):
        denoise(image, model=model, strength=0)


def test_default_model_depends_on_whether_the_level_is_given():
    from malleconv.inference import DEFAULT_BLIND_MODEL, DEFAULT_MODEL, default_model
    from malleconv.models.registry import weights_dir

    assert default_model(auto=False) == DEFAULT_MODEL
    shipped = (weights_dir() / f"{DEFAULT_BLIND_MODEL}.safetensors").is_file()
    assert default_model(auto=True) == ("auto" if shipped else DEFAULT_MODEL)


def test_eval_auto_tells_the_denoiser_nothing(tmp_path, capsys):
    from PIL import Image

    from malleconv.cli.main import main

    folder = tmp_path / "set"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    weights = save_model(_blind(), tmp_path / "blind.safetensors", half=False)
    args = ["eval", "--model", str(weights), "--data", str(folder), "--no-progress"]
    assert main([*args, "--auto", "--sigma", "0", "10"]) == 0
    printed = capsys.readouterr().out
    assert "level not told" in printed
    assert main([*args, "--auto", "--real"]) == 2


def test_prepare_model_puts_the_automatic_level_inside_the_other_wrappers():
    """``auto`` wraps a blind model in EstimatedLevel under the self-ensemble and autocast,
    whose ``forward(noisy, sigma)`` cannot pass the level options on; the wrappers keep
    the model's eval mode and the levels of every run are recorded."""
    from malleconv.inference import EstimatedLevel, estimated_levels, prepare_model
    from malleconv.models import SelfEnsemble

    model = _blind()
    net = prepare_model(model, auto=True, strength=1.5, self_ensemble=True)
    assert isinstance(net, SelfEnsemble) and isinstance(net.model, EstimatedLevel)
    assert net.model.strength == 1.5 and not net.training
    with torch.no_grad():
        net(torch.rand(1, 3, 24, 32), 25.0)  # the sigma handed in is ignored
    assert len(estimated_levels(net)) == 8
    assert prepare_model(model) is model and estimated_levels(model) is None
    assert prepare_model(net, auto=True).model is net.model  # not wrapped twice
    assert not model.training


def test_camera_noise_ranges_come_from_the_config(folder):
    cfg = load_config(
        None,
        [
            "data.patch_size=32",
            "data.batch_size=8",
            "data.camera_noise_prob=1.0",
            "data.camera_noise.jpeg_prob=0.0",
            "data.camera_noise.smooth_sigma=[0.3, 2.0]",
        ],
    )
    patches = ImageFolderPatches(folder, 32, seed=0)
    batches = StepBatches.from_config(patches, cfg)
    assert batches.camera_noise.smooth_sigma == (0.3, 2.0)
    assert batches.camera_noise.jpeg_prob == 0.0
    # The defaults draw differently: the ranges reach add_camera_noise.
    default = StepBatches(patches, 8, (0, 75), seed=cfg["train"]["seed"], camera_noise_prob=1.0)
    assert not torch.equal(batches[0][1], default[0][1])
    for bad, message in [
        ("data.camera_noise.smooth_sigma=[2.0, 0.3]", "smooth_sigma must be a range"),
        ("data.camera_noise.jpeg_prob=1.5", "jpeg_prob must be in"),
    ]:
        with pytest.raises(ValueError, match=f"data.camera_noise: {message}"):
            load_config(None, [bad])
    # Softened scenes: the camera patches' targets are blurred, and the noise added to them.
    soft_cfg = load_config(
        None,
        [
            "data.patch_size=32",
            "data.batch_size=8",
            "data.camera_noise_prob=1.0",
            "data.camera_noise.optics_prob=1",
        ],
    )
    soft = StepBatches.from_config(patches, soft_cfg)[0]
    sharp = StepBatches(patches, 8, (0, 75), seed=cfg["train"]["seed"], camera_noise_prob=1.0)[0]
    assert not torch.equal(soft[0], sharp[0])
    assert float(soft[2].mean()) > 1.0 and not torch.equal(soft[1], soft[0])
    assert float((soft[0][..., 1:] - soft[0][..., :-1]).abs().mean()) < 0.7 * float(
        (sharp[0][..., 1:] - sharp[0][..., :-1]).abs().mean()
    )
    # Enlarged small photos: the targets are the enlarged small scenes, the grain wider.
    wide_cfg = load_config(
        None,
        [
            "data.patch_size=32",
            "data.batch_size=8",
            "data.camera_noise_prob=1.0",
            "data.camera_noise.enlarge_prob=1",
            "data.camera_noise.enlarge_factor=[2, 2]",
        ],
    )
    wide = StepBatches.from_config(patches, wide_cfg)[0]
    assert float((wide[0][..., 1:] - wide[0][..., :-1]).abs().mean()) < 0.7 * float(
        (sharp[0][..., 1:] - sharp[0][..., :-1]).abs().mean()
    )
    assert wide[2].shape == (8, 1, 32, 32) and float(wide[2].mean()) > 1.0
    with pytest.raises(ValueError, match="unknown config key 'data.camera_noise.iso'"):
        load_config(None, ["data.camera_noise.iso=100"])
