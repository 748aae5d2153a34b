"""MalleNet: a multi-scale denoiser built on MalleConv (Jiang et al., ECCV 2022).

Structure, as in the paper and the authors' released code:

* an input pyramid by pixel-unshuffle (space-to-depth) by 2, 4 levels at 1, 1/2, 1/4, 1/8
  resolution, so most computation runs at low resolution;
* per level a 3x3 conv to the level's width and inverted-bottleneck blocks (encoder);
* a decoder from coarse to fine: at each level blocks, one gated MalleConv, blocks; then
  bilinear upsampling by 2, concatenation with the next finer level's features and a
  fusing conv;
* a last block and a 3x3 conv predict the noise; the output is ``noisy - noise``.

Additions of this implementation: a noise-level map (``sigma / 255`` per pixel) is an
extra input channel so that one model serves every sigma in [0, 75] and spatially
varying noise; the MalleConv residual goes through a learned gate initialised to 0, so
training starts from a plain network; any input size works (reflect padding to a
multiple of 8, cropped back).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.blocks import InvertedBottleneck, PReLU
from ..layers.malleconv import MalleConv2d
from ..ops.slice_conv_export import gather_pad_to_multiple, in_export_mode

__all__ = ["MalleNet", "MalleNetConfig", "noise_level_map", "pad_to_multiple"]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``x (B, C, H, W)`` padded at the bottom and right to a multiple of ``multiple``.

    Reflect padding; replicate padding for images too small to reflect (a pad as long as
    the side). While a graph is exported (:func:`~malleconv.ops.export_mode`) the same
    padding is an index gather, so that the graph holds for every size.
    """
    h, w = x.shape[-2:]
    if in_export_mode():
        return gather_pad_to_multiple(x, multiple, reflect=True)
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x


def noise_level_map(sigma, like: torch.Tensor) -> torch.Tensor:
    """The noise-level input channel: ``sigma / 255`` as a ``(B, 1, H, W)`` map.

    ``sigma`` in 8-bit units: a number, a ``(B,)`` tensor or a ``(B, 1, H, W)`` map;
    ``like`` is the ``(B, C, H, W)`` noisy batch.
    """
    b, _, h, w = like.shape
    if not torch.is_tensor(sigma):
        sigma = torch.tensor(float(sigma))
    sigma = sigma.to(like.device, like.dtype)
    if sigma.dim() == 0:
        sigma = sigma.expand(b)
    if sigma.dim() == 1:
        sigma = sigma.view(-1, 1, 1, 1).expand(b, 1, h, w)
    if not in_export_mode() and sigma.shape != (b, 1, h, w):
        raise ValueError(f"sigma map must have shape {(b, 1, h, w)}, got {tuple(sigma.shape)}")
    return sigma / 255.0


@dataclass
class MalleNetConfig:
    """Hyper-parameters of :class:`MalleNet` (stored next to exported weights)."""

    in_channels: int = 3
    widths: tuple[int, ...] = (64, 64, 128, 256)
    encoder_blocks: int = 1
    decoder_blocks: int = 2  # before and after the MalleConv, at every level
    expand: int = 5
    norm: str = "batch"
    act: str = "prelu"
    noise_map: bool = True
    malle_kernel: int = 3
    # False replaces every MalleConv by its static depthwise conv (the ablation baseline).
    malle_dynamic: bool = True
    malle_grid_stride: int = 8
    malle_guided: bool = False
    malle_grid_depth: int = 8
    malle_predictor_width: int = 16
    malle_guide: str = "learned"
    malle_levels: tuple[int, ...] = field(default_factory=lambda: (0, 1, 2, 3))

    def __post_init__(self):
        self.widths = tuple(self.widths)
        self.malle_levels = tuple(self.malle_levels)
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (gray) or 3 (color), got {self.in_channels}")
        if len(self.widths) < 1:
            raise ValueError("widths must name at least one level")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["malle_levels"] = list(self.malle_levels)
        return d


class _GatedMalleConv(nn.Module):
    """``x + gate * act(malleconv(x))`` with a per-channel gate initialised to 0."""

    def __init__(self, channels: int, cfg: MalleNetConfig):
        super().__init__()
        if not cfg.malle_dynamic:
            k = cfg.malle_kernel
            self.conv = nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels)
        else:
            self.conv = MalleConv2d(
                channels,
                channels,
                cfg.malle_kernel,
                groups=channels,
                grid_stride=cfg.malle_grid_stride,
                downsample=2,
                predictor_width=cfg.malle_predictor_width,
                predictor_depth=1,
                guided=cfg.malle_guided,
                grid_depth=cfg.malle_grid_depth,
                norm=cfg.norm,
                guide=cfg.malle_guide,
            )
        self.act = PReLU(channels) if cfg.act == "prelu" else nn.GELU()
        self.gate = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gate * self.act(self.conv(x))


