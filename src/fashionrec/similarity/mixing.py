"""Several image models, one embedding: unit embeddings concatenated with weights √w_i (Σ w_i = 1).

Why: one model trained on product-type classes sees silhouettes and ignores colour; one trained on
type×colour classes sees colour but loses part of the type signal (docs/benchmarks.md). The weighted
concatenation is again unit length, and its cosine is Σ w_i·cos_i, so FAISS inner-product search on it
ranks by a weighted mix of the models' similarities. The weights are chosen on validation products.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np


def weight_grid(models: int, steps: int = 10) -> list[tuple[float, ...]]:
    """Every weight vector on the simplex with entries in multiples of 1/steps (one model: (1.0,))."""
    if models < 1:
        raise ValueError("at least one model is needed")
    grid = [counts for counts in itertools.product(range(steps + 1), repeat=models) if sum(counts) == steps]
    return [tuple(c / steps for c in counts) for counts in grid]


def combine(embeddings: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """[√w_1·e_1 | √w_2·e_2 | ...] of unit embeddings; models with weight 0 are left out."""
    if len(embeddings) != len(weights):
        raise ValueError(f"{len(embeddings)} embeddings but {len(weights)} weights")
    parts = [np.sqrt(w) * e for e, w in zip(embeddings, weights, strict=True) if w > 0]
    return np.hstack(parts).astype(np.float32)


def choose_weights(
    embeddings: Sequence[np.ndarray], score: Callable[[np.ndarray], float], steps: int = 10
) -> tuple[tuple[float, ...], float]:
    """The grid weights whose combined embedding scores best (ties: the earliest on the grid)."""
    best: tuple[tuple[float, ...], float] | None = None
    for weights in weight_grid(len(embeddings), steps):
        value = score(combine(embeddings, weights))
        if best is None or value > best[1]:
            best = (weights, value)
    assert best is not None
    return best
