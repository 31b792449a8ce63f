"""Task `batch_score`: the top-k of every customer into the Delta table `recommendations`.

Two kinds of input feed a customer's list: *personal* (their own purchases, age, region) and *global*
(the models, popularity and trends, article features: a snapshot of the transactions table pinned at a
version). A full run scores everyone against the latest snapshot and records it in `scoring_state`. An
incremental run (the default) keeps that snapshot and week, reads the Change Data Feed of `transactions`
and `customers` since the versions it last saw, re-scores only the customers whose rows changed and
MERGEs them in; so its table equals a full run against the same snapshot, and a run without new data
commits nothing. New models, a new target week or `--full` trigger a full run. Customers' histories run
through the latest landed day, so days of the target week landed after the snapshot (daily files) count
for the customers who bought on them.

Customers without purchases before the week get their age band's best sellers, flagged `fallback`.
Work is spread with `mapInPandas`: the driver writes the global half of a serving snapshot (article
features, popularity lists, visual neighbours: `snapshot.build`), and each Python worker loads it
with the towers, the index and the ranker once, then runs the recommender core on Arrow batches of
customers with their purchases and features (so batch and online answers come from the same code).
"""

from __future__ import annotations

import hashlib
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config import ScoringParams, Tables
from fashionrec.features.weeks import first_day, week_after, week_of
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, delta_table, overwrite_table, read_table
from fashionrec.recommender.layout import CONFIG_FILE, RANKER_DIR
from fashionrec.retrieval.towers import INDEX_FILE, TOWERS
from fashionrec.snapshot.build import build_snapshot, changed_customers, customer_rows, purchase_rows
from fashionrec.snapshot.spark import loaded, use_batch, with_histories

SNAPSHOT_ROOT = Path("scoring")  # under artifacts_dir: the global half of each run's snapshot
STATE_SCHEMA = (
    "transactions_version long, customers_version long, global_version long, week int, "
    "model_version string, generated_at timestamp, history_week int"
)


def model_version(artifacts_dir: str | Path) -> str:
    """A content hash of the ranker, the index and the pipeline config: a new model means a full run."""
    root = Path(artifacts_dir)
    digest = hashlib.sha256()
    for path in (
        root / RANKER_DIR / "model.json",
        root / INDEX_FILE,
        root / CONFIG_FILE,
        root / TOWERS / "vocab.json",
    ):
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: run train_retrieval, build_index and train_ranker first"
            )
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _state(spark: SparkSession, params: ScoringParams) -> dict[str, Any] | None:
    if current_version(spark, params.tables, Tables.SCORING_STATE) is None:
        return None
    row = read_table(spark, params.tables, Tables.SCORING_STATE).first()
    return row.asDict() if row else None


RESULT_SCHEMA = (
    "customer_id string, article_ids array<string>, scores array<double>, sources array<string>, "
    "fallback boolean"
)


