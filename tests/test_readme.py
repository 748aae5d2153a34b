"""Every ```python block of README.md runs as written, so the README cannot drift from the
library. Each block runs in a fresh namespace holding the placeholder variables the README
uses for the reader's own data (``photo_uint8``, ``noisy_bchw``, ...), made from a 64x64
crop of the bundled sample so that the whole file runs in seconds.

A block that uses a new placeholder: add it to ``PLACEHOLDERS``. A block that needs an
optional dependency: add the module's import name to ``OPTIONAL_MODULES``; the block is
then skipped, with the reason, where that module is not installed. Nothing else skips.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SAMPLE = ROOT / "src" / "malleconv" / "assets" / "sample.png"
SIDE = 64  # crop side: small enough for every block to run in about a second


def _photo_uint8() -> np.ndarray:
    """A noisy 8-bit photo, ``(SIDE, SIDE, 3)`` uint8: the sample's top-left crop plus
    white noise of std 15."""
    clean = np.asarray(Image.open(SAMPLE).convert("RGB"))[:SIDE, :SIDE].astype(np.float64)
    noise = np.random.default_rng(0).normal(0, 15, clean.shape)
    return np.clip(np.rint(clean + noise), 0, 255).astype(np.uint8)


def _noisy_chw() -> torch.Tensor:
    """The same photo as a float tensor ``(3, SIDE, SIDE)`` in [0, 1]."""
    return torch.from_numpy(_photo_uint8()).permute(2, 0, 1).float() / 255


# Placeholder name in the README -> a function making a small value of that kind.
PLACEHOLDERS: dict[str, Callable[[], object]] = {
    "photo_uint8": _photo_uint8,
    "noisy_float_tensor": _noisy_chw,  # (3, H, W), float in [0, 1]
    "noisy_bchw": lambda: _noisy_chw()[None],  # (1, 3, H, W), float in [0, 1]
}

# Optional dependencies (import names) a README block may need: without them the block is
# skipped, not failed.
OPTIONAL_MODULES = {"onnx", "onnxruntime", "triton", "bm3d", "spandrel", "matplotlib"}


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every fenced ```python block of a Markdown text."""
    blocks = []
    for match in re.finditer(r"^```python[ \t]*\n(.*?)^```", text, re.M | re.S):
        blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


BLOCKS = python_blocks(README.read_text())


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("line, code", BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_python_block_runs(line, code):
    namespace = {name: make() for name, make in PLACEHOLDERS.items()}
    compiled = compile(code, f"{README.name}:{line}", "exec")
    try:
        exec(compiled, namespace)  # noqa: S102 - the README's own code, as written
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing in OPTIONAL_MODULES:
            pytest.skip(f"README.md:{line} needs the optional module {missing!r}")
        raise


def test_python_blocks_are_found_with_their_line_numbers():
    text = "intro\n```python\nx = 1\n```\n\n```bash\nls\n```\n```python\ny = 2\nz = 3\n```\n"
    assert python_blocks(text) == [(3, "x = 1\n"), (10, "y = 2\nz = 3\n")]
