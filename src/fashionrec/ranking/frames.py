"""The ranker's rows for one target week, from the recommender core: train_ranker and the backtest call it.

For week W the driver writes a snapshot as of W (`recommender.snapshot.write_global_part`: everything
computed from purchases strictly before W), Spark computes the target customers' rows as of W, and the
core proposes, filters and describes their candidates in `mapInPandas` (`recommender.spark`). Labels are
what each customer bought in W. Batch scoring and serving run the same core on the same kind of snapshot,
so the ranker is asked about exactly the rows it learned from.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config import RankingParams, Tables
from fashionrec.features.weeks import week_col
from fashionrec.ranking.filters import FilterRules
from fashionrec.recommender.layout import ABSENT_RANK, RANDOM_SOURCE, SOURCES, CandidateCounts
from fashionrec.recommender.snapshot import GlobalInputs, customer_rows, purchase_rows, write_global_part
from fashionrec.recommender.spark import candidate_rows

FRAMES_DIR = Path("ranking") / "frames"  # under artifacts_dir: per-week snapshots, removed after use
ROWS_PER_TASK = 5_000  # target customers per Spark task (each task loads the core once)


def candidate_counts(params: RankingParams) -> CandidateCounts:
    return CandidateCounts(
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


def pipeline_config(params: RankingParams, rules: FilterRules) -> dict[str, Any]:
    """The part of pipeline.json the core reads: rules, candidate counts, k and the diversity cap."""
    return {
        "rules": asdict(rules),
        "candidates": asdict(candidate_counts(params)),
        "max_per_type": params.max_per_type,
        "k": params.k,
    }


def week_truth(tx: DataFrame, week: int) -> DataFrame:
    """(customer_id, article_ids) of everyone who bought in `week`."""
    return (
        tx.where(week_col(F.col("t_dat")) == week)
        .groupBy("customer_id")
        .agg(F.array_distinct(F.collect_list("article_id")).alias("article_ids"))
    )


def with_labels(frame: pd.DataFrame, actual: dict[str, list[str]]) -> pd.DataFrame:
    """label 1 for the candidates the customer bought in the target week, else 0."""
    bought = {(c, a) for c, ids in actual.items() for a in ids}
    labels = [int((c, a) in bought) for c, a in zip(frame["customer_id"], frame["article_id"], strict=True)]
    return frame.assign(label=labels)


def sources_where(frame: pd.DataFrame, keep: Callable[[Sequence[str]], bool]) -> np.ndarray:
    """Boolean array over `frame`'s rows: does the row's `sources` list satisfy `keep`? An array, not a
    Series: pandas reads an empty object-dtype Series as a column selection, and an empty frame indexed
    with one loses every column."""
    return np.fromiter((bool(keep(s)) for s in frame["sources"]), dtype=bool, count=len(frame))


def candidate_recall(frame: pd.DataFrame, actual: dict[str, list[str]]) -> dict[str, float]:
    """Share of the target week's purchases (distinct customer × article) each source covers, and the
    union, before the business rules; and the candidates per customer."""
    total = sum(len(set(ids)) for ids in actual.values())
    hits = frame[frame["label"] == 1]
    out = {}
    for source in SOURCES:
        out[source] = round(int((hits[f"rank_{source}"] < ABSENT_RANK).sum()) / max(total, 1), 4)
    proposed = sources_where(hits, lambda s: RANDOM_SOURCE not in s)
    out["union"] = round(int(proposed.sum()) / max(total, 1), 4)
    per_customer = frame.groupby("customer_id").size().mean() if len(frame) else 0.0
    out["candidates_per_customer"] = round(float(per_customer), 1)
    return out


def candidate_hit_rate(frame: pd.DataFrame) -> dict[str, float]:
    """Share of each source's candidates (rows with a `label`) that the customer bought: how much one of
    its articles is worth. Recall says what a source finds; this says what a slot spent on it is worth,
    which is what the ranker weighs (and what differed most between the generated and the real world,
    docs/benchmarks.md). Sources without candidates are left out."""
    out = {}
    for source in SOURCES:
        proposed = frame[f"rank_{source}"] < ABSENT_RANK
        if proposed.any():
            out[source] = round(float(frame.loc[proposed, "label"].mean()), 4)
    return out


def cold_start_reach(
    frame: pd.DataFrame,
    actual: dict[str, list[str]],
    sold_before: set[str],
    lists: dict[str, list[str]],
    k: int,
) -> dict[str, float]:
    """Purchases of new articles (never sold before the week): the share that reaches the candidates
    (after the business rules) with every source, without the visual source, and the served top-k.
    New articles have no sales to be retrieved by, so visual neighbours of what a customer bought are
    their way in."""
    wanted = {(c, a) for c, ids in actual.items() for a in set(ids) if a not in sold_before}
    pairs = zip(frame["customer_id"], frame["article_id"], strict=True)
    wanted_rows = np.fromiter(((c, a) in wanted for c, a in pairs), dtype=bool, count=len(frame))
    sourced = sources_where(frame, lambda s: any(x != RANDOM_SOURCE for x in s))
    proposed = frame[wanted_rows & sourced]
    with_visual = set(zip(proposed["customer_id"], proposed["article_id"], strict=True))
    others = proposed[sources_where(proposed, lambda s: any(x not in ("visual", RANDOM_SOURCE) for x in s))]
    without_visual = set(zip(others["customer_id"], others["article_id"], strict=True))
    served = {(c, a) for c, a in wanted if a in lists.get(c, [])[:k]}
    total = max(len(wanted), 1)
    return {
        "new_article_purchases": len(wanted),
        "in_candidates": round(len(with_visual) / total, 4),
        "in_candidates_without_visual": round(len(without_visual) / total, 4),
        f"in_top{k}": round(len(served) / total, 4),
    }


def filter_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Candidate rows removed by each business rule (a row can fail several) and rows kept."""
    reasons = frame["removed_by"].explode().dropna().value_counts()
    kept = int(frame["removed_by"].map(len).eq(0).sum())
    return {"candidates": len(frame), **{r: int(n) for r, n in reasons.items()}, "kept": kept}