class _DecoderLevel(nn.Module):
    def __init__(self, channels: int, cfg: MalleNetConfig, malle: bool):
        super().__init__()

        def blocks():
            return [
                InvertedBottleneck(channels, cfg.expand, cfg.norm, cfg.act)
                for _ in range(cfg.decoder_blocks)
            ]

        layers = blocks()
        if malle:
            layers.append(_GatedMalleConv(channels, cfg))
        layers += blocks()
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class MalleNet(nn.Module):
    """Noise-level-conditioned MalleNet denoiser.

    ``forward(noisy, sigma)``: noisy ``(B, C, H, W)`` in [0, 1] (not clipped), sigma in
    8-bit units as a float, a ``(B,)`` tensor or a ``(B, 1, H, W)`` map -> denoised
    ``(B, C, H, W)``.
    """

    def __init__(self, config: MalleNetConfig | None = None, **overrides):
        super().__init__()
        cfg = config or MalleNetConfig()
        if overrides:
            cfg = MalleNetConfig(**{**cfg.to_dict(), **overrides})
        self.config = cfg
        c_in = cfg.in_channels + (1 if cfg.noise_map else 0)
        levels = len(cfg.widths)
        self.levels = levels
        self.heads = nn.ModuleList()
        self.encoders = nn.ModuleList()
        for lvl, width in enumerate(cfg.widths):
            self.heads.append(nn.Conv2d(c_in * 4**lvl, width, 3, padding=1))
            self.encoders.append(
                nn.Sequential(
                    *[
                        InvertedBottleneck(width, cfg.expand, cfg.norm, cfg.act)
                        for _ in range(cfg.encoder_blocks)
                    ]
                )
            )
        self.decoders = nn.ModuleList(
            _DecoderLevel(w, cfg, lvl in cfg.malle_levels) for lvl, w in enumerate(cfg.widths)
        )
        # fuse[l] merges the upsampled level l+1 with level l (1x1 at the finest level).
        self.fuse = nn.ModuleList(
            nn.Conv2d(
                cfg.widths[lvl] + cfg.widths[lvl + 1],
                cfg.widths[lvl],
                1 if lvl == 0 else 3,
                padding=0 if lvl == 0 else 1,
            )
            for lvl in range(levels - 1)
        )
        self.tail = nn.Sequential(
            InvertedBottleneck(cfg.widths[0], cfg.expand, cfg.norm, cfg.act),
            nn.Conv2d(cfg.widths[0], cfg.in_channels, 3, padding=1),
        )
        # A zero noise estimate at initialisation: training starts from the identity.
        nn.init.zeros_(self.tail[-1].weight)
        nn.init.zeros_(self.tail[-1].bias)

    @property
    def multiple(self) -> int:
        return 2 ** (self.levels - 1)

    def forward(self, noisy: torch.Tensor, sigma=None) -> torch.Tensor:
        if not noisy.is_floating_point():  # a uint8 image would come back as garbage
            raise TypeError(f"noisy must be a float tensor in [0, 1], got {noisy.dtype} "
                            "(malleconv.denoise takes uint8 and uint16 images)")
        if noisy.dim() != 4 or noisy.shape[1] != self.config.in_channels:
            raise ValueError(
                f"noisy must have shape (B, {self.config.in_channels}, H, W), "
                f"got {tuple(noisy.shape)}"
            )
        h, w = noisy.shape[-2:]
        x = noisy
        if self.config.noise_map:
            if sigma is None:
                raise ValueError("sigma is required: this model is conditioned on the noise level")
            x = torch.cat([x, noise_level_map(sigma, noisy)], dim=1)
        x = pad_to_multiple(x, self.multiple)
        feats = []
        level_in = x
        for lvl in range(self.levels):
            if lvl:
                level_in = F.pixel_unshuffle(level_in, 2)
            feats.append(self.encoders[lvl](self.heads[lvl](level_in)))
        y = self.decoders[-1](feats[-1])
        for lvl in range(self.levels - 2, -1, -1):
            up = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = self.decoders[lvl](self.fuse[lvl](torch.cat([up, feats[lvl]], dim=1)))
        noise = self.tail(y)[..., :h, :w]
        return noisy - noise
