"""Synthetic camera noise: clean sRGB -> what a camera's JPEG of the same scene looks like.

Real photos are not clean images plus white Gaussian noise. The sensor adds
signal-dependent (shot) plus constant (read) noise to a Bayer mosaic; demosaicing, colour
correction, tone curve, sharpening, in-camera chroma smoothing and JPEG then make that noise
correlated between neighbouring pixels and between channels. A model trained on white
noise takes such noise for texture, and a white-noise estimator reads it far too low.

:func:`add_camera_noise` follows the published synthesis pipelines:

* **Unprocessing** (Brooks et al., *Unprocessing Images for Learned Raw Denoising*,
  CVPR 2019): invert the tone curve (smoothstep) and gamma (2.2), a random camera colour
  matrix and white-balance gains; shot / read noise on the Bayer mosaic, with
  ``log(shot)`` uniform in ``[log 1e-4, log 1.2e-2]`` and
  ``log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26)``.
* **CBDNet** (Guo et al., CVPR 2019): signal-dependent plus constant noise per channel,
  mosaic and demosaic (bilinear, or Malvar-He-Cutler's gradient-corrected filters).
* **BSRGAN / Real-ESRGAN** (Zhang et al., ICCV 2021; Wang et al., ICCVW 2021): JPEG at
  quality 30-95 with 4:2:0 chroma; sharpening; channel-correlated noise.

then runs the forward ISP again (white balance, colour matrix, gamma, tone curve, optional
noise smoothing as in-camera noise reduction does, unsharp masking, chroma smoothing, 8-bit
quantisation, JPEG).

Demosaicing is linear, so the demosaiced noisy mosaic is the ideal demosaic of the signal
(the clean image itself) plus the demosaiced noise: the clean target keeps all its detail
and the noisy image carries exactly the camera-like noise. Every random choice comes from
the ``torch.Generator`` passed in, so a batch is a pure function of its seed.

:func:`soften_scene` optionally blurs the clean scene first (target and input alike), as a
camera's lens, anti-aliasing filter and demosaicing blur its own pixels;
:func:`enlarge_camera_noise` optionally draws an image as a smaller photo enlarged back, whose
grain is wider than a pixel.

Parameter ranges (:class:`CameraNoiseRanges`) are the published ones above; the JPEG
quality range starts at 60 rather than 30 because camera JPEGs are high quality.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from .demosaic import demosaic_bilinear, demosaic_malvar, mosaic_masks
from .noise import seed_for

__all__ = [
    "OPPONENT",
    "CameraNoiseRanges",
    "add_camera_noise",
    "enlarge_camera_noise",
    "camera_noise_draw",
    "demosaic_bilinear",
    "demosaic_malvar",
    "local_noise_std",
    "mosaic_masks",
    "soften_scene",
]


@dataclass(frozen=True)
class CameraNoiseRanges:
    """Ranges of the per-image parameters of :func:`add_camera_noise` (uniform draws)."""

    log_shot: tuple[float, float] = (math.log(1e-4), math.log(1.2e-2))
    read_slope: float = 2.18
    read_offset: float = 1.20
    read_jitter: float = 0.26
    red_gain: tuple[float, float] = (1.9, 2.4)
    blue_gain: tuple[float, float] = (1.5, 1.9)
    # Off-diagonal weights of the RGB -> camera matrix before its rows are normalised to
    # sum 1: cameras' colour filters overlap, so the colour matrix back to RGB amplifies and
    # mixes the channels' noise.
    ccm_mix: tuple[float, float] = (0.05, 0.4)
    malvar_prob: float = 0.5
    sharpen_prob: float = 0.5
    sharpen_amount: tuple[float, float] = (0.2, 1.0)
    chroma_smooth_prob: float = 0.5
    chroma_smooth_sigma: tuple[float, float] = (0.5, 2.0)
    # In-camera noise reduction and resampling also low-pass the luma noise (BSRGAN makes
    # noise spatially correlated by resizing for the same reason).
    smooth_prob: float = 0.6
    smooth_sigma: tuple[float, float] = (0.3, 1.2)
    jpeg_prob: float = 0.75
    jpeg_quality: tuple[int, int] = (60, 95)
    # The scene's softness at the sensor's own resolution (:func:`soften_scene`): lens,
    # anti-aliasing filter and the demosaic of the signal blur a photo's content at the pixel
    # scale, where downscaled training photos are sharp. Off by default (0).
    optics_prob: float = 0.0
    optics_sigma: tuple[float, float] = (0.5, 1.1)
    # A small photo or video frame shown enlarged (:func:`enlarge_camera_noise`): its grain is
    # several pixels wide, where a camera's own is one or two. Off by default (0).
    enlarge_prob: float = 0.0
    enlarge_factor: tuple[float, float] = (1.5, 3.0)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name} must be in [0, 1], got {value}")
            if isinstance(value, tuple) and not (len(value) == 2 and value[0] <= value[1]):
                raise ValueError(f"{f.name} must be a range [low, high], got {list(value)}")

    @classmethod
    def from_mapping(cls, values: dict) -> CameraNoiseRanges:
        """Ranges from a config mapping (YAML lists for ranges); unknown names raise."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown camera noise parameter(s) {unknown}; known: {sorted(known)}")
        return cls(
            **{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()}
        )

    def as_mapping(self) -> dict:
        """The ranges as a config mapping (ranges as lists), the inverse of from_mapping."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }

    def with_settings(self, settings: list[str]) -> CameraNoiseRanges:
        """These ranges with ``name=value`` settings applied, each value read as YAML as
        ``--set data.camera_noise.name=value`` reads it (``"smooth_sigma=[0.3,2.0]"``)."""
        values = self.as_mapping()
        for item in settings:
            name, sep, raw = item.partition("=")
            if not sep or not name.strip():
                raise ValueError(f"expected name=value, got {item!r}")
            try:
                values[name.strip()] = yaml.safe_load(raw)
            except yaml.YAMLError as err:
                raise ValueError(f"{item!r}: the value is not YAML ({err})") from None
        return self.from_mapping(values)


def _smoothstep(x: torch.Tensor) -> torch.Tensor:
    return 3 * x * x - 2 * x * x * x


def _inverse_smoothstep(y: torch.Tensor) -> torch.Tensor:
    y = y.clamp(0.0, 1.0)
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * y) / 3.0)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of every channel of ``(B, C, H, W)`` (reflect padding)."""
    k = _gaussian_kernel(sigma).to(x)
    c = x.shape[1]
    r = k.shape[-1] // 2
    pad_mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
    xp = F.pad(x, (r, r, r, r), mode=pad_mode)
    return F.conv2d(xp, k.expand(c, 1, *k.shape), groups=c)


