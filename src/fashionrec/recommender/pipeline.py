"""The pipeline config the core runs by (`ranking/pipeline.json`, copied into each snapshot's meta.json):
business rules, candidate counts, k, the diversity cap and the live method.

Typed and without defaults of its own: `train_ranker` and the backtest build it from the task's
parameters (`config.params.RankingParams`, the one place a default lives), and the core refuses a config
that lacks a field rather than fill in a value of its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from fashionrec.config.params import RankingParams
from fashionrec.recommender.live import LiveChoice

# The already-bought windows (weeks; 0: off) train_ranker and the backtest choose among on validation.
ALREADY_BOUGHT_CHOICES = (0, 1, 4)


@dataclass(frozen=True)
class FilterRules:
    """The business rules (`Recommender.removals`): the already-bought window in weeks (0: off) and the
    availability rules (out of stock, not sold in the customer's region, age-restricted)."""

    already_bought_weeks: int
    out_of_stock: bool
    region: bool
    age: bool

    @classmethod
    def of(cls, params: RankingParams, already_bought_weeks: int) -> FilterRules:
        return cls(already_bought_weeks, params.filter_out_of_stock, params.filter_region, params.filter_age)


@dataclass(frozen=True)
class CandidateCounts:
    """How many articles each source proposes per customer, and how many weeks back the customer's own
    articles count (repurchase, other colours, bought together)."""

    two_tower: int
    repurchase: int
    same_product: int
    trending: int
    age_band: int
    visual: int
    popular: int
    bought_together: int
    favourite_type: int
    repurchase_weeks: int

    @classmethod
    def of(cls, params: RankingParams) -> CandidateCounts:
        return cls(
            two_tower=params.two_tower_candidates,
            repurchase=params.repurchase_candidates,
            same_product=params.same_product_candidates,
            trending=params.trending_candidates,
            age_band=params.age_band_candidates,
            visual=params.visual_candidates,
            popular=params.popular_candidates,
            bought_together=params.bought_together_candidates,
            favourite_type=params.favourite_type_candidates,
            repurchase_weeks=params.repurchase_weeks,
        )


@dataclass(frozen=True)
class PipelineConfig:
    rules: FilterRules
    candidates: CandidateCounts
    k: int
    max_per_type: int
    # Chosen by train_ranker (`recommender.live`); the ranker's training rows are computed before it is.
    live: LiveChoice = field(default_factory=LiveChoice)
    objective: str = ""  # the ranker's, for the record

    @classmethod
    def of(cls, params: RankingParams, already_bought_weeks: int) -> PipelineConfig:
        return cls(
            FilterRules.of(params, already_bought_weeks),
            CandidateCounts.of(params),
            params.k,
            params.max_per_type,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> PipelineConfig:
        """Parse pipeline.json; a missing or unknown field is an error naming it."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - names)
        if unknown:
            raise ValueError(f"pipeline config: unknown field(s) {', '.join(unknown)}")
        try:
            return cls(
                rules=FilterRules(**config["rules"]),
                candidates=CandidateCounts(**config["candidates"]),
                k=int(config["k"]),
                max_per_type=int(config["max_per_type"]),
                live=LiveChoice(**config["live"]) if "live" in config else LiveChoice(),
                objective=str(config.get("objective", "")),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"pipeline config is incomplete or malformed: {error}") from error
