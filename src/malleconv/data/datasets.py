"""Clean training images: the random-patch dataset and the pixel operations it and the trainer
use (loading, augmentation, downscaling, padding); evaluation shares :func:`load_clean`."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from malleconv.io import (
    ImageReadError,
    drop_alpha,
    list_images,
    read_image,
    rgb_to_gray,
    to_float,
)

__all__ = [
    "ImageFolderPatches",
    "NUM_AUGMENTATIONS",
    "apply_augmentation",
    "color_jitter",
    "downscale_half",
    "load_clean",
    "pad_to",
]

NUM_AUGMENTATIONS = 8


def apply_augmentation(x: np.ndarray | torch.Tensor, mode: int, *, channels_last: bool = True):
    """Apply one of the 8 dihedral transforms (rotations by 90 degrees, with or without a flip).

    ``mode % 4`` is the number of counter-clockwise quarter turns; ``mode >= 4`` adds a
    left-right flip after the rotation. Mode 0 is the identity.

    Args:
        x: ``H x W x C`` (``channels_last=True``, numpy or torch) or ``... x H x W``
            (``channels_last=False``).
        mode: Integer in ``0..7``.
        channels_last: Where the spatial axes are (see ``x``).

    Returns:
        The transformed array/tensor (a view where possible).
    """
    if not 0 <= mode < NUM_AUGMENTATIONS:
        raise ValueError(f"augmentation mode must be in 0..7, got {mode}")
    h_axis, w_axis = (0, 1) if channels_last else (-2, -1)
    if isinstance(x, torch.Tensor):
        out = torch.rot90(x, mode % 4, dims=(h_axis, w_axis))
        return torch.flip(out, dims=(w_axis,)) if mode >= 4 else out
    out = np.rot90(x, mode % 4, axes=(h_axis, w_axis))
    return np.flip(out, axis=w_axis) if mode >= 4 else out


def color_jitter(rgb: np.ndarray | torch.Tensor, order, saturation: float):
    """Reorder the channels of ``rgb`` and scale its chroma by ``saturation``.

    Args:
        rgb: ``(H, W, 3)`` float in [0, 1], numpy or torch (returned as the same kind).
        order: A permutation of ``(0, 1, 2)``: output channel ``i`` is input channel
            ``order[i]``.
        saturation: Factor applied to each pixel's distance from its gray level (the channel
            mean, which a channel reorder keeps); 1 keeps the colours.

    Returns:
        ``(H, W, 3)`` float32 in [0, 1] (values pushed outside are clipped).
    """
    out = rgb[..., list(order)]
    if isinstance(out, torch.Tensor):
        if saturation != 1.0:
            gray = out.mean(dim=2, keepdim=True)
            out = (gray + saturation * (out - gray)).clamp(0.0, 1.0)
        return out.to(torch.float32).contiguous()
    if saturation != 1.0:
        gray = out.mean(axis=2, keepdims=True)
        out = np.clip(gray + saturation * (out - gray), 0.0, 1.0)
    return np.ascontiguousarray(out, dtype=np.float32)


def load_clean(path: str | os.PathLike[str], *, gray: bool) -> np.ndarray:
    """Read an image for training/evaluation as ``H x W x 1`` (gray) or ``H x W x C``.

    Alpha is dropped. With ``gray=True`` colour images become BT.601 luminance; with
    ``gray=False`` gray images stay ``H x W x 1`` (callers replicate them to 3 channels when
    needed, which saves memory for datasets kept in RAM). The dtype (uint8/uint16) is kept.
    """
    pixels = drop_alpha(read_image(path).pixels)
    if gray:
        pixels = rgb_to_gray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return pixels


def downscale_half(pixels: np.ndarray) -> np.ndarray:
    """``H x W [x C]`` image -> ``H//2 x W//2 [x C]``: 2x2 box average, same dtype
    (integers rounded).

    JPEG training images (CBSD432) store chroma at half resolution (4:2:0) and quantise it
    coarsely, so their colour edges are soft; each halving brings the colour detail closer to
    the luma's, as in lossless test images (McMaster, Kodak24). On CBSD432 the chroma / luma
    gradient-energy ratio is 0.010 at full size, 0.024 halved and 0.051 at a quarter
    (``research/colour_fidelity.py --train``).
    """
    h, w = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
    if h == 0 or w == 0:
        raise ValueError(f"image of shape {pixels.shape} is too small to halve")
    p = pixels[:h, :w].astype(np.float64)
    half = (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) / 4
    if np.issubdtype(pixels.dtype, np.integer):
        top = np.iinfo(pixels.dtype).max
        return np.clip(np.rint(half), 0, top).astype(pixels.dtype)
    return half.astype(pixels.dtype)


def pad_to(pixels: np.ndarray, size: int) -> np.ndarray:
    """Reflect-pad ``H x W x C`` so both sides are at least ``size`` (centred)."""
    h, w = pixels.shape[:2]
    dh, dw = max(0, size - h), max(0, size - w)
    if dh == 0 and dw == 0:
        return pixels
    # numpy's reflect mode repeats the reflection when the pad exceeds the image; a one-pixel
    # axis cannot be reflected and is repeated instead.
    mode = "reflect" if min(h, w) > 1 else "edge"
    return np.pad(pixels, ((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2), (0, 0)), mode=mode)


def _to_tensor(pixels: np.ndarray, channels: int) -> torch.Tensor:
    """``H x W x c`` integer pixels -> float32 ``channels x H x W`` tensor in ``[0, 1]``."""
    chw = np.ascontiguousarray(to_float(pixels).transpose(2, 0, 1))
    tensor = torch.from_numpy(chw)
    if tensor.shape[0] != channels:
        tensor = tensor.expand(channels, -1, -1).contiguous()
    return tensor


class ImageFolderPatches(Dataset):
    """Random square patches of the images in a folder, for training.

    All images are decoded once and kept in memory in their own bit depth (uint8/uint16), gray
    images as a single channel. Item ``i`` is a random ``patch_size`` crop of image
    ``i % num_images`` with a random one of the 8 flips/rotations (see :func:`apply_augmentation`).

    Randomness is a pure function of ``(seed, epoch, i)`` (``np.random.default_rng``), not of
    the worker process or the order of calls, so a run resumed at a given epoch sees exactly the
    same patches. Call :meth:`set_epoch` at the start of every epoch.

    Args:
        root: Folder of training images (searched recursively), or an image file / glob pattern
            (see :func:`malleconv.io.list_images`), or a list of them (in that order). PNG,
            JPEG, TIFF, BMP, WebP; 8 or 16 bit.
        patch_size: Side ``P`` of the square patches.
        gray: One-channel patches (BT.601 luminance of colour images); otherwise three channels
            (gray images replicated).
        skip_corrupt: Skip unreadable files with a warning instead of raising
            :class:`~malleconv.io.ImageReadError`.
        length: Virtual dataset length (patches per epoch); default is the number of images.
        augment: Apply the random flips/rotations.
        seed: Base seed of the random crops and augmentations.
        recursive: Search subfolders of ``root``.

    Items are float32 tensors of shape ``(C, P, P)`` in ``[0, 1]`` with ``C`` 1 or 3. Images
    smaller than the patch are reflect-padded.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | list,
        patch_size: int,
        *,
        gray: bool = False,
        skip_corrupt: bool = False,
        length: int | None = None,
        augment: bool = True,
        seed: int = 0,
        recursive: bool = True,
    ) -> None:
        if int(patch_size) < 1:
            raise ValueError(f"patch_size must be positive, got {patch_size}")
        if length is not None and int(length) < 1:
            raise ValueError(f"length must be positive, got {length}")
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        roots = list(root) if isinstance(root, (list, tuple)) else [root]
        self.root = Path(roots[0])
        self.patch_size = int(patch_size)
        self.gray = bool(gray)
        self.channels = 1 if gray else 3
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0

        self.files: list[Path] = []
        self.images: list[np.ndarray] = []
        for file, _ in list_images(roots, recursive=recursive):
            try:
                pixels = load_clean(file, gray=self.gray)
            except ImageReadError as exc:
                if not skip_corrupt:
                    raise
                warnings.warn(f"skipping unreadable image {file}: {exc}", stacklevel=2)
                continue
            self.files.append(file)
            # Padding once here keeps __getitem__ cheap for small images.
            self.images.append(pad_to(pixels, self.patch_size))
        if not self.images:
            raise ValueError(f"{root}: no readable image in folder")
        self.length = int(length) if length is not None else len(self.images)

    @property
    def num_images(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """Select the random crops/augmentations of ``epoch`` (call once per epoch)."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def crop_params(self, index: int) -> tuple[int, int, int, int]:
        """Return ``(image index, top, left, augmentation mode)`` of item ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for dataset of length {self.length}")
        image_index = index % len(self.images)
        h, w = self.images[image_index].shape[:2]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        top = int(rng.integers(0, h - self.patch_size + 1))
        left = int(rng.integers(0, w - self.patch_size + 1))
        mode = int(rng.integers(0, NUM_AUGMENTATIONS)) if self.augment else 0
        return image_index, top, left, mode

    def __getitem__(self, index: int) -> torch.Tensor:
        if index < 0:
            index += self.length
        image_index, top, left, mode = self.crop_params(index)
        p = self.patch_size
        patch = self.images[image_index][top : top + p, left : left + p]
        return _to_tensor(apply_augmentation(patch, mode), self.channels)

    def __repr__(self) -> str:
        return (
            f"ImageFolderPatches(root={str(self.root)!r}, images={len(self.images)}, "
            f"patch_size={self.patch_size}, gray={self.gray}, length={self.length})"
        )
