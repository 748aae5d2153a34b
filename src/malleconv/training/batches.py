"""Training batches: the deterministic, step-indexed batch sampler.

The batch of step ``s`` is a pure function of ``(seed, s, rank)`` (crops, augmentations,
noise levels and noise), so a run resumed from a checkpoint at step ``s`` continues with
exactly the batches an uninterrupted run would have seen. Every optional augmentation draws
from its own random stream, or only when enabled, so that switching one on leaves the
draws of the others where they were.

:meth:`StepBatches.on_device` keeps the training images on the training device (a GPU) and
cuts, augments and adds noise there: the random choices are the same host-side draws,
only the pixel work and the noise move, so no loader workers are needed.
"""

from __future__ import annotations

import sys
from copy import copy

import numpy as np
import torch

from ..data.camera_noise import (
    CameraNoiseRanges,
    add_camera_noise,
    enlarge_camera_noise,
    local_noise_std,
    soften_scene,
)
from ..data.datasets import (
    ImageFolderPatches,
    apply_augmentation,
    color_jitter,
    downscale_half,
    pad_to,
)
from ..data.dead_leaves import dead_leaves
from ..io import to_float

__all__ = ["StepBatches"]


# With texture_prob, a patch is the busiest of this many random crops of its image.
TEXTURE_CANDIDATES = 4


def _diagonal_energy(arr) -> float:
    """Mean square of the finest Haar diagonal detail of a ``P x P x C`` patch (numpy or
    torch): texture and noise have it, flat areas and straight edges little."""
    a, b, c, d = arr[0::2, 0::2], arr[0::2, 1::2], arr[1::2, 0::2], arr[1::2, 1::2]
    return float(((a - b - c + d) ** 2).mean())


