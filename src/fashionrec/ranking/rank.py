"""Score candidates with the ranker, apply the diversity pass and cut the top-k: one pandas function
used on the driver (validation, evaluation) and inside Spark tasks (batch scoring), so both agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame

from fashionrec.ranking.model import Ranker

RESULT_SCHEMA = "customer_id string, article_ids array<string>, scores array<double>, sources array<string>"


def rank_frame(frame: pd.DataFrame, ranker: Ranker, k: int, max_per_type: int) -> pd.DataFrame:
    """Top-`k` per customer of `frame` (candidates with the ranker's features, `product_type_no`, `sources`).

    Diversity: an article whose product type already has `max_per_type` better-scored articles in the
    list moves behind every article that does not break the rule (a greedy pass; 0 turns it off).
    """
    if frame.empty:
        return pd.DataFrame(columns=["customer_id", "article_ids", "scores", "sources"])
    scored = frame.assign(score=ranker.score(frame).astype(np.float64))
    scored = scored.sort_values(["customer_id", "score", "article_id"], ascending=[True, False, True])
    if max_per_type > 0:
        type_rank = scored.groupby(["customer_id", "product_type_no"], sort=False).cumcount()
        scored = scored.assign(_over=(type_rank >= max_per_type).to_numpy())
        scored = scored.sort_values(
            ["customer_id", "_over", "score", "article_id"], ascending=[True, True, False, True]
        )
    top = scored.groupby("customer_id", sort=True).head(k)
    top = top.assign(_source=top["sources"].map(lambda s: "+".join(s)))
    grouped = top.groupby("customer_id", sort=True)
    return pd.DataFrame(
        {
            "article_ids": grouped["article_id"].agg(list),
            "scores": grouped["score"].agg(list),
            "sources": grouped["_source"].agg(list),
        }
    ).reset_index()


def rank_in_spark(
    features: DataFrame, ranker_dir: str, k: int, max_per_type: int, partitions: int
) -> DataFrame:
    """`rank_frame` over a Spark DataFrame: rows of one customer meet in one task (hash partitioned and
    sorted); the ranker loads once per task, and a customer split across two Arrow batches is carried over."""
    folder = str(Path(ranker_dir).resolve())

    def rank(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        ranker = Ranker.load(folder)
        carry = None
        for batch in batches:
            if carry is not None:
                batch = pd.concat([carry, batch], ignore_index=True)
            if batch.empty:
                continue
            last = batch["customer_id"].iloc[-1]
            done = batch["customer_id"] != last
            carry = batch[~done]
            if done.any():
                yield rank_frame(batch[done], ranker, k, max_per_type)
        if carry is not None and not carry.empty:
            yield rank_frame(carry, ranker, k, max_per_type)

    ordered = features.repartition(partitions, "customer_id").sortWithinPartitions("customer_id")
    return ordered.mapInPandas(rank, RESULT_SCHEMA)
