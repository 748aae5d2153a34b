"""The training loop: deterministic data, AdamW + cosine, EMA, checkpoints, DDP.

Determinism: the batch of step ``s`` is a pure function of ``(seed, s, rank)`` (crops,
augmentations, noise levels and noise), so a run resumed from a checkpoint at step ``s``
continues with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import sys
import time
from copy import copy, deepcopy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.camera_noise import add_camera_noise, local_noise_std
from ..data.datasets import (
    ImageFolderPatches,
    apply_augmentation,
    color_jitter,
    downscale_half,
    pad_to,
)
from ..data.dead_leaves import dead_leaves
from ..evaluation.metrics import psnr as psnr_metric
from ..evaluation.protocol import load_test_image, make_noisy
from ..io import list_images, to_float
from ..models.blind import BlindMalleNet, noise_level_loss
from ..models.registry import save_model
from .config import build_model

__all__ = ["Trainer", "StepBatches", "train", "export_checkpoint"]


class StepBatches(torch.utils.data.Dataset):
    """Item ``s`` is the training batch of step ``s``: ``(clean, noisy, sigma, full_size)``.

    clean, noisy: ``(B, C, P, P)`` float32; sigma: ``(B,)`` in 8-bit units; full_size:
    ``(B,)`` bool, False for patches cut from a halved image. Each rank of a distributed run
    draws its own disjoint patches. With ``downscale_prob > 0`` each patch is cut, with that
    probability, from the image halved in size (:func:`downscale_half`). With
    ``quarter_prob > 0`` a patch is, with that probability, a 2 x 2 mosaic of ``P/2`` crops
    of images reduced to a quarter of their size (the patch's own image and three random
    others): CBSD432's JPEG chroma only reaches the detail of its luma at about that scale.
    Full-size, halved and quarter patches are drawn with probabilities
    ``1 - downscale_prob - quarter_prob``, ``downscale_prob`` and ``quarter_prob``. With
    ``color_jitter_prob > 0`` a colour patch is, with that probability, passed through
    :func:`color_jitter` before the noise is added. Each patch's sigma is uniform in
    ``sigma_range``, or with probability ``sigma_focus_prob`` uniform in ``sigma_focus``
    instead: a mixture that puts more of the training on a band of noise levels (e.g. the
    low ones, where a small model is furthest behind BM3D) without dropping the rest. With
    ``dead_leaves_prob > 0`` a patch is, with that probability, a synthetic
    :func:`~malleconv.data.dead_leaves.dead_leaves` image whose leaves take the colours of the
    patch's training image (sharp colour edges; ``full_size`` False), colour-jittered like
    the others.
    """

    def __init__(
        self,
        patches: ImageFolderPatches,
        batch_size: int,
        sigma_range,
        seed: int,
        rank: int = 0,
        world: int = 1,
        downscale_prob: float = 0.0,
        quarter_prob: float = 0.0,
        color_jitter_prob: float = 0.0,
        saturation_max: float = 1.5,
        sigma_focus=None,
        sigma_focus_prob: float = 0.0,
        dead_leaves_prob: float = 0.0,
        camera_noise_prob: float = 0.0,
        clean_prob: float = 0.0,
    ):
        self.patches = patches
        self.batch_size = batch_size
        self.lo, self.hi = (float(v) for v in sigma_range)
        self.focus_prob = float(sigma_focus_prob)
        if not 0.0 <= self.focus_prob <= 1.0:
            raise ValueError(f"sigma_focus_prob must be in [0, 1], got {sigma_focus_prob}")
        if self.focus_prob > 0 and sigma_focus is None:
            raise ValueError("sigma_focus_prob > 0 needs a sigma_focus range")
        self.focus = (
            tuple(float(v) for v in sigma_focus) if sigma_focus is not None else (self.lo, self.hi)
        )
        self.seed, self.rank, self.world = seed, rank, world
        self.per_epoch = max(1, patches.num_images // (batch_size * world))
        self.downscale_prob = float(downscale_prob)
        self.quarter_prob = float(quarter_prob)
        if self.downscale_prob + self.quarter_prob > 1:
            raise ValueError("downscale_prob + quarter_prob must be at most 1")
        p = patches.patch_size
        if self.quarter_prob > 0 and p % 2:
            raise ValueError(f"quarter-size mosaics need an even patch size, got {p}")
        self.color_jitter_prob = float(color_jitter_prob)
        self.dead_leaves_prob = float(dead_leaves_prob)
        if not 0.0 <= self.dead_leaves_prob <= 1.0:
            raise ValueError(f"dead_leaves_prob must be in [0, 1], got {dead_leaves_prob}")
        self.saturation_max = float(saturation_max)
        self.camera_noise_prob = float(camera_noise_prob)
        self.clean_prob = float(clean_prob)
        if not (0.0 <= self.camera_noise_prob and 0.0 <= self.clean_prob) or (
            self.camera_noise_prob + self.clean_prob > 1.0
        ):
            raise ValueError("camera_noise_prob and clean_prob must be >= 0 with a sum <= 1")
        self.halves: list[np.ndarray] = []
        self.quarters: list[np.ndarray] = []
        if self.downscale_prob > 0:
            self.halves = [pad_to(downscale_half(img), p) for img in patches.images]
        if self.quarter_prob > 0:
            self.quarters = [
                pad_to(downscale_half(downscale_half(img)), p // 2) for img in patches.images
            ]

    def __len__(self) -> int:
        return sys.maxsize

    def reseeded(self, seed: int) -> StepBatches:
        """The same kind of batches (augmentations, sigma sampling) drawn with another seed.

        Shares the precomputed halved and quarter-size images with ``self``.
        """
        other = copy(self)
        other.seed = seed
        return other

    def _cut(self, img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
        """A random ``size x size`` crop of ``img`` with a random one of the 8 symmetries, as
        float32 ``size x size x C`` (gray images replicated for colour training)."""
        h, w = img.shape[:2]
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        mode = int(rng.integers(0, 8))
        crop = apply_augmentation(img[top : top + size, left : left + size], mode)
        arr = to_float(np.ascontiguousarray(crop))
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.shape[2] != self.patches.channels:
            arr = np.repeat(arr[..., :1], self.patches.channels, axis=2)
        return arr

    def _crop(self, image_index: int, rng: np.random.Generator) -> tuple[torch.Tensor, bool]:
        """A random ``(C, P, P)`` float patch of one image with one of the 8 symmetries, and
        whether it was cut from the full-size image."""
        p = self.patches.patch_size
        source = "full"
        # Drawn only when enabled, so runs without it keep their random streams; halves take
        # the lowest draws, so adding quarter_prob leaves the halved patches where they were.
        if self.downscale_prob > 0 or self.quarter_prob > 0:
            r = rng.random()
            if r < self.downscale_prob:
                source = "half"
            elif r < self.downscale_prob + self.quarter_prob:
                source = "quarter"
        if source == "quarter":
            q = p // 2
            others = rng.integers(0, len(self.quarters), 3)
            tiles = [self._cut(self.quarters[i], q, rng) for i in (image_index, *others)]
            arr = np.concatenate(
                [np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0
            )
        else:
            img = self.patches.images[image_index] if source == "full" else self.halves[image_index]
            arr = self._cut(img, p, rng)
        return self._finish(arr, rng), source == "full"

    def _finish(self, arr: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """The optional colour jitter, then ``(P, P, C)`` -> ``(C, P, P)`` tensor."""
        # Drawn last and only when enabled, so the crops of runs without it are unchanged.
        if self.color_jitter_prob > 0 and arr.shape[2] == 3:
            if rng.random() < self.color_jitter_prob:
                order = rng.permutation(3)
                scale = float(rng.uniform(1.0, self.saturation_max))
                arr = color_jitter(arr, order, scale)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def _dead_leaves(self, image_index: int, rng: np.random.Generator) -> torch.Tensor:
        """A ``(C, P, P)`` dead-leaves patch coloured from image ``image_index``'s pixels."""
        img = self.patches.images[image_index]
        palette = to_float(img.reshape(-1, img.shape[2] if img.ndim == 3 else 1))
        arr = dead_leaves(self.patches.patch_size, palette, rng)
        if arr.shape[2] != self.patches.channels:
            arr = np.repeat(arr[..., :1], self.patches.channels, axis=2)
        return self._finish(arr, rng)

    def __getitem__(self, step: int):
        epoch, within = divmod(step, self.per_epoch)
        # A fresh epoch permutation of images per (seed, epoch), identical on every rank.
        perm = np.random.default_rng((self.seed, 7, epoch)).permutation(self.patches.num_images)
        start = (within * self.world + self.rank) * self.batch_size
        idx = [int(perm[(start + i) % len(perm)]) for i in range(self.batch_size)]
        crops, full_size = [], []
        for n, i in enumerate(idx):
            if self.dead_leaves_prob > 0:
                # Its own stream: with it off (or for the patches it leaves alone) the crops
                # are those of a run without it.
                leaves_rng = np.random.default_rng((self.seed, 19, step, self.rank, n))
                if leaves_rng.random() < self.dead_leaves_prob:
                    crops.append(self._dead_leaves(i, leaves_rng))
                    full_size.append(False)
                    continue
            rng = np.random.default_rng((self.seed, 11, step, self.rank, n))
            crop, full = self._crop(i, rng)
            crops.append(crop)
            full_size.append(full)
        clean = torch.stack(crops)
        seq = np.random.SeedSequence((self.seed, 13, step, self.rank))
        gen = torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))
        u = torch.rand(self.batch_size, generator=gen)
        sigma = self.lo + (self.hi - self.lo) * u
        if self.focus_prob > 0:
            # A separate stream for the choice, so the noise draws below keep their order.
            pick = np.random.default_rng((self.seed, 17, step, self.rank)).random(self.batch_size)
            flo, fhi = self.focus
            focused = torch.from_numpy(pick < self.focus_prob)
            sigma = torch.where(focused, flo + (fhi - flo) * u, sigma)
        noise = torch.randn(clean.shape, generator=gen) * (sigma.view(-1, 1, 1, 1) / 255.0)
        noisy = clean + noise
        if self.camera_noise_prob > 0 or self.clean_prob > 0:
            noisy, sigma = self._mix_noise_kinds(step, clean, noisy, sigma)
        return clean, noisy, sigma, torch.tensor(full_size)

    def _mix_noise_kinds(self, step, clean, noisy, sigma):
        """Replace some white-noise patches by camera-noise or clean ones; sigma becomes the
        ``(B, 1, P, P)`` noise-level map (local std of the noise for camera noise)."""
        # Own streams, so the white-noise patches are those of a run without the mixture.
        pick = np.random.default_rng((self.seed, 23, step, self.rank)).random(self.batch_size)
        camera = pick < self.camera_noise_prob
        plain = (pick >= self.camera_noise_prob) & (pick < self.camera_noise_prob + self.clean_prob)
        p = clean.shape[-1]
        level = sigma.view(-1, 1, 1, 1).expand(-1, 1, p, p).clone()
        noisy = noisy.clone()
        if camera.any():
            idx = torch.from_numpy(np.flatnonzero(camera))
            seq = np.random.SeedSequence((self.seed, 29, step, self.rank))
            cam_gen = torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))
            cam = add_camera_noise(clean[idx], cam_gen)
            noisy[idx] = cam
            level[idx] = local_noise_std(cam, clean[idx]).clamp(max=75.0)
        if plain.any():
            idx = torch.from_numpy(np.flatnonzero(plain))
            noisy[idx] = clean[idx]
            level[idx] = 0.0
        return noisy, level