# Orthonormal luma / chroma basis: rows (R+G+B)/sqrt3, (R-B)/sqrt2, (R-2G+B)/sqrt6.
OPPONENT = torch.tensor(
    [
        [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],
        [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],
        [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],
    ]
)


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=gen, dtype=torch.float64))


def _random_rgb_to_cam(gen: torch.Generator, mix: tuple[float, float]) -> torch.Tensor:
    m = torch.eye(3, dtype=torch.float64)
    off = mix[0] + (mix[1] - mix[0]) * torch.rand(3, 3, generator=gen, dtype=torch.float64)
    m = m + off * (1 - torch.eye(3, dtype=torch.float64))
    return (m / m.sum(dim=1, keepdim=True)).float()


def _jpeg(rgb: torch.Tensor, quality: int) -> torch.Tensor:
    """``(3, H, W)`` float in [0, 1] through an 8-bit 4:2:0 JPEG of ``quality``."""
    arr = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    out = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(out).permute(2, 0, 1).contiguous()


def add_camera_noise(
    clean: torch.Tensor,
    generator: torch.Generator,
    ranges: CameraNoiseRanges = CameraNoiseRanges(),
) -> torch.Tensor:
    """Camera-like noise on a batch of clean sRGB images.

    Args:
        clean: ``(B, 3, H, W)`` float32 sRGB in ``[0, 1]`` on the CPU, ``H`` and ``W`` at
            least 3.
        generator: CPU ``torch.Generator``; every random choice is drawn from it, so the
            result is a pure function of its state.
        ranges: Parameter ranges (per image), see :class:`CameraNoiseRanges`.

    Returns:
        ``(B, 3, H, W)`` float32 noisy images in ``[0, 1]``, quantised to 8 bits (as a camera
        JPEG is), each image with its own sensor, ISP and JPEG parameters.
    """
    if clean.dim() != 4 or clean.shape[1] != 3:
        raise ValueError(f"clean must be (B, 3, H, W), got {tuple(clean.shape)}")
    out = torch.empty_like(clean)
    for i in range(clean.shape[0]):
        out[i] = _camera_noise_one(clean[i : i + 1], generator, ranges)[0]
    return out


