"""Task `evaluate`: every method's top-k on one split, scored with the same metrics, into MLflow.

Methods here are the baselines and the oracle bound; later stages add their own top-k lists through
`evaluate_methods`, so every model is printed beside the same baselines on the same split.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from fashionrec.config import EvaluateParams, Tables
from fashionrec.data.truth import SyntheticTruth
from fashionrec.evaluation import baselines
from fashionrec.evaluation.metrics import evaluate
from fashionrec.evaluation.report import map_bar_chart, metric_rows
from fashionrec.features.splits import Splits
from fashionrec.features.weeks import first_day, week_col
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, pin_tables, read_table
from fashionrec.training.tracking import metric_name, tracked_run

Predictions = dict[str, list[str]]


def recent_history(
    transactions: DataFrame, customers: DataFrame, week: int, n: int = 12
) -> dict[str, list[str]]:
    """Each customer's last `n` purchases before `week`, oldest first."""
    ordered = Window.partitionBy("customer_id").orderBy(F.desc("t_dat"), F.desc("txn_id"))
    recent = (
        transactions.where(week_col(F.col("t_dat")) < week)
        .join(customers, "customer_id", "left_semi")
        .withColumn("r", F.row_number().over(ordered))
        .where(F.col("r") <= n)
        .groupBy("customer_id")
        .agg(F.sort_array(F.collect_list(F.struct(F.col("r"), F.col("article_id"))), asc=False).alias("h"))
    )
    return {r["customer_id"]: [x["article_id"] for x in r["h"]] for r in recent.collect()}


BASELINES = (
    "popular_last_week",
    "decayed_popularity",
    "repurchase_then_popular",
    "repurchase_all_then_popular",
    "age_band_popular",
)


def baseline_methods(
    transactions: DataFrame, all_customers: DataFrame, targets: DataFrame, week: int, k: int
) -> dict[str, Predictions]:
    """Each baseline's top-`k` list for the target customers (`BASELINES`).

    Two repurchase lists: the customer's articles of the last 12 weeks then decayed popularity, and of
    their whole history then last week's best sellers. On real shoppers neither is the better one
    everywhere, so every lift is also measured against the best baseline of the week."""
    customer_ids = [r["customer_id"] for r in targets.collect()]
    popular = baselines.popular_last_week(transactions, week, k)
    decayed = baselines.decayed_popularity(transactions, week, k)
    return {
        "popular_last_week": dict.fromkeys(customer_ids, popular),
        "decayed_popularity": dict.fromkeys(customer_ids, decayed),
        "repurchase_then_popular": baselines.repurchase(transactions, targets, week, k, fallback=decayed),
        "repurchase_all_then_popular": baselines.repurchase(
            transactions, targets, week, k, fallback=popular, weeks_back=None
        ),
        "age_band_popular": baselines.age_band_popular(
            transactions, targets, all_customers, week, k, fallback=decayed
        ),
    }


def oracle_method(
    data_path: str, transactions: DataFrame, targets: DataFrame, week: int, k: int
) -> Predictions | None:
    """Top-k by the generator's true propensities, or None for data without truth.npz (real data)."""
    path = Path(data_path) / "truth.npz"
    if not path.exists():
        return None
    truth = SyntheticTruth(path)
    customers = [r["customer_id"] for r in targets.collect()]
    if not customers or customers[0] not in truth.customer_pos:
        return None  # the lakehouse holds another data set than data_path
    history = recent_history(transactions, targets, week)
    return truth.top_k(customers, truth.generated_week(first_day(week).isoformat()), history, k)


STORED_METHODS = {"two_tower": Tables.RETRIEVAL_CANDIDATES, "full_pipeline": Tables.RANKED_CANDIDATES}


