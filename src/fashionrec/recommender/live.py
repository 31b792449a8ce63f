"""The live method: what batch scoring writes and the served model answers. Chosen on validation among the
ranker's list, blends of "the customer's own recent articles first, then the ranker's list", and the two
repurchase-then-popular baselines (`train_ranker`, `backtest`); applied by one function everywhere."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

PIPELINE = "pipeline"
BASELINE = "repurchase_then_popular"  # own articles of the last 12 weeks, then decayed best sellers
BASELINE_ALL = "repurchase_all_then_popular"  # own articles of the whole history, then last week's
SERVED_BASELINES = (BASELINE, BASELINE_ALL)
BLEND = re.compile(r"^repurchase_(\d+)_then_pipeline$")
REPURCHASE_WEEKS = 12  # the baseline's window of "own recent articles" (evaluation.baselines.repurchase)


def blend(first: Sequence[str], then: Sequence[str], cutoff: int, k: int) -> list[str]:
    """The first `cutoff` distinct articles of `first`, then `then` without repeats, cut to `k`."""
    head = list(dict.fromkeys(first))[:cutoff]
    seen = set(head)
    return (head + [a for a in dict.fromkeys(then) if a not in seen])[:k]


def blend_name(cutoff: int) -> str:
    return f"repurchase_{cutoff}_then_pipeline"


def live_methods(cutoffs: Sequence[int]) -> tuple[str, ...]:
    """Every method the live choice is made among: the ranker's list, the baselines and the blends with
    the given cut-offs (`RankingParams.blend_cutoffs`)."""
    return (PIPELINE, *SERVED_BASELINES, *map(blend_name, cutoffs))


def live_lists(
    name: str,
    own: Sequence[str],
    ranked: Sequence[str],
    popular: Sequence[str],
    k: int,
    own_all: Sequence[str] = (),
    last_week: Sequence[str] = (),
) -> list[str]:
    """The live method's top-k from the customer's own recent articles (most recent first), the ranker's
    list and the popular list; the whole-history baseline from all their articles (`own_all`) and last
    week's best sellers."""
    if name == PIPELINE:
        return list(ranked[:k])
    if name == BASELINE:
        return blend(own, popular, k, k)
    if name == BASELINE_ALL:
        return blend(own_all, last_week, k, k)
    match = BLEND.match(name)
    if match is None:
        raise ValueError(
            f"unknown live method {name!r}: {PIPELINE}, {BASELINE}, {BASELINE_ALL} or "
            "repurchase_<n>_then_pipeline"
        )
    return blend(own, ranked, int(match.group(1)), k)


def own_recent(
    history: Sequence[tuple[str, int]], first_day: int, k: int, weeks: int | None = REPURCHASE_WEEKS
) -> list[str]:
    """Distinct articles bought in the `weeks` weeks before day `first_day` (None: ever), most recent
    first, then most often, then by id: `evaluation.baselines.repurchase`'s order, on (article, day)."""
    since = first_day - 7 * weeks if weeks is not None else -(1 << 62)
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
