"""Synthetic "dead leaves" training patches: sharp-edged, scale-invariant colour layouts.

CBSD432 is JPEG with 4:2:0 chroma, so its colour edges are soft at full size
(``docs/research/colour_fidelity.md``) and a model trained on it learns to blur fine
colour detail that clean test sets such as McMaster have. A dead-leaves image (Matheron's
model: opaque discs with power-law radii stacked until the plane is covered) has edges at
every scale and every colour transition sharp, which real images' statistics follow
closely enough to be a known stand-in for training denoisers (Achddou, Gousseau and Ladjal,
"Synthetic images as a regularity prior for image restoration neural networks", SSVM 2021).
Here the leaves take their colours from a training image, so the palette stays natural.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dead_leaves"]


def _radii(rng: np.random.Generator, n: int, r_min: float, r_max: float, alpha: float):
    """``n`` radii with density proportional to ``r ** -alpha`` on ``[r_min, r_max]``
    (inverse CDF); ``alpha = 3`` makes the layout scale invariant."""
    a = 1.0 - alpha
    u = rng.random(n)
    return (r_min**a + u * (r_max**a - r_min**a)) ** (1.0 / a)


def dead_leaves(
    size: int,
    palette: np.ndarray,
    rng: np.random.Generator,
    *,
    r_min: float = 2.0,
    r_max: float | None = None,
    alpha: float = 3.0,
    shading: float = 0.1,
    supersample: int = 2,
    max_leaves: int = 2000,
) -> np.ndarray:
    """A ``size x size`` dead-leaves image, float32 ``(size, size, C)`` in [0, 1].

    Args:
        size: side in pixels.
        palette: ``(N, C)`` float colours in [0, 1] (e.g. pixels of a training image);
            each leaf takes one at random.
        rng: the only source of randomness: equal generators give equal images.
        r_min, r_max: radius range in output pixels (``r_max`` defaults to ``size / 2``).
        alpha: exponent of the radius density ``r ** -alpha``.
        shading: each leaf's colour varies linearly across it by up to this much (a flat
            leaf would teach that every region is flat).
        supersample: drawn at this many times the size and box-averaged, so edges are
            anti-aliased like a camera's rather than stair-stepped.
        max_leaves: pixels still uncovered after this many leaves take a background colour
            (the last specks only shrink the tiny leaves' share).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    palette = np.asarray(palette, dtype=np.float32).reshape(-1, np.shape(palette)[-1])
    if palette.shape[0] == 0:
        raise ValueError("palette is empty")
    s = int(supersample)
    big = size * s
    r_lo = max(float(r_min), 0.5) * s
    r_hi = max(float(r_max if r_max is not None else size / 2) * s, r_lo)
    channels = palette.shape[1]
    canvas = np.zeros((big, big, channels), np.float32)
    free = np.ones((big, big), bool)
    left = big * big
    # Leaves are laid front to back: each one paints only what no earlier leaf covers, which
    # gives the same picture as stacking them back to front, and it can stop once all is covered.
    batch = 256
    drawn = 0
    while left > 0 and drawn < max_leaves:
        radii = _radii(rng, batch, r_lo, r_hi, alpha)
        centres = rng.uniform(0.0, big, (batch, 2))
        colours = palette[rng.integers(0, palette.shape[0], batch)]
        slopes = rng.uniform(-1.0, 1.0, (batch, 2)) * float(shading)
        for r, (cy, cx), colour, (gy, gx) in zip(radii, centres, colours, slopes):
            drawn += 1
            y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, big)
            x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 1, big)
            if y0 >= y1 or x0 >= x1:
                continue
            dy = (np.arange(y0, y1, dtype=np.float32) - cy)[:, None]
            dx = (np.arange(x0, x1, dtype=np.float32) - cx)[None, :]
            mask = (dy * dy + dx * dx <= r * r) & free[y0:y1, x0:x1]
            if not mask.any():
                continue
            # Shading in units of the leaf's radius, so a large leaf is not a steep ramp.
            ramp = (gy * dy + gx * dx) / r
            canvas[y0:y1, x0:x1][mask] = (colour[None, None, :] + ramp[..., None])[mask]
            free[y0:y1, x0:x1] &= ~mask
            left -= int(mask.sum())
            if left == 0 or drawn >= max_leaves:
                break
    if left > 0:
        canvas[free] = palette[rng.integers(0, palette.shape[0])]
    out = canvas.reshape(size, s, size, s, channels).mean(axis=(1, 3))
    return np.clip(out, 0.0, 1.0).astype(np.float32)
