"""Task `features`: customer and article features per as-of week, splits, ground truth, training set.

Incremental by default. The versions of the source tables that the last run read are kept in the
`feature_state` table; the next run reads only the change feed since then and recomputes
- every entity for as-of weeks not computed yet (a new week arrived), and
- for weeks already computed, only the customers and articles that the changes touch: a changed or
  late transaction touches its customer and article in every later week; a changed customer record
  touches that customer and the articles they bought (buyer age); a changed article record touches that
  article and its buyers (favourite groups).
Each feature row depends only on its own entity's rows, so this equals a full recompute (tested).
When more than `full_recompute_share` of entities changed, a full recompute is cheaper and is used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config import FeaturesParams, TableLocator, Tables
from fashionrec.features.article import article_features
from fashionrec.features.customer import customer_features
from fashionrec.features.splits import Splits, ground_truth, resolve_splits
from fashionrec.features.training_set import TRAINING_SET_VERSION, retrieval_training_set
from fashionrec.features.weeks import first_day, week_col
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import (
    current_version,
    overwrite_table,
    pin_tables,
    read_changes,
    read_table,
    table_exists,
    upsert,
)

log = logging.getLogger(__name__)

SOURCES = (Tables.TRANSACTIONS, Tables.CUSTOMERS, Tables.ARTICLES)
ROW_HASH = "_row_hash"


@dataclass
class Plan:
    """What this run recomputes."""

    mode: str  # "full" or "incremental"
    weeks: list[int]
    new_weeks: list[int] = field(default_factory=list)
    refresh_weeks: list[int] = field(default_factory=list)
    customers: DataFrame | None = None  # changed customer ids (incremental)
    articles: DataFrame | None = None  # changed article ids (incremental)
    changed_customers: int = 0
    changed_articles: int = 0
    reason: str = ""


def _state(spark: SparkSession, tables: TableLocator) -> dict[str, Any] | None:
    if not table_exists(spark, tables, Tables.FEATURE_STATE):
        return None
    row = read_table(spark, tables, Tables.FEATURE_STATE).first()
    return row.asDict() if row else None


def _write_state(
    spark: SparkSession, tables: TableLocator, versions: dict[str, int], weeks: list[int], derived_from: str
) -> None:
    row = [
        (
            versions[Tables.TRANSACTIONS],
            versions[Tables.CUSTOMERS],
            versions[Tables.ARTICLES],
            sorted(weeks),
            derived_from,
        )
    ]
    schema = (
        "transactions_version long, customers_version long, articles_version long, as_of_weeks array<int>, "
        "derived_from string"
    )
    overwrite_table(spark.createDataFrame(row, schema), tables, Tables.FEATURE_STATE)


def _changed_ids(
    spark: SparkSession, tables: TableLocator, state: dict[str, Any], versions: dict[str, int]
) -> tuple[DataFrame, DataFrame, int | None]:
    """Customer and article ids touched since the state's versions, and the earliest changed week."""
    empty_c = spark.createDataFrame([], "customer_id string")
    empty_a = spark.createDataFrame([], "article_id string")
    customers, articles, min_week = empty_c, empty_a, None
    tx = read_table(spark, tables, Tables.TRANSACTIONS)
    if versions[Tables.TRANSACTIONS] > state["transactions_version"]:
        changes = read_changes(
            spark, tables, Tables.TRANSACTIONS, state["transactions_version"], versions[Tables.TRANSACTIONS]
        )
        changes = changes.where(F.col("_change_type") != "update_preimage").persist()
        min_week = changes.agg(F.min(week_col(F.col("t_dat")))).first()[0]
        customers = customers.unionByName(changes.select("customer_id"))
        articles = articles.unionByName(changes.select("article_id"))
    if versions[Tables.CUSTOMERS] > state["customers_version"]:
        changed = read_changes(
            spark, tables, Tables.CUSTOMERS, state["customers_version"], versions[Tables.CUSTOMERS]
        )
        ids = changed.select("customer_id")
        customers = customers.unionByName(ids)
        articles = articles.unionByName(tx.join(ids, "customer_id", "left_semi").select("article_id"))
    if versions[Tables.ARTICLES] > state["articles_version"]:
        changed = read_changes(
            spark, tables, Tables.ARTICLES, state["articles_version"], versions[Tables.ARTICLES]
        )
        ids = changed.select("article_id")
        articles = articles.unionByName(ids)
        customers = customers.unionByName(tx.join(ids, "article_id", "left_semi").select("customer_id"))
    return customers.distinct(), articles.distinct(), min_week


