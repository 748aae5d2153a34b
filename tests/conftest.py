"""Shared fixtures: small generated images (no dependency on shared data)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def synthetic_image(seed: int, h: int = 96, w: int = 96) -> np.ndarray:
    """A smooth colour image with edges: blurred blobs plus a few rectangles, uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3))
    for _ in range(6):
        cy, cx, r = rng.random(3) * [1, 1, 0.4] + [0, 0, 0.1]
        color = rng.random(3)
        img += color * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))[..., None]
    for _ in range(3):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        img[y0 : y0 + rng.integers(4, 30), x0 : x0 + rng.integers(4, 30)] = rng.random(3)
    img = img / img.max()
    return (img * 255).round().astype(np.uint8)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """A folder of 12 generated 96x96 PNG training images."""
    root = tmp_path_factory.mktemp("images")
    for i in range(12):
        Image.fromarray(synthetic_image(i)).save(root / f"img{i:02d}.png")
    return root