class StepBatches(torch.utils.data.Dataset):
    """Item ``s`` is the training batch of step ``s``: ``(clean, noisy, sigma, full_size)``.

    clean, noisy: ``(B, C, P, P)`` float32; sigma: ``(B,)`` in 8-bit units, or the
    ``(B, 1, P, P)`` noise-level map when ``camera_noise_prob`` or ``clean_prob`` is set;
    full_size: ``(B,)`` bool, False for patches cut from a halved image. Each rank of a
    distributed run draws its own disjoint patches. With ``downscale_prob > 0`` each patch
    is cut, with that probability, from the image halved in size (:func:`downscale_half`).
    With ``quarter_prob > 0`` a patch is, with that probability, a 2 x 2 mosaic of ``P/2`` crops
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
    the others. With ``camera_noise_prob`` and ``clean_prob`` a patch's white noise is
    replaced, with those probabilities, by camera noise (drawn from the ranges
    ``camera_noise``, :class:`~malleconv.data.camera_noise.CameraNoiseRanges`) or by none
    (:meth:`_mix_noise_kinds`). With ``texture_prob > 0`` a full-size or halved patch is, with
    that probability, the busiest of :data:`TEXTURE_CANDIDATES` random crops of its image (most
    energy in the finest diagonal detail): more of the training on texture, which the noise
    estimator must learn not to read as noise.
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
        camera_noise: CameraNoiseRanges | None = None,
        texture_prob: float = 0.0,
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
        self.camera_noise = camera_noise or CameraNoiseRanges()
        if not (0.0 <= self.camera_noise_prob and 0.0 <= self.clean_prob) or (
            self.camera_noise_prob + self.clean_prob > 1.0
        ):
            raise ValueError("camera_noise_prob and clean_prob must be >= 0 with a sum <= 1")
        self.texture_prob = float(texture_prob)
        if not 0.0 <= self.texture_prob <= 1.0:
            raise ValueError(f"texture_prob must be in [0, 1], got {texture_prob}")
        self.device: torch.device | None = None  # set by on_device()
        self.images = patches.images
        self.halves: list[np.ndarray] = []
        self.quarters: list[np.ndarray] = []
        if self.downscale_prob > 0:
            self.halves = [pad_to(downscale_half(img), p) for img in patches.images]
        if self.quarter_prob > 0:
            self.quarters = [
                pad_to(downscale_half(downscale_half(img)), p // 2) for img in patches.images
            ]

    @classmethod
    def from_config(
        cls, patches: ImageFolderPatches, cfg: dict, rank: int = 0, world: int = 1
    ) -> StepBatches:
        """The batches a run of config ``cfg`` trains on (its ``data`` section and
        ``train.seed``), for rank ``rank`` of ``world``."""
        d = cfg["data"]
        return cls(
            patches,
            int(d["batch_size"]),
            d["sigma"],
            int(cfg["train"]["seed"]),
            rank,
            world,
            downscale_prob=float(d["downscale_prob"]),
            quarter_prob=float(d["quarter_prob"]),
            color_jitter_prob=float(d["color_jitter_prob"]),
            saturation_max=float(d["saturation_max"]),
            sigma_focus=d["sigma_focus"],
            sigma_focus_prob=float(d["sigma_focus_prob"]),
            dead_leaves_prob=float(d["dead_leaves_prob"]),
            camera_noise_prob=float(d["camera_noise_prob"]),
            clean_prob=float(d["clean_prob"]),
            camera_noise=CameraNoiseRanges.from_mapping(d["camera_noise"]),
            texture_prob=float(d["texture_prob"]),
        )

    def __len__(self) -> int:
        return sys.maxsize

    def reseeded(self, seed: int) -> StepBatches:
        """The same kind of batches (augmentations, sigma sampling) drawn with another seed.

        Shares the precomputed halved and quarter-size images with ``self``.
        """
        other = copy(self)
        other.seed = seed
        return other

    def on_device(self, device) -> StepBatches:
        """The same batches, made on ``device``: images kept there as integer tensors, crops,
        augmentations and noise computed there.

        Crop positions, symmetries and every other choice are the host-side draws of
        :meth:`__getitem__`; white noise comes from a generator on ``device`` seeded as the
        CPU one, so on the CPU the batches are those of ``self`` and on a GPU they are a
        pure function of ``(seed, step, rank)`` too (other values: another generator).
        Camera noise and dead-leaves patches are still made on the host and moved.
        """
        device = torch.device(device)
        other = copy(self)
        other.device = device

        def move(images):
            return [torch.from_numpy(np.ascontiguousarray(img)).to(device) for img in images]

        other.images = move(self.patches.images)
        other.halves, other.quarters = move(self.halves), move(self.quarters)
        return other

    def _cut(self, img, size: int, rng: np.random.Generator):
        """A random ``size x size`` crop of ``img`` with a random one of the 8 symmetries, as
        float32 ``size x size x C`` (gray images replicated for colour training); a tensor
        on the batches' device for an image kept there, else a numpy array."""
        h, w = img.shape[:2]
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        mode = int(rng.integers(0, 8))
        crop = apply_augmentation(img[top : top + size, left : left + size], mode)
        if isinstance(crop, torch.Tensor):
            scale = 255.0 if crop.dtype == torch.uint8 else 65535.0
            arr = crop.to(torch.float32) / scale
            if arr.ndim == 2:
                arr = arr[..., None]
            if arr.shape[2] != self.patches.channels:
                arr = arr[..., :1].expand(-1, -1, self.patches.channels)
            return arr
        arr = to_float(np.ascontiguousarray(crop))
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.shape[2] != self.patches.channels:
            arr = np.repeat(arr[..., :1], self.patches.channels, axis=2)
        return arr

    def _crop(
        self,
        image_index: int,
        rng: np.random.Generator,
        busy_rng: np.random.Generator | None = None,
    ) -> tuple[torch.Tensor, bool]:
        """A random ``(C, P, P)`` float patch of one image with one of the 8 symmetries, and
        whether it was cut from the full-size image. With ``busy_rng`` (``texture_prob``) a
        full-size or halved patch is, with that probability, the busiest of
        :data:`TEXTURE_CANDIDATES` crops, the others drawn from ``busy_rng``."""
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
            cat = torch.cat if isinstance(tiles[0], torch.Tensor) else np.concatenate
            arr = cat([cat(tiles[:2], axis=1), cat(tiles[2:], axis=1)], axis=0)
        else:
            img = self.images[image_index] if source == "full" else self.halves[image_index]
            arr = self._cut(img, p, rng)
            if busy_rng is not None and busy_rng.random() < self.texture_prob:
                others = [self._cut(img, p, busy_rng) for _ in range(TEXTURE_CANDIDATES - 1)]
                arr = max([arr, *others], key=_diagonal_energy)
        return self._finish(arr, rng), source == "full"

    def _finish(self, arr, rng: np.random.Generator) -> torch.Tensor:
        """The optional colour jitter, then ``(P, P, C)`` -> ``(C, P, P)`` tensor."""
        # Drawn last and only when enabled, so the crops of runs without it are unchanged.
        if self.color_jitter_prob > 0 and arr.shape[2] == 3:
            if rng.random() < self.color_jitter_prob:
                order = rng.permutation(3)
                scale = float(rng.uniform(1.0, self.saturation_max))
                arr = color_jitter(arr, order, scale)
        if isinstance(arr, torch.Tensor):
            return arr.permute(2, 0, 1).contiguous()
        tensor = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        return tensor if self.device is None else tensor.to(self.device)

    def _dead_leaves(self, image_index: int, rng: np.random.Generator) -> torch.Tensor:
        """A ``(C, P, P)`` dead-leaves patch coloured from image ``image_index``'s pixels."""
        img = self.patches.images[image_index]  # host copy: the leaves are drawn there
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
            # Its own stream, so runs without it keep their crops.
            busy_rng = (np.random.default_rng((self.seed, 37, step, self.rank, n))
                        if self.texture_prob > 0 else None)
            crop, full = self._crop(i, rng, busy_rng)
            crops.append(crop)
            full_size.append(full)
        clean = torch.stack(crops)
        dev = clean.device
        seq = np.random.SeedSequence((self.seed, 13, step, self.rank))
        gen = torch.Generator(dev).manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))
        u = torch.rand(self.batch_size, generator=gen, device=dev)
        sigma = self.lo + (self.hi - self.lo) * u
        if self.focus_prob > 0:
            # A separate stream for the choice, so the noise draws below keep their order.
            pick = np.random.default_rng((self.seed, 17, step, self.rank)).random(self.batch_size)
            flo, fhi = self.focus
            focused = torch.from_numpy(pick < self.focus_prob).to(dev)
            sigma = torch.where(focused, flo + (fhi - flo) * u, sigma)
        noise = torch.randn(clean.shape, generator=gen, device=dev)
        noisy = clean + noise * (sigma.view(-1, 1, 1, 1) / 255.0)
        if self.camera_noise_prob > 0 or self.clean_prob > 0:
            clean, noisy, sigma = self._mix_noise_kinds(step, clean, noisy, sigma)
        return clean, noisy, sigma, torch.tensor(full_size, device=dev)

    def _mix_noise_kinds(self, step, clean, noisy, sigma):
        """Replace some white-noise patches by camera-noise or clean ones; sigma becomes the
        ``(B, 1, P, P)`` noise-level map (local std of the noise for camera noise). Returns
        ``(clean, noisy, sigma)``: camera patches' scenes may be softened first
        (:func:`~malleconv.data.camera_noise.soften_scene`, ``optics_prob``)."""
        # Own streams, so the white-noise patches are those of a run without the mixture.
        pick = np.random.default_rng((self.seed, 23, step, self.rank)).random(self.batch_size)
        camera = pick < self.camera_noise_prob
        plain = (pick >= self.camera_noise_prob) & (pick < self.camera_noise_prob + self.clean_prob)
        p = clean.shape[-1]
        level = sigma.view(-1, 1, 1, 1).expand(-1, 1, p, p).clone()
        noisy = noisy.clone()
        if camera.any():
            idx = torch.from_numpy(np.flatnonzero(camera)).to(clean.device)
            seq = np.random.SeedSequence((self.seed, 29, step, self.rank))
            cam_gen = torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))
            scene = clean[idx].cpu()
            if self.camera_noise.optics_prob > 0:
                # Its own stream, so runs without it keep their camera-noise draws.
                seq = np.random.SeedSequence((self.seed, 31, step, self.rank))
                optics_gen = torch.Generator().manual_seed(
                    int(seq.generate_state(1, np.uint64)[0] >> 1)
                )
                scene = soften_scene(scene, optics_gen, self.camera_noise)
            # The camera pipeline draws from a CPU generator: made on the host, then moved.
            if self.camera_noise.enlarge_prob > 0:
                # The enlarged patches' targets are their enlarged small scenes.
                scene, cam = enlarge_camera_noise(scene, cam_gen, self.camera_noise)
            else:
                cam = add_camera_noise(scene, cam_gen, self.camera_noise)
            if self.camera_noise.optics_prob > 0 or self.camera_noise.enlarge_prob > 0:
                clean = clean.clone()
                clean[idx] = scene.to(clean.device)
            cam = cam.to(clean.device)
            noisy[idx] = cam
            level[idx] = local_noise_std(cam, clean[idx]).clamp(max=75.0)
        if plain.any():
            idx = torch.from_numpy(np.flatnonzero(plain)).to(clean.device)
            noisy[idx] = clean[idx]
            level[idx] = 0.0
        return clean, noisy, level
