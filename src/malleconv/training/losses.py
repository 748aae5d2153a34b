"""Training losses: per-patch MSE (with the soft-chroma option), the PSNR loss, and the
choice among them by name (``train.loss``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.camera_noise import OPPONENT

__all__ = ["PSNR_LOSS_MSE_FLOOR", "make_loss", "per_patch_mse", "psnr_loss"]


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
    # OPPONENT is a rotation of RGB, so it keeps squared errors: the RGB MSE is the mean
    # over its three channels.
    basis = OPPONENT.to(err.device, err.dtype)
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


def make_loss(kind: str):
    """The loss named ``kind`` (``psnr``, ``mse``, ``l1`` or ``charbonnier``) as
    ``fn(pred, target, soft_chroma=None)`` -> scalar, for ``(B, C, H, W)`` tensors and a
    ``(B,)`` bool ``soft_chroma``; only ``mse`` and ``psnr`` use ``soft_chroma``."""
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
