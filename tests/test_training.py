"""Training: it learns, resumes bit for bit, runs data-parallel, and rejects bad input."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_image
from PIL import Image

from malleconv.evaluation.metrics import psnr
from malleconv.training import load_config
from malleconv.training.trainer import Trainer


def tiny_config(**train):
    cfg = load_config(
        None,
        [
            "model.name=mallenet-tiny",
            "data.patch_size=32",
            "data.batch_size=8",
            "data.sigma=[25, 25]",
            "data.val_holdout=0",
            "optim.lr=3e-3",
            "optim.warmup_steps=10",
            "train.ema=0",
            "train.val_every=0",
            "train.log_every=5",
        ],
    )
    cfg["train"].update(train)
    return cfg


def test_tiny_mallenet_learns_to_denoise(image_folder, tmp_path):
    cfg = tiny_config(steps=150)
    trainer = Trainer(cfg, image_folder, tmp_path / "run", progress=False)
    trainer.fit()
    model = trainer.model.eval()
    gains = []
    for seed in (100, 101, 102):  # held-out images, never trained on
        clean8 = synthetic_image(seed)
        clean = torch.from_numpy(clean8).permute(2, 0, 1)[None].float() / 255
        g = torch.Generator().manual_seed(seed)
        noisy = clean + torch.randn(clean.shape, generator=g) * 25 / 255
        with torch.no_grad():
            out = model(noisy, 25.0).clamp(0, 1)
        to8 = lambda t: (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # noqa: E731
        gains.append(psnr(to8(out), clean8) - psnr(to8(noisy.clamp(0, 1)), clean8))
    assert np.mean(gains) > 4.0, gains
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert (tmp_path / "run" / "mallenet-tiny.safetensors").is_file()


def test_resume_is_bit_exact(image_folder, tmp_path):
    cfg = tiny_config(steps=6, ema=0.9)
    torch.manual_seed(123)
    full = Trainer(cfg, image_folder, tmp_path / "full", progress=False)
    full.fit()

    torch.manual_seed(123)
    first = Trainer(cfg, image_folder, tmp_path / "split", progress=False)
    first.fit(steps=3)
    assert first.step == 3
    torch.manual_seed(999)  # a different global state must not matter after resume
    second = Trainer(cfg, image_folder, tmp_path / "split", progress=False)
    second.load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    second.fit()
    assert second.step == 6
    a, b = full.model.state_dict(), second.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k in full.ema.state:
        assert torch.equal(full.ema.state[k], second.ema.state[k]), k


def test_batches_made_on_the_device_train_the_same_model(image_folder, tmp_path):
    cfg = tiny_config(steps=4)
    on_device = copy.deepcopy(cfg)
    on_device["data"]["on_device"] = True
    models = []
    for name, c in (("host", cfg), ("device", on_device)):
        torch.manual_seed(0)
        trainer = Trainer(c, image_folder, tmp_path / name, progress=False)
        trainer.fit()
        models.append(trainer.model.state_dict())
    for k in models[0]:
        assert torch.equal(models[0][k], models[1][k]), k
    with pytest.raises(ValueError, match="workers"):
        load_config(None, ["data.on_device=true", "data.workers=2"])


def test_compiled_block_trains_as_eager_to_float_rounding():
    # train.compile runs the training forward and backward through Inductor's fused
    # kernels; most of a step is these blocks (BatchNorm, PReLU with its own backward,
    # convolutions). Outputs and gradients agree with eager mode's to float rounding.
    from malleconv.layers.blocks import InvertedBottleneck

    torch.manual_seed(0)
    block = InvertedBottleneck(16, expand=2).train().to(memory_format=torch.channels_last)
    x = torch.randn(4, 16, 24, 24).contiguous(memory_format=torch.channels_last)
    results = []
    for net in (block, torch.compile(block)):
        block.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        out = net(xi)
        (out * out).mean().backward()
        grads = [p.grad.clone() for p in block.parameters()]
        results.append((out.detach(), xi.grad, grads))
    (a, ga, pa), (b, gb, pb) = results
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-6)
    for p, q in zip(pb, pa):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "budget", [[], ["--set", "train.steps=100000", "--set", "train.minutes=0.05"]]
)
def test_torchrun_two_processes(image_folder, tmp_path, budget):
    # With a time budget the ranks must agree on the clock, or one stops early and hangs.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_port=29517", "-m", "malleconv.cli.main", "train",
        "--data", str(image_folder), "--out", str(tmp_path / "ddp"), "--no-progress",
        "--set", "model.name=mallenet-tiny", "--set", "data.patch_size=32",
        "--set", "data.batch_size=4", "--set", "data.val_holdout=0",
        "--set", "train.steps=3", "--set", "train.val_every=0", "--set", "train.threads=1",
        *budget,
    ]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "ddp" / "mallenet-tiny.safetensors").is_file()
    state = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=False)
    if budget:
        assert 1 <= state["step"] < 100000 and state["elapsed"] >= 3.0
    else:
        assert state["step"] == 3


def test_errors(tmp_path, image_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        Trainer(tiny_config(steps=1), empty, tmp_path / "r", progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(synthetic_image(0)).save(bad / "good.png")
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    with pytest.raises(ValueError, match="corrupt.png"):
        Trainer(tiny_config(steps=1), bad, tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="no_such_key"):
        load_config(None, ["train.no_such_key=1"])
    with pytest.raises(ValueError, match="sigma"):
        load_config(None, ["data.sigma=[0, 80]"])
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_config(cfg_file)


@pytest.mark.parametrize("override, message", [
    ("optim.lr=0", "optim.lr must be positive"),
    ("optim.lr=fast", "optim.lr must be a number"),
    ("train.steps=abc", "train.steps must be a whole number"),
    ("data.batch_size=[1]", "data.batch_size must be a whole number"),
    ("data.sigma=[5]", "data.sigma must be a list of 2 numbers"),
    ("data=3", "'data' is a section"),
    ("train.steps=[1", "not valid YAML"),
    ("optim.warmup_steps=-5", "optim.warmup_steps must be at least 0"),
    ("optim.betas=[2, 3]", "optim.betas must lie in"),
    ("train.ema=5", "train.ema must be in"),
    ("data.val_holdout=-1", "data.val_holdout must be at least 0"),
    ("train.val_sigmas=[500]", "train.val_sigmas must lie in"),
    ("model.nmae=mallenet-tiny", "unknown config key 'model.nmae'"),
    ("train.frozen=3", "train.frozen must be a list of strings"),
])
def test_config_values_are_checked_and_the_key_named(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(None, [override])


def test_config_reads_exponents_without_a_dot_as_numbers():
    """YAML 1.1 reads ``1e-4`` as a string; a number-valued key takes it as the number."""
    cfg = load_config(None, ["optim.lr=1e-4", "model.overrides.widths=[8, 8]"])
    assert cfg["optim"]["lr"] == 1e-4 and cfg["model"]["overrides"]["widths"] == [8, 8]


def test_cli_train_and_profile(image_folder, tmp_path, capsys):
    from malleconv.cli import main

    out = tmp_path / "cli"
    args = ["train", "--data", str(image_folder), "--out", str(out), "--no-progress",
            "--set", "model.name=mallenet-tiny", "--set", "data.patch_size=32",
            "--set", "data.batch_size=2", "--set", "train.steps=2",
            "--set", "data.val_holdout=2", "--set", "train.val_every=2"]  # fmt: skip
    assert main(args) == 0
    assert Path(out / "mallenet-tiny.json").is_file()
    assert "psnr_25" in (out / "metrics.csv").read_text().splitlines()[0]
    assert main(["train", "--data", str(tmp_path / "nope"), "--out", str(out)]) == 2

    # A second run into the same folder would replace the first: refused unless --resume.
    weights = (out / "mallenet-tiny.safetensors").read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "mallenet-tiny.safetensors").read_bytes() == weights
    # A damaged checkpoint, or one of another model, is named in a one-line error.
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert main([*args, "--resume", str(junk)]) == 2
    assert "junk.pt: not a training checkpoint" in capsys.readouterr().err
    other = [a if a != "model.name=mallenet-tiny" else "model.name=mallenet-s" for a in args]
    other[other.index(str(out))] = str(tmp_path / "other")
    assert main([*other, "--resume", str(out / "checkpoints" / "last.pt")]) == 2
    assert "a checkpoint of another model" in capsys.readouterr().err
    # So is one whose weights fit but whose model settings differ (GELU and ReLU hold no
    # weights): it would continue another network.
    gelu = [*args, "--set", "model.overrides.act=gelu"]
    gelu[gelu.index(str(out))] = str(tmp_path / "gelu")
    assert main(gelu) == 0
    relu = [*args, "--set", "model.overrides.act=relu", "--resume"]
    relu[relu.index(str(out))] = str(tmp_path / "gelu")
    capsys.readouterr()
    assert main(relu) == 2
    assert "model.overrides.act: 'gelu' -> 'relu'" in capsys.readouterr().err
    # --resume with no checkpoint yet starts the run, and says so.
    fresh = [*args, "--resume"]
    fresh[fresh.index(str(out))] = str(tmp_path / "fresh")
    assert main(fresh) == 0
    assert "no checkpoint at" in capsys.readouterr().err


def _warm_start(image_folder, out, seed, **model_overrides):
    """A perturbed tiny colour model, exported, then one training step of a (possibly
    overridden) tiny model warm-started from it at a learning rate too small to move the
    weights: returns (source model, trainer)."""
    from malleconv.models import create_model, save_model
    from malleconv.training import train

    torch.manual_seed(seed)
    source = create_model("mallenet-tiny")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = save_model(source, out / "src.safetensors", half=False)
    cfg = tiny_config(steps=1)
    cfg["model"]["overrides"] = model_overrides
    cfg["optim"]["lr"] = 1e-12
    return source, train(cfg, image_folder, out / "warm", progress=False, init=str(path))


def _assert_same_weights(got: dict, expected: dict) -> None:
    for k in expected:
        if expected[k].is_floating_point() and "running" not in k:
            torch.testing.assert_close(got[k], expected[k], atol=1e-6, rtol=1e-6)


def test_init_warm_starts_from_exported_weights(image_folder, tmp_path):
    source, trainer = _warm_start(image_folder, tmp_path, 5)
    _assert_same_weights(trainer.model.state_dict(), source.state_dict())


def test_metrics_log_appends_rows_under_one_header(tmp_path):
    import csv

    from malleconv.training.metrics_log import MetricsLog

    out = tmp_path / "run"
    log = MetricsLog(out, [15, 25], extra_keys=("psnr_clean_auto",))
    log.close()
    assert not (out / "metrics.csv").exists()  # opened on the first row only
    log = MetricsLog(out, [15, 25], extra_keys=("psnr_clean_auto",))
    log.write(2, {"step": 2, "loss": 0.5, "lr": 1e-3, "pixels_per_s": 10.4})
    log.close()
    log = MetricsLog(out, [15, 25], extra_keys=("psnr_clean_auto",))  # a resumed run
    log.write(4, {"loss": 0.25, "lr": 5e-4, "pixels_per_s": 12.0, "psnr_25": 30.1234})
    log.close()
    rows = list(csv.reader(open(out / "metrics.csv")))
    assert rows[0] == [
        *("step", "loss", "lr", "pixels_per_s", "time"),
        *("psnr_15", "psnr_25", "psnr_clean_auto"),
    ]
    assert [r[:4] for r in rows[1:]] == [
        ["2", "0.500000", "1.000e-03", "10"],
        ["4", "0.250000", "5.000e-04", "12"],
    ]
    assert [r[5:] for r in rows[1:]] == [["", "", ""], ["", "30.123", ""]]


def test_psnr_loss_is_minus_mean_patch_psnr(image_folder, tmp_path):
    from malleconv.training.losses import PSNR_LOSS_MSE_FLOOR, psnr_loss

    target = torch.rand(3, 3, 8, 8)
    pred = target + 0.01 * torch.arange(1, 4).view(3, 1, 1, 1) * torch.randn(3, 3, 8, 8)
    mse = ((pred - target) ** 2).flatten(1).mean(1)
    expected = -(10 * torch.log10(1 / (mse + PSNR_LOSS_MSE_FLOOR))).mean()
    torch.testing.assert_close(psnr_loss(pred, target), expected)
    # Per patch, not pooled: the low-error patch pulls the mean PSNR up.
    assert psnr_loss(pred, target) < 10 * torch.log10(mse.mean())
    cfg = tiny_config(steps=2, loss="psnr")
    trainer = Trainer(cfg, image_folder, tmp_path / "run", progress=False)
    assert np.isfinite(trainer.fit()["loss"])


def test_soft_chroma_mse_ignores_only_sub_2x2_colour_error():
    from malleconv.training.losses import per_patch_mse, psnr_loss

    torch.manual_seed(0)
    target = torch.rand(4, 3, 8, 8)
    soft = torch.tensor([True, True, False, True])
    # Off, or on for no patch: the plain per-patch MSE.
    pred = target + 0.05 * torch.randn(4, 3, 8, 8)
    plain = ((pred - target) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(per_patch_mse(pred, target), plain)
    torch.testing.assert_close(per_patch_mse(pred, target, torch.zeros(4, dtype=bool)), plain)
    # Errors constant over aligned 2x2 blocks are kept whole: it is still the RGB MSE.
    blocky = torch.randn(4, 3, 4, 4).repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(
        per_patch_mse(target + blocky, target, soft), (blocky**2).flatten(1).mean(1)
    )
    # A colour checkerboard (R up, B down, luma unchanged) is invisible in the marked
    # patches; a luma checkerboard is not.
    checker = (torch.arange(8).view(8, 1) + torch.arange(8)) % 2 * 2.0 - 1.0
    colour = torch.stack([checker, torch.zeros(8, 8), -checker]) * 0.1
    got = per_patch_mse(target + colour, target, soft)
    torch.testing.assert_close(got[soft], torch.zeros(3), atol=1e-7, rtol=0)
    torch.testing.assert_close(got[2], torch.tensor(0.02 / 3))
    luma = checker.expand(3, 8, 8) * 0.1
    torch.testing.assert_close(per_patch_mse(target + luma, target, soft), torch.full((4,), 0.01))
    # Gray patches have no chroma: the flag changes nothing.
    g = target[:, :1]
    torch.testing.assert_close(per_patch_mse(g + 0.1, g, soft), torch.full((4,), 0.01))
    assert psnr_loss(target + colour, target, soft) < psnr_loss(target + colour, target)


def test_soft_chroma_training_runs_and_is_validated(image_folder, tmp_path):
    cfg = tiny_config(steps=2, loss="psnr", soft_chroma=True)
    cfg["data"]["downscale_prob"] = 0.5
    trainer = Trainer(cfg, image_folder, tmp_path / "run", progress=False)
    assert np.isfinite(trainer.fit()["loss"])
    with pytest.raises(ValueError, match="soft_chroma"):
        load_config(None, ["train.soft_chroma=true"])  # default loss is charbonnier
    with pytest.raises(ValueError, match="even"):
        load_config(None, ["train.soft_chroma=true", "train.loss=psnr", "data.patch_size=33"])


def test_gray_model_warm_starts_from_colour_weights(image_folder, tmp_path):
    from malleconv.models import gray_from_color

    colour, trainer = _warm_start(image_folder, tmp_path, 6, in_channels=1)
    assert trainer.gray
    _assert_same_weights(trainer.model.state_dict(), gray_from_color(colour).state_dict())


def test_downscale_prob_is_validated():
    assert load_config(None, ["data.downscale_prob=0.5"])["data"]["downscale_prob"] == 0.5
    with pytest.raises(ValueError, match="downscale_prob"):
        load_config(None, ["data.downscale_prob=1.5"])


def test_quarter_prob_is_validated():
    assert load_config(None, ["data.quarter_prob=0.25"])["data"]["quarter_prob"] == 0.25
    with pytest.raises(ValueError, match="quarter_prob"):
        load_config(None, ["data.quarter_prob=1.5"])
    with pytest.raises(ValueError, match="at most 1"):
        load_config(None, ["data.quarter_prob=0.5", "data.downscale_prob=0.75"])
    with pytest.raises(ValueError, match="even"):
        load_config(None, ["data.quarter_prob=0.5", "data.patch_size=33"])


def test_color_jitter_config_is_validated_and_trains(image_folder, tmp_path):
    cfg = load_config(None, ["data.color_jitter_prob=0.5", "data.saturation_max=1.8"])
    assert cfg["data"]["color_jitter_prob"] == 0.5 and cfg["data"]["saturation_max"] == 1.8
    with pytest.raises(ValueError, match="color_jitter_prob"):
        load_config(None, ["data.color_jitter_prob=-0.1"])
    with pytest.raises(ValueError, match="saturation_max"):
        load_config(None, ["data.saturation_max=0.5"])
    cfg = tiny_config(steps=2)
    cfg["data"]["color_jitter_prob"] = 1.0
    cfg["data"]["quarter_prob"] = 0.5
    trainer = Trainer(cfg, image_folder, tmp_path / "run", progress=False)
    assert trainer.batches.color_jitter_prob == 1.0 and trainer.batches.quarter_prob == 0.5
    assert np.isfinite(trainer.fit()["loss"])


def test_sigma_focus_config_is_validated_and_trains(image_folder, tmp_path):
    cfg = load_config(None, ["data.sigma_focus=[5, 30]", "data.sigma_focus_prob=0.6"])
    assert cfg["data"]["sigma_focus"] == [5, 30] and cfg["data"]["sigma_focus_prob"] == 0.6
    with pytest.raises(ValueError, match="needs a data.sigma_focus"):
        load_config(None, ["data.sigma_focus_prob=0.5"])
    with pytest.raises(ValueError, match="sigma_focus_prob"):
        load_config(None, ["data.sigma_focus=[5, 30]", "data.sigma_focus_prob=2"])
    with pytest.raises(ValueError, match="data.sigma_focus must be a range"):
        load_config(None, ["data.sigma_focus=[30, 5]", "data.sigma_focus_prob=0.5"])
    cfg = tiny_config(steps=2)
    cfg["data"]["sigma_focus"] = [10, 20]
    cfg["data"]["sigma_focus_prob"] = 1.0
    trainer = Trainer(cfg, image_folder, tmp_path / "run", progress=False)
    sigma = trainer.batches[0][2]
    assert sigma.min() >= 10 and sigma.max() <= 20
    assert np.isfinite(trainer.fit()["loss"])


def test_dead_leaves_config_is_validated_and_trains(image_folder, tmp_path):
    with pytest.raises(ValueError, match="dead_leaves_prob"):
        load_config(None, ["data.dead_leaves_prob=1.5"])
    cfg = tiny_config(steps=2)
    cfg["data"]["dead_leaves_prob"] = 1.0
    trainer = Trainer(cfg, image_folder, tmp_path / "run", progress=False)
    assert not trainer.batches[0][3].any()  # all synthetic: none counts as full size
    assert np.isfinite(trainer.fit()["loss"])


def test_export_only_writes_the_checkpoint_weights_without_training(image_folder, tmp_path):
    from malleconv.cli import main
    from malleconv.models.registry import load_model

    out = tmp_path / "run"
    common = ["--data", str(image_folder), "--out", str(out), "--no-progress",
              "--set", "model.name=mallenet-tiny", "--set", "data.patch_size=32",
              "--set", "data.batch_size=2", "--set", "data.val_holdout=0",
              "--set", "train.val_every=0"]  # fmt: skip
    # No checkpoint yet: a clear error, nothing written.
    assert main(["train", "--export-only", *common]) == 2
    assert not out.exists() or not list(out.glob("*.safetensors"))
    assert main(["train", *common, "--set", "train.steps=3"]) == 0
    final = load_model(out / "mallenet-tiny.safetensors").state_dict()
    # The checkpoint holds the step-3 weights: exporting it again gives the run's export,
    # under a step-numbered name that leaves the run's own export in place.
    assert main(["train", "--export-only", *common, "--set", "train.steps=3"]) == 0
    exported = load_model(out / "mallenet-tiny-step3.safetensors").state_dict()
    _assert_same_weights(exported, final)
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["step"] == 3  # nothing trained
    # An explicit target, and no overwriting of an existing file.
    target = tmp_path / "w.safetensors"
    assert main(["train", "--export-only", str(target), *common]) == 0
    assert target.is_file()
    before = target.read_bytes()
    assert main(["train", "--export-only", str(target), *common]) == 2
    assert target.read_bytes() == before


def test_narrow_weights_warm_start_a_wider_model(image_folder, tmp_path):
    # mallenet-tiny's widths are (8, 16, 16, 32); the level-0 features double.
    source, trainer = _warm_start(image_folder, tmp_path, 7, widths=(16, 16, 16, 32))
    assert trainer.model.config.widths == (16, 16, 16, 32)
    got, expected = trainer.model.state_dict(), source.state_dict()
    same_shape = {k: v for k, v in expected.items() if got[k].shape == v.shape}
    assert len(same_shape) < len(expected)  # some tensors did grow
    _assert_same_weights(got, same_shape)
    # The grown head keeps the old filters first; the old tail reads no new channel.
    torch.testing.assert_close(got["heads.0.weight"][:8], expected["heads.0.weight"])
    last = f"tail.{len(trainer.model.tail) - 1}.weight"
    torch.testing.assert_close(got[last][:, :8], expected[last])
    assert got[last][:, 8:].abs().max() < 1e-6


def test_minutes_budget_stops_training_and_anneals_the_lr(image_folder, tmp_path):
    cfg = tiny_config(steps=100_000, minutes=0.05)  # 3 s: far fewer than 100,000 steps
    cfg["optim"]["min_lr"] = 1e-5
    cfg["optim"]["warmup_steps"] = 1  # a slow, shared CPU may get through only a few steps
    trainer = Trainer(cfg, image_folder, tmp_path / "run", progress=False)
    last = trainer.fit()
    assert 1 <= trainer.step < 100_000
    assert trainer.elapsed >= 3.0
    # The cosine followed the clock to its end: the last lr is near min_lr, not the peak.
    assert last["lr"] < 0.05 * float(cfg["optim"]["lr"])
    assert (tmp_path / "run" / "mallenet-tiny.safetensors").is_file()
    # The spent budget is kept in the checkpoint: resuming trains no further.
    again = Trainer(cfg, image_folder, tmp_path / "run", progress=False)
    again.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert again.elapsed == pytest.approx(trainer.elapsed)
    again.fit()
    assert again.step == trainer.step


def test_minutes_budget_is_validated():
    with pytest.raises(ValueError, match="train.minutes"):
        load_config(None, ["train.minutes=0"])
    assert load_config(None, ["train.minutes=2.5"])["train"]["minutes"] == 2.5


def test_gpu_lease_script_trains_and_packs_each_run(image_folder, tmp_path):
    """scripts/train_gpu_lease.sh (run on lent GPUs, where a mistake costs the lease):
    two runs side by side, each packed with its weights and given its own +KEY=VALUE
    overrides; a bad run spec is a usage error."""
    import tarfile

    script = Path(__file__).resolve().parents[1] / "scripts" / "train_gpu_lease.sh"
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model: {name: mallenet-tiny}\n"
        "data: {patch_size: 32, batch_size: 2, val_holdout: 0}\n"
        "train: {steps: 1000, minutes: 0.02, threads: 1, val_every: 0}\n"
    )
    runs, packed = tmp_path / "runs", tmp_path / "packed"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    # DATA may join several folders with commas (here the same one twice).
    cmd = ["bash", str(script), f"{image_folder},{image_folder}", str(runs), str(packed)]
    # Per-run step caps (with budgets long enough not to end first) show whose overrides
    # reached which run: each run's log ends with "step N: weights ...".
    specs = [f"a={config}", "+train.steps=2", "+train.minutes=1"]
    specs += [f"b={config}", "+train.steps=3", "+train.minutes=1"]
    res = subprocess.run(
        [*cmd, *specs, "--", "--set", "train.seed=3"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for name in ("a", "b"):
        with tarfile.open(packed / f"{name}.tar.gz") as tar:
            names = tar.getnames()
        assert f"{name}/mallenet-tiny.safetensors" in names and f"{name}/train.log" in names
        assert not any("checkpoints" in n for n in names)
    assert "step 2: weights" in (runs / "a.log").read_text()
    assert "step 3: weights" in (runs / "b.log").read_text()
    bad = subprocess.run([*cmd, "nospec"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "NAME=CONFIG" in bad.stderr
    missing = subprocess.run([*cmd, "c=nofile.yaml"], env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "nofile.yaml" in missing.stderr
    early = subprocess.run([*cmd, "+train.seed=1"], env=env, capture_output=True, text=True)
    assert early.returncode == 2 and "before any NAME=CONFIG run" in early.stderr


def test_fit_restores_the_signal_handlers(image_folder, tmp_path):
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    Trainer(tiny_config(steps=1), image_folder, tmp_path / "run", progress=False).fit()
    assert {sig: signal.getsignal(sig) for sig in before} == before