# Orthonormal opponent colour basis (rows): luma (R+G+B)/sqrt(3) and two chroma axes. Being a
# rotation of RGB it keeps squared errors: the RGB MSE is the mean over these three channels.
_OPPONENT = torch.tensor(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
        [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
        [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
    ]
)


def per_patch_mse(
    pred: torch.Tensor, target: torch.Tensor, soft_chroma: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared error of each patch of ``(B, C, H, W)`` tensors: ``(B,)``.

    ``soft_chroma`` (``(B,)`` bool, colour only): for the marked patches the chroma error is
    measured after a 2x2 average, i.e. at the resolution at which 4:2:0 JPEG targets know
    their colour; the luma error stays per pixel. Colour detail finer than 2x2 is then
    neither rewarded nor penalised in those patches, so the model is not taught to blur it.
    """
    err = pred - target
    mse = err.pow(2).flatten(1).mean(dim=1)
    if soft_chroma is None or err.shape[1] != 3 or not bool(soft_chroma.any()):
        return mse
    h, w = err.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"soft-chroma loss needs even patch sides, got {h}x{w}")
    basis = _OPPONENT.to(err.device, err.dtype)
    opp = torch.einsum("kc,bchw->bkhw", basis, err)
    luma = opp[:, 0].pow(2).flatten(1).mean(dim=1)
    chroma = F.avg_pool2d(opp[:, 1:], 2).pow(2).flatten(1).mean(dim=1) * 2  # two channels
    soft = (luma + chroma) / 3
    return torch.where(soft_chroma.to(err.device), soft, mse)


# Floor of the per-patch MSE in the PSNR loss: (1/255)^2, i.e. a 48 dB cap. Without it the
# near-noiseless patches (sigma ~ 0), whose error is tiny, would dominate the gradient.
PSNR_LOSS_MSE_FLOOR = (1.0 / 255.0) ** 2


def psnr_loss(
    pred: torch.Tensor, target: torch.Tensor, soft_chroma: torch.Tensor | None = None
) -> torch.Tensor:
    """Minus the mean per-patch PSNR (dB) of ``(B, C, H, W)`` tensors in ``[0, 1]``.

    Maximising the mean PSNR weights each patch by ``1 / its MSE``: low-noise patches count as
    much in dB as high-noise ones, matching the evaluation metric (mean PSNR over images and
    noise levels). With an MSE or L1 loss the high-sigma patches dominate. ``soft_chroma``:
    see :func:`per_patch_mse`.
    """
    mse = per_patch_mse(pred, target, soft_chroma)
    return 10.0 * torch.log10(mse + PSNR_LOSS_MSE_FLOOR).mean()


def _loss_fn(kind: str):
    """``fn(pred, target, soft_chroma=None)``; only ``mse`` and ``psnr`` use ``soft_chroma``."""
    if kind == "psnr":
        return psnr_loss
    if kind == "mse":
        return lambda pred, target, soft_chroma=None: per_patch_mse(
            pred, target, soft_chroma
        ).mean()
    if kind == "l1":
        return lambda pred, target, soft_chroma=None: F.l1_loss(pred, target)
    eps2 = 1e-3**2

    def charbonnier(pred, target, soft_chroma=None):
        return torch.sqrt((pred - target) ** 2 + eps2).mean()

    return charbonnier


class EMA:
    """Exponential moving average of parameters and buffers (float32 copies)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        # Warm-up (as in timm's ModelEmaV3): early on the average must not be dominated
        # by the untrained initial weights.
        decay = self.decay if step is None else min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.state[k].lerp_(v.float(), 1 - decay)
            else:
                self.state[k].copy_(v)

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model``.

        Averaged BatchNorm statistics do not match averaged weights (the scale symmetry
        of BatchNorm makes weight averaging and statistics averaging disagree), so
        callers should re-estimate them with :func:`recalibrate_batchnorm`.
        """
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in self.state.items()})


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches, device) -> None:
    """Re-estimate BatchNorm running statistics as a plain average over ``batches``.

    ``batches`` yields ``(clean, noisy, sigma, ...)``; the model is left in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for _, noisy, sigma, *_ in batches:
        model(noisy.to(device), sigma.to(device))
    for m, mom in zip(norms, saved):
        m.momentum = mom
    model.eval()


def _lr_lambda(warmup: int, total: int, min_ratio: float, progress=None):
    """Linear warm-up over ``warmup`` steps, then a cosine from 1 to ``min_ratio``.

    The cosine follows the step count over ``total`` steps, or, when ``progress`` is given
    (a callable returning the fraction of a wall-clock budget spent), that fraction.
    """

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if progress is not None:
            t = progress()
        else:
            t = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


class Trainer:
    """Trains a denoiser from a config dict (see :mod:`malleconv.training.config`)."""

    def __init__(
        self,
        cfg: dict,
        data: str | os.PathLike,
        out: str | os.PathLike,
        val: str | os.PathLike | None = None,
        progress: bool = True,
    ):
        self.cfg = cfg
        self.out = Path(out)
        self.progress = progress
        t = cfg["train"]
        if int(t.get("threads") or 0) > 0:
            torch.set_num_threads(int(t["threads"]))
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        # A process group this trainer creates (under torchrun) is its to destroy: close().
        self._owns_process_group = self.world > 1 and not torch.distributed.is_initialized()
        if self._owns_process_group:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        self.device = torch.device(
            f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        )
        torch.manual_seed(int(t["seed"]))
        d = cfg["data"]
        self.model = build_model(cfg)
        self.gray = (
            getattr(self.model, "config", None) is not None and self.model.config.in_channels == 1
        )
        self.channels_last = bool(t["channels_last"])
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.patches = ImageFolderPatches(
            data,
            int(d["patch_size"]),
            gray=self.gray,
            skip_corrupt=bool(d["skip_corrupt"]),
            seed=int(t["seed"]),
        )
        holdout = int(d.get("val_holdout") or 0) if val is None else 0
        self.holdout_files: list[Path] = []
        if holdout:
            if holdout >= self.patches.num_images:
                raise ValueError(
                    f"data.val_holdout={holdout} leaves no training image in {data} "
                    f"({self.patches.num_images} images)"
                )
            self.holdout_files = self.patches.files[-holdout:]
            del self.patches.files[-holdout:]
            del self.patches.images[-holdout:]
        self.batches = StepBatches(
            self.patches,
            int(d["batch_size"]),
            d["sigma"],
            int(t["seed"]),
            self.rank,
            self.world,
            downscale_prob=float(d["downscale_prob"]),
            quarter_prob=float(d["quarter_prob"]),
            color_jitter_prob=float(d["color_jitter_prob"]),
            saturation_max=float(d["saturation_max"]),
            sigma_focus=d["sigma_focus"],
            sigma_focus_prob=float(d["sigma_focus_prob"]),
            dead_leaves_prob=float(d["dead_leaves_prob"]),
            camera_noise_prob=float(d["camera_noise_prob"]),
            clean_prob=float(d["clean_prob"]),
        )
        self.blind = isinstance(self.model, BlindMalleNet)
        self.net = self.model
        if self.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        o = cfg["optim"]
        self.opt = torch.optim.AdamW(
            self.model.parameters(),
            lr=float(o["lr"]),
            betas=tuple(o["betas"]),
            weight_decay=float(o["weight_decay"]),
        )
        total = int(t["steps"])
        # Seconds of training so far (kept across resumes): drives a train.minutes budget.
        self.elapsed = 0.0
        self._clock = (time.monotonic(), 0.0)  # (start, elapsed then); fit() resets it
        self.budget_s = 60.0 * float(t["minutes"]) if t.get("minutes") else None
        progress = (lambda: self.elapsed / self.budget_s) if self.budget_s else None
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            _lr_lambda(
                int(o["warmup_steps"]), total, float(o["min_lr"]) / float(o["lr"]), progress
            ),
        )
        self.ema = EMA(self.model, float(t["ema"])) if float(t["ema"] or 0) > 0 else None
        self.loss_fn = _loss_fn(t["loss"])
        self.soft_chroma = bool(t["soft_chroma"])
        self.step = 0
        self.val_images = self._load_val([val] if val else self.holdout_files)
        self._stop = False

    # ------------------------------------------------------------------ validation
    def _load_val(self, paths) -> list[tuple[str, np.ndarray]]:
        if not paths:
            return []
        t = self.cfg["train"]
        entries = list_images(paths)[: int(t["val_max_images"])]
        crop = int(t["val_crop"] or 0)
        out = []
        for file, rel in entries:
            img = load_test_image(file, gray=self.gray)
            if crop:
                h, w = img.shape[:2]
                top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
                img = np.ascontiguousarray(img[top : top + crop, left : left + crop])
            out.append((rel.as_posix(), img))
        return out

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean PSNR per validation sigma (EMA weights when enabled), standard protocol."""
        if not self.val_images:
            return {}
        model = self.model
        if self.ema is not None:
            model = build_model(self.cfg)
            self.ema.copy_to(model)
            model.to(self.device)
            self._recalibrate(model)
        model.eval()
        res = {}
        for sigma in self.cfg["train"]["val_sigmas"]:
            vals = []
            for name, clean in self.val_images:
                noisy = make_noisy(clean, name, float(sigma)).to(self.device)
                out = model(noisy, float(sigma)).clamp(0, 1)
                out8 = (out[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
                vals.append(psnr_metric(out8, clean))
            res[f"psnr_{sigma:g}"] = float(np.mean(vals))
        if self.blind:
            res.update(self._validate_blind(model))
        self.model.train()
        return res

    BLIND_VAL_KEYS = ("psnr_camera_auto", "psnr_25_auto", "psnr_clean_auto")

    @torch.no_grad()
    def _validate_blind(self, model: nn.Module) -> dict[str, float]:
        """Held-out PSNR with the estimated noise level: camera noise, white noise of 25 and
        no noise (the output against the clean input)."""
        from ..data.noise import seed_for

        res: dict[str, list[float]] = {k: [] for k in self.BLIND_VAL_KEYS}
        for name, clean in self.val_images:
            x = torch.from_numpy(clean.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
            gen = torch.Generator().manual_seed(seed_for(name, 0))
            inputs = {
                "psnr_camera_auto": add_camera_noise(x, gen),
                "psnr_25_auto": make_noisy(clean, name, 25.0),
                "psnr_clean_auto": x,
            }
            for key, noisy in inputs.items():
                out = model(noisy.to(self.device)).clamp(0, 1)
                out8 = (out[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
                res[key].append(psnr_metric(out8, clean))
        return {k: float(np.mean(v)) for k, v in res.items()}

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        self.ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "config": self.cfg,
            "model": self.model.state_dict(),
            "optim": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "ema": self.ema.state if self.ema else None,
            "torch_rng": torch.get_rng_state(),
            "elapsed": self.elapsed,
        }
        tmp = self.ckpt_path.with_name("last.pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt_path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optim"])
        self.sched.load_state_dict(state["sched"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.state = {k: v.float() for k, v in state["ema"].items()}
        torch.set_rng_state(state["torch_rng"])
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))

    def _recalibrate(self, model: nn.Module, n: int = 32) -> None:
        # Fixed batches (independent of the current step) so that exports are reproducible.
        # Drawn like the training batches (same augmentations): statistics of plain full-size
        # patches cost stage 22's weights 0.07 dB of held-out PSNR against the tracked ones.
        recal = self.batches.reseeded(self.batches.seed + 1)
        recalibrate_batchnorm(model, (recal[i] for i in range(n)), self.device)

    def init_from(self, name_or_path) -> None:
        """Start from exported weights (the EMA, if any, starts from them too).

        Colour MalleNet weights warm-start a gray model through
        :func:`~malleconv.models.convert.gray_from_color`, and a narrower MalleNet
        warm-starts a wider one through :func:`~malleconv.models.widen.widen_mallenet`
        (same function at step 0, the new channels then learn).
        """
        from ..models.convert import gray_from_color
        from ..models.mallenet import MalleNet
        from ..models.registry import load_model
        from ..models.widen import widen_mallenet

        src = load_model(name_or_path)
        if self.gray and getattr(getattr(src, "config", None), "in_channels", 1) == 3:
            src = gray_from_color(src)
        if (
            isinstance(src, MalleNet)
            and isinstance(self.model, MalleNet)
            and src.config.widths != self.model.config.widths
        ):
            src = widen_mallenet(src.float(), deepcopy(self.model).float().cpu())
        target = self.model
        if isinstance(self.model, BlindMalleNet) and isinstance(src, MalleNet):
            target = self.model.denoiser  # the estimator starts from scratch
        elif isinstance(self.model, BlindMalleNet) and isinstance(src, BlindMalleNet):
            pass
        state = target.state_dict()
        target.load_state_dict({k: v.to(state[k].dtype) for k, v in src.state_dict().items()})
        if self.ema is not None:
            self.ema = EMA(self.model, self.ema.decay)

    def close(self, synchronise: bool = True) -> None:
        """Destroy the process group this trainer created, if any (a group the caller made
        is left alone). Why: left to the interpreter's shutdown, the ranks' communication
        threads were sometimes destroyed while still joinable ("terminate called without an
        active exception", SIGABRT on one rank). ``synchronise`` waits for every rank first;
        pass False after an error, where a barrier could hang."""
        if self._owns_process_group and torch.distributed.is_initialized():
            if synchronise:
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        self._owns_process_group = False

    def export(self, path: str | os.PathLike | None = None, half: bool = True) -> Path:
        """Write the (EMA) weights as safetensors + JSON spec."""
        model = build_model(self.cfg)
        if self.ema is not None:
            self.ema.copy_to(model)
            self._recalibrate(model)
        else:
            model.load_state_dict(self.model.state_dict())
        name = self.cfg["model"]["name"]
        path = Path(path) if path else self.out / f"{name}.safetensors"
        return save_model(model, path, half=half, meta={"steps": self.step})

    # ------------------------------------------------------------------ loop
    def _train_step(self, batch) -> float:
        clean, noisy, sigma, full_size = (t.to(self.device, non_blocking=True) for t in batch)
        if self.channels_last:
            clean = clean.contiguous(memory_format=torch.channels_last)
            noisy = noisy.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=bool(self.cfg["train"]["bf16"])
        ):
            if self.blind:
                pred, estimate = self.net(noisy, sigma, also_estimate=True)
            else:
                pred = self.net(noisy, sigma)
        loss = self.loss_fn(pred.float(), clean, full_size if self.soft_chroma else None)
        if self.blind:
            level = sigma if sigma.dim() == 4 else sigma.view(-1, 1, 1, 1).expand_as(estimate)
            weight = float(self.cfg["train"]["level_loss_weight"])
            loss = loss + weight * noise_level_loss(estimate.float(), level)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = float(self.cfg["optim"]["grad_clip"] or 0)
        if clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.opt.step()
        self._tick()  # before the scheduler: a time budget's lr follows the clock
        self.sched.step()
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        return float(loss.detach())

    def _tick(self) -> None:
        """Update ``self.elapsed`` (training seconds, across resumes) from the clock."""
        t0, elapsed0 = self._clock
        self.elapsed = elapsed0 + (time.monotonic() - t0)
        if self.budget_s is not None and self.world > 1:
            # Every rank must see the same clock: the same learning rate (or the replicas
            # drift apart) and the same last step (or a collective hangs).
            clock = torch.tensor([self.elapsed], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(clock, op=torch.distributed.ReduceOp.MAX)
            self.elapsed = float(clock)

    def _on_signal(self, signum, frame):
        self._stop = True

    def fit(self, steps: int | None = None) -> dict:
        """Train until ``train.steps`` (or ``steps`` more), or until the ``train.minutes``
        budget is spent; returns the last metrics."""
        t = self.cfg["train"]
        total = int(t["steps"])
        end = total if steps is None else min(total, self.step + steps)
        if self.budget_s is not None and self.elapsed >= self.budget_s:
            end = self.step  # the time budget is already spent: nothing to train
        d = self.cfg["data"]
        loader = torch.utils.data.DataLoader(
            self.batches,
            batch_size=None,
            sampler=range(self.step, end),
            num_workers=int(d["workers"]),
            persistent_workers=False,
        )
        metrics_path = self.out / "metrics.csv"
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        writer = None
        old_handler = None
        try:
            old_handler = signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGTERM, self._on_signal)
        except ValueError:  # not in the main thread
            pass
        tb = None
        if self.rank == 0:
            try:  # TensorBoard is optional: metrics.csv is always written.
                from torch.utils.tensorboard import SummaryWriter

                tb = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:
                tb = None
        bar = None
        if self.progress and self.rank == 0:
            from tqdm import tqdm

            # With a time budget the step count is only a cap: no misleading total.
            total_bar = None if self.budget_s is not None else end
            bar = tqdm(total=total_bar, initial=self.step, unit="step", dynamic_ncols=True)
        pixels_per_step = int(d["batch_size"]) * int(d["patch_size"]) ** 2 * self.world
        last_ckpt = time.monotonic()
        t0, s0 = time.monotonic(), self.step
        self._clock = (t0, self.elapsed)
        last = {}
        self.model.train()
        try:
            for batch in loader:
                loss = self._train_step(batch)
                self.step += 1
                now = time.monotonic()
                rate = (self.step - s0) * pixels_per_step / max(1e-9, now - t0)
                last = {
                    "step": self.step,
                    "loss": loss,
                    "lr": self.sched.get_last_lr()[0],
                    "pixels_per_s": rate,
                }
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", px_s=f"{rate:,.0f}")
                val_every = int(t["val_every"] or 0)
                if val_every and self.step % val_every == 0 and self.rank == 0:
                    last.update(self.validate())
                    if bar is not None:
                        bar.write(" ".join(f"{k}={v:.4g}" for k, v in last.items()))
                if self.rank == 0 and (
                    self.step % int(t["log_every"]) == 0 or any(k.startswith("psnr") for k in last)
                ):
                    if writer is None:
                        new = not metrics_path.exists()
                        fh = open(metrics_path, "a", newline="")
                        writer = csv.writer(fh)
                        if new:
                            writer.writerow(
                                [
                                    "step",
                                    "loss",
                                    "lr",
                                    "pixels_per_s",
                                    "time",
                                    *[f"psnr_{s:g}" for s in t["val_sigmas"]],
                                    *(self.BLIND_VAL_KEYS if self.blind else ()),
                                ]
                            )
                    writer.writerow(
                        [
                            self.step,
                            f"{loss:.6f}",
                            f"{last['lr']:.3e}",
                            f"{rate:.0f}",
                            f"{time.time():.0f}",
                            *[
                                f"{last[f'psnr_{s:g}']:.3f}" if f"psnr_{s:g}" in last else ""
                                for s in t["val_sigmas"]
                            ],
                            *[
                                f"{last[k]:.3f}" if k in last else ""
                                for k in (self.BLIND_VAL_KEYS if self.blind else ())
                            ],
                        ]
                    )
                    fh.flush()
                    if tb is not None:
                        for key, value in last.items():
                            if key != "step":
                                tb.add_scalar(key, value, self.step)
                    for k in [k for k in last if k.startswith("psnr")]:
                        last.pop(k)
                if self.step % int(t["ckpt_every"]) == 0 or now - last_ckpt > 60 * float(
                    t["ckpt_minutes"]
                ):
                    self.save_checkpoint()
                    last_ckpt = now
                if self._stop or (self.budget_s is not None and self.elapsed >= self.budget_s):
                    break
        finally:
            self.save_checkpoint()
            if self.rank == 0:
                self.export()
            if bar is not None:
                bar.close()
            if writer is not None:
                fh.close()
            if tb is not None:
                tb.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        return last


def train(
    cfg: dict,
    data,
    out,
    val=None,
    resume: str | None = None,
    progress=True,
    init: str | None = None,
) -> Trainer:
    """Build a :class:`Trainer`, optionally resume, fit and export; returns the trainer.

    ``init`` warm-starts from exported weights (a ``.safetensors`` path or a model name
    with shipped weights) with a fresh optimiser and schedule; ``resume`` continues a run
    from its checkpoint exactly.
    """
    trainer = Trainer(cfg, data, out, val=val, progress=progress)
    try:
        if init and not resume:
            trainer.init_from(init)
        if resume:
            path = trainer.ckpt_path if resume == "auto" else Path(resume)
            if path.is_file():
                trainer.load_checkpoint(path)
            elif resume != "auto":
                raise FileNotFoundError(f"checkpoint not found: {path}")
        trainer.fit()
    except BaseException:
        trainer.close(synchronise=False)
        raise
    trainer.close()
    return trainer


def export_checkpoint(
    cfg: dict,
    data,
    out,
    checkpoint: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
) -> tuple[Path, int]:
    """Export the weights of a run's checkpoint without training, e.g. mid-run; returns
    the weights' path and the checkpoint's step.

    The trainer is built as for training (the data is needed to recalibrate BatchNorm when
    the run keeps an EMA), the checkpoint (default ``OUT/checkpoints/last.pt``) is loaded
    and its weights are written, by default to ``OUT/NAME-stepN.safetensors`` so that the
    export at the end of the run is not replaced. An existing file is never overwritten.
    """
    trainer = Trainer(cfg, data, out, progress=False)
    try:
        ckpt = Path(checkpoint) if checkpoint else trainer.ckpt_path
        if not ckpt.is_file():
            raise FileNotFoundError(f"checkpoint not found: {ckpt}")
        trainer.load_checkpoint(ckpt)
        name = cfg["model"]["name"]
        target = Path(path) if path else trainer.out / f"{name}-step{trainer.step}.safetensors"
        if target.exists():
            raise FileExistsError(f"{target} exists; remove it or pass another path")
        return trainer.export(target), trainer.step
    finally:
        trainer.close(synchronise=False)  # no collective runs here: nothing to wait for