def enlarge_camera_noise(
    clean: torch.Tensor,
    generator: torch.Generator,
    ranges: CameraNoiseRanges = CameraNoiseRanges(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera noise on each image, with probability ``ranges.enlarge_prob`` as a photo
    taken at ``1 / factor`` the size and enlarged back.

    An enlarged small, noisy photo (a phone's thumbnail, a video frame, an old web image)
    carries grain ``factor`` pixels wide; a denoiser of pixel-scale noise, and a noise
    estimator trained on it, read such blotches as texture. An enlarged image is drawn at
    ``round(H / factor) x round(W / factor)`` (area downscale), goes through
    :func:`add_camera_noise`, and scene and noisy image are both enlarged back (bicubic) and
    the noisy one quantised to 8 bits; ``factor`` is uniform in ``ranges.enlarge_factor``.
    The other images get :func:`add_camera_noise` as they are.

    Args:
        clean: ``(B, 3, H, W)`` float32 sRGB in ``[0, 1]`` on the CPU, ``H`` and ``W`` at
            least 3.
        generator: CPU ``torch.Generator``: two draws per image for the choice and factor,
            then the camera noise's own draws, image by image.
        ranges: See :class:`CameraNoiseRanges`.

    Returns:
        ``(scene, noisy)``, both ``(B, 3, H, W)`` float32 in ``[0, 1]``: the clean target
        (the enlarged small scene where enlarged, ``clean`` elsewhere) and the noisy images.
    """
    if clean.dim() != 4 or clean.shape[1] != 3:
        raise ValueError(f"clean must be (B, 3, H, W), got {tuple(clean.shape)}")
    h, w = clean.shape[-2:]
    scene, noisy = clean.clone(), torch.empty_like(clean)
    for i in range(clean.shape[0]):
        enlarged = bool(torch.rand((), generator=generator) < ranges.enlarge_prob)
        factor = _uniform(generator, *ranges.enlarge_factor)
        image = clean[i : i + 1]
        if not enlarged or factor <= 1.0:
            noisy[i] = _camera_noise_one(image, generator, ranges)[0]
            continue
        size = (max(3, round(h / factor)), max(3, round(w / factor)))
        small = F.interpolate(image, size=size, mode="area")
        small_noisy = _camera_noise_one(small, generator, ranges)
        up = [F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
              for t in (small, small_noisy)]
        scene[i] = up[0][0]
        noisy[i] = (up[1][0] * 255).round() / 255
    return scene, noisy


def soften_scene(
    clean: torch.Tensor,
    generator: torch.Generator,
    ranges: CameraNoiseRanges = CameraNoiseRanges(),
) -> torch.Tensor:
    """The clean scene as a camera records it at its native resolution.

    Training photos are downscaled until they are clean, which also makes them sharp at the
    pixel scale; a camera's own pixels are soft (lens, anti-aliasing filter, demosaicing of
    the signal), so at full resolution much of a noisy photo's finest-scale energy is noise,
    where in a training photo it is detail (``research/noise_stats.py`` measures both). Each
    image is, with probability ``ranges.optics_prob``, blurred by a Gaussian of standard
    deviation uniform in ``ranges.optics_sigma`` pixels; both the training target and the input to
    :func:`add_camera_noise` are the softened image.

    Args:
        clean: ``(B, C, H, W)`` float32 in ``[0, 1]`` on the CPU.
        generator: CPU ``torch.Generator``; two draws per image, whether blurred or not.
        ranges: See :class:`CameraNoiseRanges` (``optics_prob``, ``optics_sigma``).

    Returns:
        ``(B, C, H, W)`` float32, the images blurred or as they were.
    """
    if clean.dim() != 4:
        raise ValueError(f"clean must be (B, C, H, W), got {tuple(clean.shape)}")
    out = clean.clone()
    for i in range(clean.shape[0]):
        blurred = bool(torch.rand((), generator=generator) < ranges.optics_prob)
        sigma = _uniform(generator, *ranges.optics_sigma)
        if blurred and sigma > 0:
            out[i] = _blur(clean[i : i + 1], sigma)[0]
    return out


def _camera_noise_one(
    srgb: torch.Tensor, gen: torch.Generator, r: CameraNoiseRanges
) -> torch.Tensor:
    _, _, h, w = srgb.shape
    # Unprocess: sRGB -> linear camera RGB.
    lin = _inverse_smoothstep(srgb).clamp_min(1e-8) ** 2.2
    rgb_to_cam = _random_rgb_to_cam(gen, r.ccm_mix)
    cam_to_rgb = torch.linalg.inv(rgb_to_cam)
    cam = torch.einsum("ij,bjhw->bihw", rgb_to_cam, lin)
    gains = torch.tensor(
        [_uniform(gen, *r.red_gain), 1.0, _uniform(gen, *r.blue_gain)], dtype=torch.float32
    ).view(1, 3, 1, 1)
    raw = (cam / gains).clamp(0.0, 1.0)

    # Sensor: shot + read noise on the mosaic.
    phase = int(torch.randint(0, 4, (), generator=gen))
    masks = mosaic_masks(h, w, phase)
    mosaic = (raw * masks).sum(dim=1, keepdim=True)
    log_shot = _uniform(gen, *r.log_shot)
    log_read = (
        r.read_slope * log_shot
        + r.read_offset
        + r.read_jitter * float(torch.randn((), generator=gen, dtype=torch.float64))
    )
    variance = math.exp(log_shot) * mosaic + math.exp(log_read)
    noise = torch.randn(mosaic.shape, generator=gen) * variance.sqrt()
    malvar = bool(torch.rand((), generator=gen) < r.malvar_prob)
    demosaic = demosaic_malvar if malvar else demosaic_bilinear
    noisy_raw = raw + demosaic(noise, masks)

    # Forward ISP on signal + noise and on the signal alone: the difference is the noise as
    # the camera's pipeline leaves it (clipping included).
    def isp(x: torch.Tensor) -> torch.Tensor:
        x = (x * gains).clamp(0.0, 1.0)
        x = torch.einsum("ij,bjhw->bihw", cam_to_rgb, x).clamp(0.0, 1.0)
        return _smoothstep(x.clamp_min(1e-8) ** (1 / 2.2))

    noise_rgb = isp(noisy_raw) - isp(raw)

    if torch.rand((), generator=gen) < r.smooth_prob:
        noise_rgb = _blur(noise_rgb, _uniform(gen, *r.smooth_sigma))
    if torch.rand((), generator=gen) < r.sharpen_prob:
        amount = _uniform(gen, *r.sharpen_amount)
        noise_rgb = noise_rgb + amount * (noise_rgb - _blur(noise_rgb, 1.0))
    if torch.rand((), generator=gen) < r.chroma_smooth_prob:
        # In-camera noise reduction smooths colour noise into low-frequency blotches.
        s = _uniform(gen, *r.chroma_smooth_sigma)
        opp = torch.einsum("kc,bchw->bkhw", OPPONENT, noise_rgb)
        opp = torch.cat([opp[:, :1], _blur(opp[:, 1:], s)], dim=1)
        noise_rgb = torch.einsum("kc,bkhw->bchw", OPPONENT, opp)

    noisy = (srgb + noise_rgb).clamp(0.0, 1.0)
    if torch.rand((), generator=gen) < r.jpeg_prob:
        q = int(torch.randint(r.jpeg_quality[0], r.jpeg_quality[1] + 1, (), generator=gen))
        return _jpeg(noisy[0], q)[None]
    return (noisy * 255).round() / 255


def camera_noise_draw(
    clean: np.ndarray, name: str, draw: int, ranges: CameraNoiseRanges = CameraNoiseRanges()
) -> tuple[np.ndarray, torch.Tensor]:
    """Draw ``draw`` of camera noise on the named clean image, as validation splits use it.

    The scene is softened first when ``ranges.optics_prob`` is set (:func:`soften_scene`),
    then goes through :func:`add_camera_noise`, or :func:`enlarge_camera_noise` when
    ``ranges.enlarge_prob`` is set; each from a generator seeded by
    :func:`~malleconv.data.noise.seed_for` of ``name`` and ``draw``, so a draw is the same in
    every run and every script.

    Args:
        clean: ``H x W x 3`` uint8 image.
        name: The image's name (seeds the draw).
        draw: Index of the draw.
        ranges: See :class:`CameraNoiseRanges`.

    Returns:
        ``(reference, noisy)``: the ``H x W x 3`` uint8 scene the noise was added to (``clean``
        itself unless softened or enlarged), and the ``(1, 3, H, W)`` float32 noisy image in
        ``[0, 1]``.
    """
    reference = clean
    scene = torch.from_numpy(clean.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    if ranges.optics_prob > 0:
        optics = torch.Generator().manual_seed(seed_for(f"{name}:optics", draw))
        soft = soften_scene(scene, optics, ranges)[0].permute(1, 2, 0).numpy()
        reference = (soft * 255).round().clip(0, 255).astype(np.uint8)
        scene = torch.from_numpy(reference.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    generator = torch.Generator().manual_seed(seed_for(name, draw))
    if ranges.enlarge_prob > 0:
        scene, noisy = enlarge_camera_noise(scene, generator, ranges)
        reference = (scene[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        return reference, noisy
    return reference, add_camera_noise(scene, generator, ranges)


def local_noise_std(noisy: torch.Tensor, clean: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """The local standard deviation of ``noisy - clean``, in 8-bit units.

    ``(B, C, H, W)`` pair -> ``(B, 1, H, W)``: the root of a Gaussian-weighted (``sigma``
    pixels) mean of the squared residual over a neighbourhood and the channels. For white
    noise of level ``s`` it is about ``s`` everywhere; for camera noise it follows the
    brightness-dependent level. The noise-level target of blind training.
    """
    sq = (noisy - clean).pow(2).mean(dim=1, keepdim=True)
    return _blur(sq, sigma).clamp_min(0).sqrt() * 255.0
