"""Task `batch_score`: the top-k of every customer into the Delta table `recommendations`.

Two kinds of input feed a customer's list: *personal* (their own purchases, age, region) and *global*
(the models, popularity and trends, article features: a snapshot of the transactions table pinned at a
version). A full run scores everyone against the latest snapshot and records it in `scoring_state`. An
incremental run (the default) keeps that snapshot and week, reads the Change Data Feed of `transactions`
and `customers` since the versions it last saw, re-scores only the customers whose rows changed and
MERGEs them in; so its table equals a full run against the same snapshot, and a run without new data
commits nothing. New models, a new target week or `--full` trigger a full run.

Customers without purchases before the week get their age band's best sellers, flagged `fallback`.
Work is spread with `mapInPandas`: each Spark task loads the towers, the index and the ranker once.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from fashionrec.config import ScoringParams, Tables
from fashionrec.features.article import article_features
from fashionrec.features.customer import customer_features
from fashionrec.features.weeks import first_day, week_col, week_of
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, delta_table, overwrite_table, read_changes, read_table
from fashionrec.ranking import candidates as sources
from fashionrec.ranking.candidates import CandidateCounts
from fashionrec.ranking.filters import FilterRules, apply_filters
from fashionrec.ranking.pipeline import WeekInputs, build_candidates, filtered_features
from fashionrec.ranking.rank import rank_in_spark
from fashionrec.ranking.task import CONFIG_FILE, RANKER_DIR
from fashionrec.retrieval.task import INDEX_FILE, TOWERS

STATE_SCHEMA = (
    "transactions_version long, customers_version long, global_version long, week int, "
    "model_version string, generated_at timestamp"
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


def _changed_customers(
    spark: SparkSession, params: ScoringParams, state: dict[str, Any], tx_version: int, customers_version: int
) -> DataFrame:
    parts = []
    if tx_version > state["transactions_version"]:
        parts.append(
            read_changes(
                spark, params.tables, Tables.TRANSACTIONS, state["transactions_version"], tx_version
            ).select("customer_id")
        )
    if customers_version > state["customers_version"]:
        parts.append(
            read_changes(
                spark, params.tables, Tables.CUSTOMERS, state["customers_version"], customers_version
            )
            .where(F.col("_change_type") != "update_preimage")
            .select("customer_id")
        )
    if not parts:
        return spark.createDataFrame([], "customer_id string")
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out.distinct()


def _fallback_lists(inputs: WeekInputs, targets: DataFrame, rules: FilterRules, k: int) -> DataFrame:
    """Age-band best sellers (after the same filters) for customers without history."""
    rows = sources.age_band_popular(inputs.global_tx, inputs.customers, targets, inputs.week, 4 * k)
    candidates = rows.select("customer_id", "article_id", F.col("source_rank"), F.col("source_score"))
    filtered, _ = apply_filters(
        candidates, inputs.personal_tx, inputs.customers, inputs.availability, inputs.week, rules
    )
    ranked = (
        filtered.where("keep")
        .withColumn("_r", F.row_number().over(Window.partitionBy("customer_id").orderBy("source_rank")))
        .where(F.col("_r") <= k)
    )
    return (
        ranked.groupBy("customer_id")
        .agg(F.sort_array(F.collect_list(F.struct("source_rank", "article_id", "source_score"))).alias("_l"))
        .select(
            "customer_id",
            F.col("_l.article_id").alias("article_ids"),
            F.transform("_l.source_score", lambda s: s.cast("double")).alias("scores"),
            F.transform("_l.article_id", lambda _: F.lit("age_band_fallback")).alias("sources"),
        )
    )


def score_customers(
    spark: SparkSession,
    artifacts_dir: str,
    inputs: WeekInputs,
    targets: DataFrame,
    partitions: int,
) -> tuple[DataFrame, DataFrame]:
    """(customer_id, article_ids, scores, sources, fallback) for `targets` as of `inputs.week`, and the
    persisted candidates behind them (the caller unpersists them once the result is written)."""
    config = json.loads((Path(artifacts_dir) / CONFIG_FILE).read_text())
    rules = FilterRules(**config["rules"])
    counts = CandidateCounts(**config["candidates"])
    k, max_per_type = int(config["k"]), int(config["max_per_type"])
    with_history = (
        inputs.personal_tx.where(week_col(F.col("t_dat")) < inputs.week).select("customer_id").distinct()
    )
    warm = targets.join(with_history, "customer_id", "left_semi")
    cold = targets.join(with_history, "customer_id", "left_anti")
    candidates = build_candidates(inputs, warm, counts, artifacts_dir, partitions).persist()
    features, _ = filtered_features(inputs, candidates, rules)
    ranked = rank_in_spark(features, str(Path(artifacts_dir) / RANKER_DIR), k, max_per_type, partitions)
    out = ranked.withColumn("fallback", F.lit(False)).unionByName(
        _fallback_lists(inputs, cold, rules, k).withColumn("fallback", F.lit(True))
    )
    return out, candidates


def sample_recommendations(
    spark: SparkSession, params: ScoringParams, n: int = 3, top: int = 5
) -> list[dict[str, str]]:
    """A few customers' recent purchases beside their top recommendations, by article name (for people)."""
    tables = params.tables
    recs = read_table(spark, tables, Tables.RECOMMENDATIONS).where(~F.col("fallback"))
    picked = recs.orderBy(F.xxhash64("customer_id")).limit(n).collect()
    if not picked:
        return []
    names = {
        r["article_id"]: f"{r['prod_name']} ({r['colour_group_name']})"
        for r in read_table(spark, tables, Tables.ARTICLES)
        .select("article_id", "prod_name", "colour_group_name")
        .collect()
    }
    ids = [r["customer_id"] for r in picked]
    recent = (
        read_table(spark, tables, Tables.TRANSACTIONS)
        .where(F.col("customer_id").isin(ids))
        .groupBy("customer_id")
        .agg(F.sort_array(F.collect_list(F.struct("t_dat", "article_id")), asc=False).alias("h"))
        .collect()
    )
    history = {r["customer_id"]: [x["article_id"] for x in r["h"][:3]] for r in recent}
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
        week = requested_week
        if week is None:
            week = global_tx.agg(F.max("t_dat")).first()[0]
            week = week_of(week) + 1
        targets = customers.select("customer_id")
    else:
        assert state is not None
        global_version, week = int(state["global_version"]), int(state["week"])
        global_tx = read_table(spark, tables, Tables.TRANSACTIONS, version=global_version)
        targets = _changed_customers(spark, params, state, tx_version, customers_version).join(
            customers.select("customer_id"), "customer_id", "left_semi"
        )
    targets = targets.persist()
    n_targets = targets.count()
    figures: dict[str, Any] = {
        "mode": f"full ({reason})" if reason else "incremental",
        "week": str(first_day(week)),
        "model_version": version,
        "transactions_version": tx_version,
        "global_version": global_version,
        "customers_scored": n_targets,
    }
    if n_targets == 0:
        targets.unpersist()
        figures["recommendations_version"] = current_version(spark, tables, Tables.RECOMMENDATIONS)
        figures["committed"] = False
        figures["seconds"] = round(time.perf_counter() - started, 1)
        return figures

    articles = read_table(spark, tables, Tables.ARTICLES)
    personal_tx = tx.join(targets, "customer_id", "left_semi")
    has_availability = current_version(spark, tables, Tables.ARTICLE_AVAILABILITY) is not None
    has_similar = current_version(spark, tables, Tables.SIMILAR_ARTICLES) is not None
    inputs = WeekInputs(
        week=week,
        personal_tx=personal_tx,
        global_tx=global_tx,
        customers=customers,
        articles=articles,
        customer_features=customer_features(
            personal_tx, customers.join(targets, "customer_id", "left_semi"), articles, [week]
        ),
        article_features=article_features(global_tx, customers, articles, [week]),
        availability=read_table(spark, tables, Tables.ARTICLE_AVAILABILITY) if has_availability else None,
        similar=read_table(spark, tables, Tables.SIMILAR_ARTICLES) if has_similar else None,
    )
    partitions = params.partitions or spark.sparkContext.defaultParallelism
    scored, candidates = score_customers(spark, params.artifacts_dir, inputs, targets, partitions)
    generated_at = datetime.now(UTC).replace(tzinfo=None)
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
            out_version = overwrite_table(rows, tables, Tables.RECOMMENDATIONS)
        else:
            (
                delta_table(spark, tables, Tables.RECOMMENDATIONS)
                .alias("t")
                .merge(rows.alias("s"), "t.customer_id = s.customer_id")
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
            out_version = current_version(spark, tables, Tables.RECOMMENDATIONS)
    finally:
        candidates.unpersist()
        targets.unpersist()
    state_row = spark.createDataFrame(
        [(tx_version, customers_version, global_version, week, version, generated_at)], STATE_SCHEMA
    )
    overwrite_table(state_row, tables, Tables.SCORING_STATE)
    written = read_table(spark, tables, Tables.RECOMMENDATIONS, version=out_version)
    summary = written.agg(
        F.count("*").alias("n"), F.sum(F.col("fallback").cast("int")).alias("fallback")
    ).first()
    seconds = time.perf_counter() - started
    figures |= {
        "recommendations_rows": int(summary["n"]),
        "fallback_rows": int(summary["fallback"] or 0),
        "recommendations_version": out_version,
        "committed": True,
        "customers_per_second": round(n_targets / seconds, 1),
        "seconds": round(seconds, 1),
        "sample": sample_recommendations(spark, params),
    }
    return figures
