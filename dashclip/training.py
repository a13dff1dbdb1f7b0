"""The training loop shared by stage 1, stage 2 and the teacher, and its small pure helpers: the
learning-rate schedule and length-grouped batching."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np


def lr_lambda(step: int, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))


def length_grouped_batches(lengths: np.ndarray, batch_size: int, group: int, permutation: Callable[[int], np.ndarray],
                           min_size: int = 1) -> list[np.ndarray]:
    """One epoch's batches of positions into ``lengths``: a random permutation cut into windows of
    ``group`` batches, each window sorted by length (stable) and cut into batches, the batches then
    shuffled; batches smaller than ``min_size`` are dropped. A batch pads to its longest row, so
    similar lengths together cost less padding, while every row is seen once per epoch and the batch
    order stays random. ``permutation(n)`` draws the random orders (a numpy or torch generator, so a
    caller keeps its own random stream)."""
    perm = np.asarray(permutation(len(lengths)))
    batches = []
    for s in range(0, len(perm), batch_size * group):
        window = perm[s:s + batch_size * group]
        window = window[np.argsort(lengths[window], kind="stable")]
        batches += [window[i:i + batch_size] for i in range(0, len(window), batch_size)]
    return [batches[i] for i in np.asarray(permutation(len(batches))).tolist() if len(batches[i]) >= min_size]
