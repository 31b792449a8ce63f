"""The recommender core on Spark: `mapInPandas` over customers, each Python worker loading the core once.

The driver writes a snapshot's global half (`snapshot.build`) to a folder; each task hands the core
Arrow batches of customers with their purchases and features. Batch scoring asks it for top-k lists
(`ranking.score`), training for the ranker's candidate rows (`candidate_rows`): one code path, no
shuffle of candidate rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.recommender.layout import FEATURES
from fashionrec.recommender.pipeline import ALREADY_BOUGHT_CHOICES

HISTORY_COLUMNS = ("history_articles", "history_days")
_LOADED: dict[tuple[Any, ...], Any] = {}  # what the core was loaded from → core, per Python worker


def loaded(
    snapshot_dir: str,
    artifacts_dir: str,
    ranker: bool = True,
    config: dict[str, Any] | None = None,
    ranker_dir: str | None = None,
) -> Any:
    """The core of this snapshot, loaded once per Python worker process: Spark reuses its workers
    across tasks, and each run writes its snapshot to a new folder, so the folder (with the ranker and
    the pipeline config that replace the snapshot's, if any) is the key."""
    from fashionrec.recommender.core import Recommender
    from fashionrec.recommender.pipeline import PipelineConfig

    key = (snapshot_dir, artifacts_dir, ranker, ranker_dir, json.dumps(config, sort_keys=True))
    if key not in _LOADED:
        _LOADED.clear()
        typed = PipelineConfig.from_dict(config) if config is not None else None
        _LOADED[key] = Recommender(
            snapshot_dir, artifacts_dir, customers=False, ranker=ranker, config=typed, ranker_dir=ranker_dir
        )
    return _LOADED[key]


def with_histories(customers: DataFrame, purchases: DataFrame, partitions: int) -> DataFrame:
    """`customers` (`snapshot.customer_rows`) with their purchases before the week (`purchase_rows`)
    as two arrays, spread over `partitions` tasks by customer."""
    histories = purchases.groupBy("customer_id").agg(
        F.collect_list("article_id").alias(HISTORY_COLUMNS[0]),
        F.collect_list("day").alias(HISTORY_COLUMNS[1]),
    )
    return customers.join(histories, "customer_id", "left").repartition(max(partitions, 1), "customer_id")


def use_batch(recommender: Any, batch: pd.DataFrame) -> list[str]:
    """Hand a batch of `with_histories` rows to the core; returns its customer ids in row order."""
    histories = {
        customer: list(zip(articles.tolist(), days.tolist(), strict=True))
        for customer, articles, days in zip(
            batch["customer_id"], batch[HISTORY_COLUMNS[0]], batch[HISTORY_COLUMNS[1]], strict=True
        )
        if articles is not None and len(articles)
    }
    recommender.use_customers(batch.drop(columns=list(HISTORY_COLUMNS)), histories)
    return batch["customer_id"].tolist()


# The already-bought windows train_ranker chooses among (besides 0, off): each candidate row says whether
# the core's rule with that window removes it, so the choice is made by the served rule.
ALREADY_BOUGHT_COLUMNS = {weeks: f"already_bought_{weeks}w" for weeks in ALREADY_BOUGHT_CHOICES if weeks > 0}
CANDIDATE_SCHEMA = ", ".join(
    [
        "customer_id string",
        "article_id string",
        "sources array<string>",
        "removed_by array<string>",
        *[f"{column} boolean" for column in ALREADY_BOUGHT_COLUMNS.values()],
        *[f"{name} double" for name in FEATURES],
    ]
)


def candidate_rows(
    snapshot_dir: str | Path,
    artifacts_dir: str | Path,
    customers: DataFrame,
    purchases: DataFrame,
    partitions: int,
    random_negatives: int = 0,
    seed: int = 0,
) -> DataFrame:
    """Every candidate of each customer with its sources, the business rules that remove it (empty:
    kept) and the ranker's `FEATURES`: the ranker's training and evaluation rows, from the core."""
    snapshot, artifacts = str(Path(snapshot_dir).resolve()), str(Path(artifacts_dir).resolve())

    def rows(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if batch.empty:
                continue
            core = loaded(snapshot, artifacts, ranker=False)
            ids = [c for c in use_batch(core, batch) if core.is_warm(c)]
            if not ids:
                continue
            found = core.candidates(ids, random_negatives, seed)
            removed = core.removals(found.customer_ids, found.article_ids)
            reasons = [[] for _ in found.article_ids]
            for rule, flags in removed.items():
                for i in np.flatnonzero(flags):
                    reasons[i].append(rule)
            matrix = core.features(found, FEATURES).astype(np.float64)
            out = pd.DataFrame(matrix, columns=FEATURES)
            for weeks, column in reversed(ALREADY_BOUGHT_COLUMNS.items()):
                verdict = core.removals(found.customer_ids, found.article_ids, weeks)["already_bought"]
                out.insert(0, column, verdict)
            out.insert(0, "removed_by", reasons)
            out.insert(0, "sources", found.sources)
            out.insert(0, "article_id", found.article_ids)
            out.insert(0, "customer_id", found.customer_ids)
            yield out

    return with_histories(customers, purchases, partitions).mapInPandas(rows, CANDIDATE_SCHEMA)


LIST_SCHEMA = "customer_id string, method string, article_ids array<string>"


def method_lists(
    snapshot_dir: str | Path,
    artifacts_dir: str | Path,
    customers: DataFrame,
    purchases: DataFrame,
    partitions: int,
    lengths: dict[str, int],
    config: dict[str, Any],
    ranker_dir: str | Path | None,
) -> DataFrame:
    """(customer_id, method, article_ids): each customer's list by each live method of `lengths` (method →
    list length), as the served model answers it for the pipeline `config` and the ranker in
    `ranker_dir` (None: no ranker, for the baseline's list alone). The backtest's and train_ranker's
    lists of the servable methods come from here, so each equals the served answer."""
    snapshot, artifacts = str(Path(snapshot_dir).resolve()), str(Path(artifacts_dir).resolve())
    ranker = str(Path(ranker_dir).resolve()) if ranker_dir is not None else None

    def lists(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if batch.empty:
                continue
            core = loaded(snapshot, artifacts, ranker is not None, config, ranker)
            ids = use_batch(core, batch)
            rows = [
                (answer.customer_id, method, answer.article_ids)
                for method, k in lengths.items()
                for answer in core.recommend(ids, k, method=method)
            ]
            yield pd.DataFrame(rows, columns=["customer_id", "method", "article_ids"])

    return with_histories(customers, purchases, partitions).mapInPandas(lists, LIST_SCHEMA)