def plan_run(spark: SparkSession, params: FeaturesParams, weeks: list[int], versions: dict[str, int]) -> Plan:
    tables = params.tables
    state = _state(spark, tables)
    outputs = (Tables.CUSTOMER_FEATURES, Tables.ARTICLE_FEATURES)
    if params.full:
        return Plan("full", weeks, reason="--full")
    if state is None or not all(table_exists(spark, tables, t) for t in outputs):
        return Plan("full", weeks, reason="first run")
    done = set(state["as_of_weeks"])
    new_weeks = [w for w in weeks if w not in done]
    customers, articles, min_week = _changed_ids(spark, tables, state, versions)
    customers, articles = customers.persist(), articles.persist()
    n_c, n_a = customers.count(), articles.count()
    attributes_changed = (
        versions[Tables.CUSTOMERS] > state["customers_version"]
        or versions[Tables.ARTICLES] > state["articles_version"]
    )
    refresh = [
        w
        for w in sorted(done)
        if w not in new_weeks and (attributes_changed or (min_week is not None and w > min_week))
    ]
    share_c = n_c / max(1, read_table(spark, tables, Tables.CUSTOMERS).count())
    share_a = n_a / max(1, read_table(spark, tables, Tables.ARTICLES).count())
    if refresh and max(share_c, share_a) > params.full_recompute_share:
        return Plan("full", weeks, reason=f"{max(share_c, share_a):.0%} of entities changed")
    return Plan("incremental", weeks, new_weeks, refresh, customers, articles, n_c, n_a, reason="change feed")


def _with_hash(df: DataFrame, keys: list[str]) -> DataFrame:
    values = [c for c in df.columns if c not in keys]
    # Hash the typed values directly (casting every value to a string cost seconds per million rows);
    # xxhash64 skips nulls, so the null flags keep (x, null) and (null, x) apart.
    return df.withColumn(
        ROW_HASH, F.xxhash64(*[F.col(c) for c in values], *[F.col(c).isNull() for c in values])
    )


def _features(
    kind: str,
    tx: DataFrame,
    customers: DataFrame,
    articles: DataFrame,
    weeks: list[int],
    ids: DataFrame | None,
) -> DataFrame:
    """Customer or article features for `weeks`, restricted to `ids` when given."""
    if kind == "customer":
        if ids is not None:
            tx, customers = (
                tx.join(ids, "customer_id", "left_semi"),
                customers.join(ids, "customer_id", "left_semi"),
            )
        return customer_features(tx, customers, articles, weeks)
    if ids is not None:
        tx, articles = tx.join(ids, "article_id", "left_semi"), articles.join(ids, "article_id", "left_semi")
    return article_features(tx, customers, articles, weeks)


def _update_features(
    spark: SparkSession, params: FeaturesParams, plan: Plan, snapshot: dict[str, DataFrame]
) -> dict[str, Any]:
    tables = params.tables
    tx, customers, articles = (snapshot[t] for t in SOURCES)
    figures: dict[str, Any] = {}
    for kind, table, key, ids in (
        ("customer", Tables.CUSTOMER_FEATURES, "customer_id", plan.customers),
        ("article", Tables.ARTICLE_FEATURES, "article_id", plan.articles),
    ):
        keys = [key, "as_of_week"]
        if plan.mode == "full":
            rows = _with_hash(_features(kind, tx, customers, articles, plan.weeks, None), keys)
            version = overwrite_table(rows, tables, table)
            figures[table] = {"rows_written": read_table(spark, tables, table).count(), "version": version}
            continue
        parts = []
        if plan.new_weeks:
            parts.append(_features(kind, tx, customers, articles, plan.new_weeks, None))
        if plan.refresh_weeks:
            parts.append(_features(kind, tx, customers, articles, plan.refresh_weeks, ids))
        if not parts:
            figures[table] = {"rows_written": 0, "version": current_version(spark, tables, table)}
            continue
        rows = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
        result = upsert(spark, tables, table, _with_hash(rows, keys), keys=keys, compare_column=ROW_HASH)
        figures[table] = {"rows_written": result.inserted + result.updated, "version": result.version}
    return figures