def global_inputs(snapshot: dict[str, DataFrame]) -> GlobalInputs:
    """The snapshot's inputs from pinned tables; the article_features table when it is among them."""
    return GlobalInputs(
        snapshot[Tables.TRANSACTIONS],
        snapshot[Tables.CUSTOMERS],
        snapshot[Tables.ARTICLES],
        snapshot.get(Tables.ARTICLE_AVAILABILITY),
        snapshot.get(Tables.SIMILAR_ARTICLES),
        snapshot.get(Tables.ARTICLE_FEATURES),
    )


def _qid(frame: pd.DataFrame, week: int) -> pd.DataFrame:
    frame = frame.sort_values("customer_id", kind="stable").reset_index(drop=True)
    codes, _ = pd.factorize(frame["customer_id"])
    return frame.assign(qid=week * 10_000_000 + codes, week=week)


def week_frame(
    spark: SparkSession,
    snapshot: dict[str, DataFrame],
    week: int,
    truth: DataFrame,
    config: dict[str, Any],
    artifacts_dir: str | Path,
    random_negatives: int = 0,
    seed: int = 0,
    personal_tx: DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, float], dict[str, int]]:
    """Labelled ranker rows for the buyers in `truth` (customer_id, article_ids) as of `week`, for the
    pipeline `config` (`pipeline_config`): the rows its business rules keep, the candidate recall per
    source and the rows each rule removed. The customers' own purchases come from `personal_tx` when
    given (incremental scoring's newer version), else from the snapshot's transactions."""
    inputs = global_inputs(snapshot)
    actual = {r["customer_id"]: list(r["article_ids"]) for r in truth.collect()}
    folder = Path(artifacts_dir) / FRAMES_DIR / f"{week}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        write_global_part(inputs, week, config, folder)
        targets = truth.select("customer_id")
        people = inputs.customers.join(targets, "customer_id", "left_semi")
        own = personal_tx if personal_tx is not None else inputs.global_tx
        tx = own.join(targets, "customer_id", "left_semi")
        tasks = min(spark.sparkContext.defaultParallelism, -(-len(actual) // ROWS_PER_TASK))
        rows = candidate_rows(
            folder,
            artifacts_dir,
            customer_rows(tx, people, inputs.articles, week),
            purchase_rows(tx, week),
            max(tasks, 1),
            random_negatives,
            seed + week,
        )
        frame = with_labels(rows.toArrow().to_pandas(), actual)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    recall = candidate_recall(frame, actual)
    counts = filter_counts(frame)
    kept = frame[frame["removed_by"].map(len) == 0].drop(columns=["removed_by"])
    return _qid(kept.reset_index(drop=True), week), recall, counts
