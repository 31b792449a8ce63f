"""Ranking metrics over customers who bought something in the target week.

MAP@12 is the H&M competition's: for each customer, AP@k = sum_{i<=k} P(i) * rel(i) / min(|actual|, k),
averaged over customers with at least one purchase in the week (customers without one are excluded).
Predictions are de-duplicated keeping the first occurrence, as a duplicate can earn nothing twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def _dedupe(predicted: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    return [p for p in predicted if not (p in seen or seen.add(p))]


def average_precision_at_k(actual: Iterable[str], predicted: Sequence[str], k: int = 12) -> float:
    truth = set(actual)
    if not truth:
        return 0.0
    hits, score = 0, 0.0
    for i, item in enumerate(_dedupe(predicted)[:k], start=1):
        if item in truth:
            hits += 1
            score += hits / i
    return score / min(len(truth), k)


def recall_at_k(actual: Iterable[str], predicted: Sequence[str], k: int) -> float:
    truth = set(actual)
    return len(truth & set(_dedupe(predicted)[:k])) / len(truth) if truth else 0.0


def precision_at_k(actual: Iterable[str], predicted: Sequence[str], k: int) -> float:
    return len(set(actual) & set(_dedupe(predicted)[:k])) / k


def ndcg_at_k(actual: Iterable[str], predicted: Sequence[str], k: int = 12) -> float:
    truth = set(actual)
    if not truth:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 1) for i, p in enumerate(_dedupe(predicted)[:k], start=1) if p in truth)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(truth), k) + 1))
    return dcg / ideal


def hit_rate_at_k(actual: Iterable[str], predicted: Sequence[str], k: int = 12) -> float:
    return 1.0 if set(actual) & set(_dedupe(predicted)[:k]) else 0.0


def evaluate(
    actual: Mapping[str, Sequence[str]],
    predicted: Mapping[str, Sequence[str]],
    k: int = 12,
    catalog_size: int | None = None,
    product_type: Mapping[str, str] | None = None,
    recall_ks: Sequence[int] = (12, 100),
) -> dict[str, float]:
    """All metrics of one method. Customers in `actual` with no prediction count as empty lists."""
    customers = [c for c, items in actual.items() if items]
    n = len(customers)
    if n == 0:
        raise ValueError("no customer bought anything in the target week: nothing to evaluate")

    def mean(metric) -> float:
        return sum(metric(actual[c], predicted.get(c, ())) for c in customers) / n

    out = {
        f"map@{k}": mean(lambda a, p: average_precision_at_k(a, p, k)),
        f"ndcg@{k}": mean(lambda a, p: ndcg_at_k(a, p, k)),
        f"hit_rate@{k}": mean(lambda a, p: hit_rate_at_k(a, p, k)),
        f"precision@{k}": mean(lambda a, p: precision_at_k(a, p, k)),
    }
    for rk in recall_ks:
        out[f"recall@{rk}"] = mean(lambda a, p, rk=rk: recall_at_k(a, p, rk))
    if catalog_size:
        shown = {item for c in customers for item in _dedupe(predicted.get(c, ()))[:k]}
        out["coverage"] = len(shown) / catalog_size
    if product_type is not None:
        out["diversity"] = mean(lambda a, p: len({product_type.get(i) for i in _dedupe(p)[:k]} - {None}))
    out["customers"] = float(n)
    return out
