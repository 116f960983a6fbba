"""The learning-rate schedule every trainer here uses: linear warmup, then cosine decay to 0."""

from __future__ import annotations

import math


def warmup_cosine(step: int, warmup: int, total: int, progress_floor: float = 0.0) -> float:
    """LR multiplier at ``step``: (step + 1) / warmup during warmup, then a half cosine from 1 at
    ``warmup`` to 0 at ``total``. ``progress_floor`` (a fraction of a time budget spent) moves
    the cosine on faster, so a time-boxed run ends annealed whichever limit comes first."""
    if step < warmup:
        return (step + 1) / warmup
    progress = max((step - warmup) / max(1, total - warmup), progress_floor)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
