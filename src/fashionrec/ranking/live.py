"""The live method: what batch scoring writes and the served model answers. Chosen on validation among the
ranker's list, blends of "the customer's own recent articles first, then the ranker's list", and the
repurchase-then-popular baseline (`train_ranker`, `backtest`); applied by one function everywhere."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

PIPELINE = "pipeline"
BASELINE = "repurchase_then_popular"
BLEND = re.compile(r"^repurchase_(\d+)_then_pipeline$")
BLEND_CUTOFFS = (1, 2, 4, 6, 12)
REPURCHASE_WEEKS = 12  # the baseline's window of "own recent articles" (evaluation.baselines.repurchase)


def blend(first: Sequence[str], then: Sequence[str], cutoff: int, k: int) -> list[str]:
    """The first `cutoff` distinct articles of `first`, then `then` without repeats, cut to `k`."""
    head = list(dict.fromkeys(first))[:cutoff]
    seen = set(head)
    return (head + [a for a in dict.fromkeys(then) if a not in seen])[:k]


def blend_name(cutoff: int) -> str:
    return f"repurchase_{cutoff}_then_pipeline"


def live_lists(
    name: str, own: Sequence[str], ranked: Sequence[str], popular: Sequence[str], k: int
) -> list[str]:
    """The live method's top-k from the customer's own recent articles (most recent first), the ranker's
    list and the popular list."""
    if name == PIPELINE:
        return list(ranked[:k])
    if name == BASELINE:
        return blend(own, popular, k, k)
    match = BLEND.match(name)
    if match is None:
        raise ValueError(
            f"unknown live method {name!r}: {PIPELINE}, {BASELINE} or repurchase_<n>_then_pipeline"
        )
    return blend(own, ranked, int(match.group(1)), k)


def own_recent(history: Sequence[tuple[str, int]], first_day: int, k: int) -> list[str]:
    """Distinct articles bought in the `REPURCHASE_WEEKS` weeks before day `first_day`, most recent
    first, then most often, then by id: `evaluation.baselines.repurchase`'s order, on (article, day)."""
    since = first_day - 7 * REPURCHASE_WEEKS
    last: dict[str, int] = {}
    count: dict[str, int] = {}
    for article, day in history:
        if since <= day < first_day:
            last[article] = max(last.get(article, day), day)
            count[article] = count.get(article, 0) + 1
    return sorted(last, key=lambda a: (-last[a], -count[a], a))[:k]


@dataclass(frozen=True)
class LiveChoice:
    """The chosen method and why, as written to the pipeline config."""

    name: str = PIPELINE
    why: str = "default"
