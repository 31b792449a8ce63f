"""Batch scoring benchmark: customers scored per second, and the projected time for H&M's 1.37M.

Runs the job graph on the `small` data set once (kept in data/small_lakehouse, artifacts in
data/small_artifacts), writes the global half of the scoring snapshot once (timed), then times the
scoring path (customer features and histories in Spark, then in `mapInPandas` tasks the online
recommender: candidates → filters → features → XGBoost → diversity) for growing customer samples. A
line t = fixed + per_customer * n through the timings gives the projection; the fixed part (TensorFlow
and index start-up per worker) does not grow with customers. Catalogue size differs at full scale (105k articles
instead of 5k): the ANN search per customer is measured separately in the retrieval benchmark.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import functions as F

from benchmarks.common import peak_rss_gib
from fashionrec.config import ScoringParams, Tables
from fashionrec.data.synthetic import generate
from fashionrec.features.weeks import week_of
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, read_table
from fashionrec.ranking.score import model_version, score_customers
from fashionrec.runner.local import run_job
from fashionrec.serving.snapshot import build_snapshot, customer_rows, purchase_rows

HM_CUSTOMERS = 1_371_980
TARGET_S = 20 * 60
ROOT = Path(__file__).resolve().parents[1]


def _ensure_trained(scale: str) -> tuple[Path, Path]:
    data, lakehouse, artifacts = (
        Path("data") / scale,
        Path("data") / f"{scale}_lakehouse",
        Path("data") / f"{scale}_artifacts",
    )
    generate(scale, data)
    if not (artifacts / "ranking" / "pipeline.json").exists():
        result = run_job(
            ROOT,
            target="local",
            variables={
                "data_path": str(data),
                "lakehouse_dir": str(lakehouse),
                "artifacts_dir": str(artifacts),
                "mlflow_tracking_uri": "sqlite:///data/bench_mlflow.db",
                "reports_dir": "data/bench_reports",
                "max_evals": "0",
            },
            only=["ingest", "features", "train_retrieval", "build_index", "train_ranker"],
            summary_path=Path("data") / "bench_reports" / "run.json",
            quiet=True,
        )
        if result.failed:
            raise RuntimeError(f"the job graph failed in {result.failed}")
    return lakehouse, artifacts


def run(scale: str) -> dict[str, Any]:
    scale = "small" if scale == "full" else scale  # the models are trained on `small`; see the docstring
    lakehouse, artifacts = _ensure_trained(scale)
    spark = get_spark("fashionrec-bench-scoring")
    tables = ScoringParams(lakehouse=str(lakehouse)).tables
    tx = read_table(spark, tables, Tables.TRANSACTIONS)
    customers = read_table(spark, tables, Tables.CUSTOMERS)
    articles = read_table(spark, tables, Tables.ARTICLES)
    week = week_of(tx.agg(F.max("t_dat")).first()[0]) + 1
    everyone = customers.count()
    figures: dict[str, Any] = {"scale": scale, "customers": everyone}
    version = current_version(spark, tables, Tables.TRANSACTIONS)
    state = {
        "week": week,
        "transactions_version": version,
        "customers_version": current_version(spark, tables, Tables.CUSTOMERS),
        "global_version": version,
        "model_version": model_version(artifacts),
    }
    started = time.perf_counter()
    snapshot = artifacts / "scoring" / "bench-snapshot"
    build_snapshot(spark, tables, artifacts, snapshot, state, customers=False)
    figures["global_snapshot_s"] = round(time.perf_counter() - started, 1)
    sizes = sorted({everyone // 8, everyone // 2, everyone})
    timings = []
    partitions = spark.sparkContext.defaultParallelism
    for n in sizes:
        targets = customers.select("customer_id").orderBy(F.xxhash64("customer_id")).limit(n).persist()
        targets.count()
        started = time.perf_counter()
        personal = tx.join(targets, "customer_id", "left_semi")
        scored = score_customers(
            str(snapshot),
            str(artifacts),
            customer_rows(personal, customers.join(targets, "customer_id", "left_semi"), articles, week),
            purchase_rows(personal, week),
            partitions,
        )
        scored.write.format("noop").mode("overwrite").save()
        seconds = time.perf_counter() - started
        targets.unpersist()
        timings.append(seconds)
        figures[f"{n}_customers_s"] = round(seconds, 1)
    shutil.rmtree(snapshot, ignore_errors=True)
    per_customer, fixed = np.polyfit(np.array(sizes, dtype=float), np.array(timings), 1)
    projected = figures["global_snapshot_s"] + fixed + per_customer * HM_CUSTOMERS
    figures |= {
        "customers_per_second (all)": round(sizes[-1] / timings[-1], 1),
        "marginal_customers_per_second": round(1 / per_customer, 1) if per_customer > 0 else None,
        "fixed_s": round(fixed, 1),
        "projected_1.37M_customers_min": round(projected / 60, 1),
        "target_min": TARGET_S / 60,
        "meets_target": bool(projected < TARGET_S),
        "peak_rss_gib": peak_rss_gib(),
    }
    return figures