def score_customers(
    snapshot_dir: str, artifacts_dir: str, customers: DataFrame, purchases: DataFrame, partitions: int
) -> DataFrame:
    """(customer_id, article_ids, scores, sources, fallback) for each row of `customers` (the snapshot's
    customer rows: `snapshot.build.customer_rows`), from their `purchases` before the week
    (`purchase_rows`) and the snapshot's global half in `snapshot_dir`.

    Each Spark task runs the recommender core (the serving path) on Arrow batches of customers: batched
    query tower, FAISS search and XGBoost, and no shuffle of candidate rows. Customers without purchases
    get the age band's best sellers (fallback).
    """
    snapshot, artifacts = str(Path(snapshot_dir).resolve()), str(Path(artifacts_dir).resolve())

    def recommend(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            if batch.empty:
                continue
            recommender = loaded(snapshot, artifacts)
            answers = recommender.recommend(use_batch(recommender, batch))
            yield pd.DataFrame(
                {
                    "customer_id": [a.customer_id for a in answers],
                    "article_ids": [a.article_ids for a in answers],
                    "scores": [a.scores for a in answers],
                    "sources": [a.sources for a in answers],
                    "fallback": [a.fallback for a in answers],
                }
            )

    return with_histories(customers, purchases, partitions).mapInPandas(recommend, RESULT_SCHEMA)


def sample_recommendations(
    spark: SparkSession, params: ScoringParams, n: int = 3, top: int = 5
) -> list[dict[str, str]]:
    """A few customers' recent purchases beside their top recommendations, by article name (for people)."""
    tables = params.tables
    recs = read_table(spark, tables, Tables.RECOMMENDATIONS).where(~F.col("fallback"))
    picked = recs.orderBy(F.xxhash64("customer_id")).limit(n).collect()
    if not picked:
        return []
    ids = [r["customer_id"] for r in picked]
    recent = (
        read_table(spark, tables, Tables.TRANSACTIONS)
        .where(F.col("customer_id").isin(ids))
        .groupBy("customer_id")
        .agg(F.sort_array(F.collect_list(F.struct("t_dat", "article_id")), asc=False).alias("h"))
        .collect()
    )
    history = {r["customer_id"]: [x["article_id"] for x in r["h"][:3]] for r in recent}
    shown = {a for r in picked for a in r["article_ids"][:top]} | {a for h in history.values() for a in h}
    names = {  # only the articles shown: the whole catalogue is 105k rows at full scale
        r["article_id"]: f"{r['prod_name']} ({r['colour_group_name']})"
        for r in read_table(spark, tables, Tables.ARTICLES)
        .where(F.col("article_id").isin(sorted(shown)))
        .select("article_id", "prod_name", "colour_group_name")
        .collect()
    }
    return [
        {
            "customer": r["customer_id"][:12] + "…",
            "last purchases": "; ".join(names.get(a, a) for a in history.get(r["customer_id"], [])),
            f"recommended (top {top})": "; ".join(names.get(a, a) for a in r["article_ids"][:top]),
        }
        for r in picked
    ]


def run_batch_score(params: ScoringParams, spark: SparkSession | None = None) -> dict[str, Any]:
    spark = spark or get_spark("fashionrec-batch-score")
    started = time.perf_counter()
    phases: dict[str, float] = {}  # seconds per phase: where a daily run's time goes

    def lap(name: str) -> None:
        phases[name] = round(time.perf_counter() - started - sum(phases.values()), 1)

    tables = params.tables
    version = model_version(params.artifacts_dir)
    tx_version = current_version(spark, tables, Tables.TRANSACTIONS)
    customers_version = current_version(spark, tables, Tables.CUSTOMERS)
    if tx_version is None or customers_version is None:
        raise ValueError(f"transactions/customers not found in {tables.describe()}: run ingest first")
    state = _state(spark, params)
    has_table = current_version(spark, tables, Tables.RECOMMENDATIONS) is not None
    requested_week = week_of(date.fromisoformat(params.week_start)) if params.week_start else None
    reason = None
    if params.full:
        reason = "--full"
    elif state is None or not has_table:
        reason = "first run"
    elif state["model_version"] != version:
        reason = "new model"
    elif requested_week is not None and requested_week != state["week"]:
        reason = "new target week"

    tx = read_table(spark, tables, Tables.TRANSACTIONS, version=tx_version)
    customers = read_table(spark, tables, Tables.CUSTOMERS, version=customers_version)
    if reason:
        global_version = tx_version if params.global_version < 0 else params.global_version
        global_tx = read_table(spark, tables, Tables.TRANSACTIONS, version=global_version)
        week = requested_week if requested_week is not None else week_after(global_tx)
        targets = customers.select("customer_id")
    else:
        assert state is not None
        global_version, week = int(state["global_version"]), int(state["week"])
        global_tx = read_table(spark, tables, Tables.TRANSACTIONS, version=global_version)
        since = (int(state["transactions_version"]), int(state["customers_version"]))
        targets = changed_customers(spark, tables, since, (tx_version, customers_version)).join(
            customers.select("customer_id"), "customer_id", "left_semi"
        )
    # Histories run through the latest landed day: days of the target week that arrived after the
    # global snapshot (daily files) count for the customers who bought on them.
    latest = tx.agg(F.max("t_dat")).first()[0]
    history = requested_week if requested_week is not None else max(week, week_of(latest) + 1)
    targets = targets.persist()
    n_targets = targets.count()
    lap("targets")
    figures: dict[str, Any] = {
        "mode": f"full ({reason})" if reason else "incremental",
        "week": str(first_day(week)),
        "model_version": version,
        "transactions_version": tx_version,
        "global_version": global_version,
        "history_through": str(latest),
        "customers_scored": n_targets,
    }
    if n_targets == 0:
        targets.unpersist()
        figures["recommendations_version"] = current_version(spark, tables, Tables.RECOMMENDATIONS)
        figures["committed"] = False
        figures["phase_seconds"] = phases
        figures["seconds"] = round(time.perf_counter() - started, 1)
        return figures

    generated_at = datetime.now(UTC).replace(tzinfo=None)
    snapshot_root = Path(params.artifacts_dir) / SNAPSHOT_ROOT
    snapshot = snapshot_root / f"snapshot-{uuid.uuid4().hex[:12]}"  # new folder: no stale worker cache
    snapshot_state = {
        "week": week,
        "transactions_version": tx_version,
        "customers_version": customers_version,
        "global_version": global_version,
        "model_version": version,
        "history_week": history,
    }
    build_snapshot(spark, tables, params.artifacts_dir, snapshot, snapshot_state, customers=False)
    lap("snapshot")
    articles = read_table(spark, tables, Tables.ARTICLES)
    personal_tx = tx.join(targets, "customer_id", "left_semi")
    if not reason:  # a few customers' rows, read by both the histories and the features: scan once
        personal_tx = personal_tx.persist()
    partitions = params.partitions or spark.sparkContext.defaultParallelism
    scored = score_customers(
        str(snapshot),
        params.artifacts_dir,
        customer_rows(personal_tx, customers.join(targets, "customer_id", "left_semi"), articles, week),
        purchase_rows(personal_tx, history),
        partitions,
    )
    rows = scored.select(
        "customer_id",
        "article_ids",
        "scores",
        "sources",
        "fallback",
        F.lit(first_day(week)).alias("week_start"),
        F.lit(version).alias("model_version"),
        F.lit(generated_at).cast("timestamp").alias("generated_at"),
    )
    try:
        if reason:
            out_version = overwrite_table(rows, tables, Tables.RECOMMENDATIONS, deletion_vectors=True)
            lap("score_and_write")
        else:
            rows = rows.persist()  # MERGE reads its source twice: score each customer once
            rows.count()
            lap("score")
            (
                delta_table(spark, tables, Tables.RECOMMENDATIONS)
                .alias("t")
                .merge(rows.alias("s"), "t.customer_id = s.customer_id")
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
            out_version = current_version(spark, tables, Tables.RECOMMENDATIONS)
            lap("merge")
    finally:
        rows.unpersist()
        personal_tx.unpersist()
        targets.unpersist()
        for old in snapshot_root.glob("snapshot-*"):  # this run's and any a failed run left behind
            shutil.rmtree(old, ignore_errors=True)
    state_row = spark.createDataFrame(
        [(tx_version, customers_version, global_version, week, version, generated_at, history)], STATE_SCHEMA
    )
    overwrite_table(state_row, tables, Tables.SCORING_STATE)
    written = read_table(spark, tables, Tables.RECOMMENDATIONS, version=out_version)
    summary = written.agg(
        F.count("*").alias("n"), F.sum(F.col("fallback").cast("int")).alias("fallback")
    ).first()
    lap("state_and_summary")
    sample = sample_recommendations(spark, params)
    lap("sample")
    seconds = time.perf_counter() - started
    figures |= {
        "recommendations_rows": int(summary["n"]),
        "fallback_rows": int(summary["fallback"] or 0),
        "recommendations_version": out_version,
        "committed": True,
        "customers_per_second": round(n_targets / seconds, 1),
        "phase_seconds": phases,
        "seconds": round(seconds, 1),
        "sample": sample,
    }
    return figures
