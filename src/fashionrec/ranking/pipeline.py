"""Candidates → filters → ranker features for one target week: shared by train_ranker and batch_score."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.ranking import candidates as sources
from fashionrec.ranking.candidates import CandidateCounts, union_candidates
from fashionrec.ranking.features import ranking_features
from fashionrec.ranking.filters import FilterRules, apply_filters, filter_counts
from fashionrec.ranking.retrieve import two_tower_candidates
from fashionrec.retrieval.queries import query_frame


@dataclass
class WeekInputs:
    """Everything the pipeline reads for one target week (transactions strictly before it count)."""

    week: int
    personal_tx: DataFrame  # the customers' own purchases (fresh in incremental scoring)
    global_tx: DataFrame  # popularity and trends (a pinned snapshot in incremental scoring)
    customers: DataFrame
    articles: DataFrame
    customer_features: DataFrame  # one row per customer for `week`
    article_features: DataFrame  # one row per article for `week`
    availability: DataFrame | None
    similar: DataFrame | None = None  # similar_articles (visual neighbours), when the image tasks ran


def build_candidates(
    inputs: WeekInputs, targets: DataFrame, counts: CandidateCounts, artifacts_dir: str, partitions: int
) -> DataFrame:
    week, targets = inputs.week, targets.select("customer_id")
    queries = query_frame(inputs.personal_tx, inputs.customers, targets, week)
    per_source = [
        two_tower_candidates(queries, artifacts_dir, counts.two_tower, partitions),
        sources.repurchase(inputs.personal_tx, targets, week, counts.repurchase, counts.repurchase_weeks),
        sources.same_product(
            inputs.personal_tx,
            inputs.global_tx,
            inputs.articles,
            targets,
            week,
            counts.same_product,
            counts.repurchase_weeks,
        ),
        sources.trending(inputs.global_tx, targets, week, counts.trending),
        sources.age_band_popular(inputs.global_tx, inputs.customers, targets, week, counts.age_band),
    ]
    wanted = _counts(counts)
    if inputs.similar is not None and counts.visual > 0:
        per_source.append(
            sources.visual_cold_start(
                inputs.personal_tx,
                inputs.global_tx,
                inputs.similar,
                targets,
                week,
                counts.visual,
                counts.repurchase_weeks,
            )
        )
        wanted.append(counts.visual)
    return union_candidates([s for s, n in zip(per_source, wanted, strict=True) if n > 0])


def _counts(counts: CandidateCounts) -> list[int]:
    return [counts.two_tower, counts.repurchase, counts.same_product, counts.trending, counts.age_band]


def filtered_features(
    inputs: WeekInputs, candidates: DataFrame, rules: FilterRules
) -> tuple[DataFrame, dict[str, int]]:
    """Ranker features of the candidates that pass the rules, and how many rows each rule removed.

    Persist `candidates` first: they are read twice (counts, features) and hold the two-tower search.
    """
    filtered, rule_cols = apply_filters(
        candidates, inputs.personal_tx, inputs.customers, inputs.availability, inputs.week, rules
    )
    counts = filter_counts(filtered, list(rule_cols))
    kept = filtered.where(F.col("keep")).drop("keep", *[f"removed_{r}" for r in rule_cols])
    features = ranking_features(
        kept,
        inputs.customer_features,
        inputs.article_features,
        inputs.personal_tx,
        inputs.articles,
        inputs.week,
        inputs.similar,
    )
    return features, counts
