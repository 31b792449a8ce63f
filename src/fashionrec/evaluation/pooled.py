"""Scores pooled over customer-weeks: per-buyer AP, means with bootstrap intervals, paired lifts, and the
choice of a live method that replaces the default only when its lift is sure. No Spark here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fashionrec.evaluation.metrics import average_precision_at_k

Lists = Mapping[str, Sequence[str]]


def scores(actual: Lists, predicted: Lists, k: int = 12) -> dict[str, float]:
    """AP@k of every buyer in `actual` (no prediction counts as an empty list)."""
    return {c: average_precision_at_k(a, predicted.get(c, ()), k) for c, a in actual.items() if a}


@dataclass(frozen=True)
class Pooled:
    """A method's mean over customer-weeks with a bootstrap 95% interval."""

    mean: float
    low: float
    high: float
    n: int


def bootstrap_indices(n: int, samples: int, seed: int) -> np.ndarray:
    """(samples, n) resampled positions; shared by every method so that intervals are paired."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def pooled(values: Sequence[float], indices: np.ndarray) -> Pooled:
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        return Pooled(0.0, 0.0, 0.0, 0)
    means = array[indices].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Pooled(float(array.mean()), float(low), float(high), int(array.size))


def ratio(values: Sequence[float], baseline: Sequence[float], indices: np.ndarray) -> Pooled:
    """mean(values) / mean(baseline) on the same customer-weeks, with a paired bootstrap interval."""
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if a.size == 0 or b.mean() == 0:
        return Pooled(float("nan"), float("nan"), float("nan"), int(a.size))
    ratios = a[indices].mean(axis=1) / np.maximum(b[indices].mean(axis=1), 1e-12)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return Pooled(float(a.mean() / b.mean()), float(low), float(high), int(a.size))


def choose(
    earlier: Mapping[str, Sequence[float]],
    default: str,
    minimum: int,
    weeks: int,
    confidence: float = 0.9,
    samples: int = 1000,
    seed: int = 0,
) -> tuple[str, str]:
    """The live method, chosen on the earlier customer-weeks, and why.

    `earlier` maps each method to its scores on the same earlier customer-weeks (`weeks` weeks of them).
    The default (a baseline) stays live unless the best other method beats it with `confidence`, corrected
    for having picked the best of several (Bonferroni): the (1 - confidence) / alternatives quantile of the
    paired bootstrap ratio of their means must be above 1. A week has only tens of buyers on small data,
    and picking the best of many noisy means would otherwise chase noise. With fewer than `minimum` weeks
    the default is kept."""
    if weeks < minimum or not earlier or default not in earlier:
        return default, f"{weeks} earlier week(s) < {minimum}: the default"
    means = {m: float(np.mean(v)) if len(v) else 0.0 for m, v in earlier.items()}
    best = max(sorted(means), key=lambda m: (means[m], m == default))
    if best == default or means[best] <= means[default]:
        return default, f"no method above the default over {weeks} earlier week(s) ({means[default]:.4f})"
    indices = bootstrap_indices(len(earlier[default]), samples, seed)
    lift = np.asarray(earlier[best], dtype=float)[indices].mean(axis=1) / np.maximum(
        np.asarray(earlier[default], dtype=float)[indices].mean(axis=1), 1e-12
    )
    alpha = (1 - confidence) / max(1, len(earlier) - 1)
    lower = float(np.quantile(lift, alpha))
    summary = f"{best} {means[best]:.4f} vs {default} {means[default]:.4f} over {weeks} earlier week(s)"
    if lower <= 1.0:
        return default, f"{summary}: lift not sure ({alpha:.1%} quantile {lower:.2f} <= 1)"
    return best, f"{summary}: lift sure ({alpha:.1%} quantile {lower:.2f} > 1)"