def stored_methods(spark: SparkSession, params: EvaluateParams, split: str) -> dict[str, Predictions]:
    """Top-k lists that model stages wrote to the lakehouse for this split (absent tables are skipped)."""
    out: dict[str, Predictions] = {}
    for method, table in STORED_METHODS.items():
        if current_version(spark, params.tables, table) is None:
            continue
        rows = read_table(spark, params.tables, table).where(F.col("split") == split).collect()
        if rows:
            out[method] = {r["customer_id"]: list(r["article_ids"]) for r in rows}
    return out


def evaluate_methods(
    actual: Mapping[str, Sequence[str]],
    methods: Mapping[str, Predictions],
    k: int,
    catalog_size: int,
    product_type: Mapping[str, str],
) -> dict[str, dict[str, float]]:
    return {name: evaluate(actual, preds, k, catalog_size, product_type) for name, preds in methods.items()}


def run_evaluate(
    params: EvaluateParams,
    spark: SparkSession | None = None,
    extra_methods: Callable[[SparkSession, Splits, DataFrame], dict[str, Predictions]] | None = None,
) -> dict[str, Any]:
    spark = spark or get_spark("fashionrec-evaluate")
    tables = params.tables
    started = time.perf_counter()
    sources = (Tables.TRANSACTIONS, Tables.CUSTOMERS, Tables.ARTICLES, Tables.SPLITS, Tables.GROUND_TRUTH)
    snap, versions = pin_tables(spark, tables, sources, hint="run ingest and features first")
    splits = Splits.from_frame(snap[Tables.SPLITS])
    week = splits.target_week(params.split)
    truth_rows = snap[Tables.GROUND_TRUTH].where(F.col("split") == params.split)
    actual = {r["customer_id"]: list(r["article_ids"]) for r in truth_rows.collect()}
    targets = truth_rows.select("customer_id").persist()
    tx = snap[Tables.TRANSACTIONS]

    n = max(params.k, params.candidates)
    methods = baseline_methods(tx, snap[Tables.CUSTOMERS], targets, week, n)
    baselines = list(methods)  # the yardstick: stored model outputs and the oracle are compared to it
    methods.update(stored_methods(spark, params, params.split))
    if extra_methods is not None:
        methods.update(extra_methods(spark, splits, targets))
    oracle = oracle_method(params.data_path, tx, targets, week, n)
    if oracle is not None:
        methods["oracle"] = oracle
    articles = snap[Tables.ARTICLES].select("article_id", "product_type_name").collect()
    results = evaluate_methods(
        actual, methods, params.k, len(articles), {r["article_id"]: r["product_type_name"] for r in articles}
    )
    targets.unpersist()
    rows = metric_rows(results)
    week_label = f"{params.split} week {first_day(week)}"
    chart = map_bar_chart(
        rows, Path(params.reports_dir) / f"map_{params.split}.png", f"MAP@{params.k} · {week_label}"
    )
    table_path = Path(params.reports_dir) / f"metrics_{params.split}.json"
    table_path.write_text(json.dumps(rows, indent=2))

    with tracked_run(
        params.mlflow_tracking_uri, params.experiment, f"evaluate-{params.split}", {"task": "evaluate"}
    ) as run:
        mlflow.log_params({"split": params.split, "k": params.k, "target_week": str(first_day(week))})
        mlflow.log_params({f"version.{t}": v for t, v in versions.items()})
        for method, metrics in results.items():
            mlflow.log_metrics({metric_name(method, m): v for m, v in metrics.items()})
        mlflow.log_artifact(str(chart))
        mlflow.log_artifact(str(table_path))
        run_id = run.info.run_id

    best_baseline = max(baselines, key=lambda m: results[m][f"map@{params.k}"])
    return {
        "split": week_label,
        "customers_evaluated": len(actual),
        "metrics": rows,
        "best_baseline": best_baseline,
        f"best_baseline_map@{params.k}": results[best_baseline][f"map@{params.k}"],
        f"oracle_map@{params.k}": results["oracle"][f"map@{params.k}"] if "oracle" in results else None,
        "chart": str(chart),
        "mlflow_run_id": run_id,
        "versions_read": versions,
        "seconds": round(time.perf_counter() - started, 1),
    }