def run_features(params: FeaturesParams, spark: SparkSession | None = None) -> dict[str, Any]:
    spark = spark or get_spark("fashionrec-features")
    tables = params.tables
    started = time.perf_counter()
    # Read every source at the version recorded in the state, so the run is reproducible.
    snapshot, versions = pin_tables(spark, tables, SOURCES, hint="run the ingest task first")
    splits = resolve_splits(snapshot[Tables.TRANSACTIONS], params.test_week_start)
    weeks = list(range(splits.test_week - params.feature_weeks + 1, splits.test_week + 1))
    plan = plan_run(spark, params, weeks, versions)
    log.info("features plan: %s", plan)
    figures = _update_features(spark, params, plan, snapshot)

    # Splits, ground truth and the training set depend only on the source versions and two parameters,
    # all named in `derived_from`: when it matches the state's, the tables are current and not rewritten.
    state = _state(spark, tables)
    derived_from = (
        f"test_week={splits.test_week};retrieval_weeks={params.retrieval_weeks};"
        f"training_set={TRAINING_SET_VERSION};"
        f"versions={','.join(str(versions[t]) for t in SOURCES)}"
    )
    derived = (Tables.SPLITS, Tables.GROUND_TRUTH, Tables.RETRIEVAL_TRAINING_SET)
    exist = all(table_exists(spark, tables, t) for t in derived)
    current = (
        plan.mode == "incremental"
        and state is not None
        and state.get("derived_from") == derived_from
        and exist
    )
    left_stale = not current and not params.derived_tables
    if current or left_stale:
        truth_version = current_version(spark, tables, Tables.GROUND_TRUTH)
        training_version = current_version(spark, tables, Tables.RETRIEVAL_TRAINING_SET)
        if left_stale:  # the state keeps naming what the tables were derived from: the next run sees it
            derived_from = str((state or {}).get("derived_from") or "")
    else:
        overwrite_table(splits.to_frame(spark), tables, Tables.SPLITS)
        truth_version = overwrite_table(
            ground_truth(snapshot[Tables.TRANSACTIONS], splits), tables, Tables.GROUND_TRUTH
        )
        training = retrieval_training_set(*(snapshot[t] for t in SOURCES), splits, params.retrieval_weeks)
        training_version = overwrite_table(training, tables, Tables.RETRIEVAL_TRAINING_SET)
    done = set(weeks)
    if plan.mode == "incremental" and state:
        done |= set(state["as_of_weeks"])
    _write_state(spark, tables, versions, sorted(done), derived_from)
    spark.catalog.clearCache()  # the weekly aggregates and change sets cached above

    derived_figures: dict[str, Any] = {}
    if exist or not left_stale:
        truth = read_table(spark, tables, Tables.GROUND_TRUTH)
        derived_figures = {
            "ground_truth_customers": {s: truth.where(F.col("split") == s).count() for s in ("val", "test")},
            "retrieval_training_rows": read_table(spark, tables, Tables.RETRIEVAL_TRAINING_SET).count(),
        }
    return {
        "mode": plan.mode,
        "why": plan.reason,
        "as_of_weeks": f"{first_day(weeks[0])} .. {first_day(weeks[-1])} ({len(weeks)} weeks)",
        "new_weeks": len(plan.new_weeks) if plan.mode == "incremental" else len(weeks),
        "refreshed_weeks": len(plan.refresh_weeks),
        "changed_customers": plan.changed_customers,
        "changed_articles": plan.changed_articles,
        "features": figures,
        "splits": {
            name: {"week": week, "first_day": str(start) if start else "", "last_day": str(end)}
            for name, week, start, end in splits.rows()
        },
        **derived_figures,
        "derived_tables": "current, not rewritten"
        if current
        else "stale, left to the training job (derived_tables=false)"
        if left_stale
        else "rewritten",
        "versions_read": versions,
        "versions_written": {
            Tables.GROUND_TRUTH: truth_version,
            Tables.RETRIEVAL_TRAINING_SET: training_version,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def splits_from_lake(spark: SparkSession, tables: TableLocator) -> Splits:
    return Splits.from_frame(read_table(spark, tables, Tables.SPLITS))
