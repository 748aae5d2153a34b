"""The learning-rate schedule: linear warm-up, then a cosine decay."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(
    warmup: int, total: int, min_ratio: float, progress=None, *, from_start: bool = False
):
    """The learning-rate factor of each step, ``f(step) -> float`` for ``LambdaLR``: a linear
    warm-up over ``warmup`` steps, then a cosine from 1 to ``min_ratio``.

    The cosine follows the step count from the end of the warm-up to ``total`` steps, or,
    when ``progress`` is given (a callable returning the fraction of a wall-clock budget
    spent), that fraction. ``from_start`` counts the steps from 0 instead
    (``t = step / total``): what a clock budget gives at a steady step rate, since its
    fraction counts the warm-up's time too.
    """

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if progress is not None:
            t = progress()
        elif from_start:
            t = step / max(1, total)
        else:
            t = (step - warmup) / max(1, total - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f
