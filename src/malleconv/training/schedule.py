"""The learning-rate schedule: linear warm-up, then a cosine decay."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(warmup: int, total: int, min_ratio: float, progress=None):
    """The learning-rate factor of each step, ``f(step) -> float`` for ``LambdaLR``: a linear
    warm-up over ``warmup`` steps, then a cosine from 1 to ``min_ratio``.

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
