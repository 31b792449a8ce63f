"""Batch scoring benchmark: customers scored per second, and the time for H&M's 1.37M customers.

`--scale full` runs the real `batch_score` task (a full run) on the full-scale lakehouse (generated and
ingested once, kept in data/full_lakehouse, shared with the features benchmark), with the towers and
ranker trained on `small` and an IVF index over the 105,542 full-scale article ids built from clustered
random vectors: the lists mean nothing, but the work is a full-scale run's (IVF search, 31.8M
transactions, 105k-article lookups, the Delta write of 1.37M rows).

`--scale small` runs the job graph on the `small` data set once (kept in data/small_lakehouse, artifacts in
data/small_artifacts), writes the global half of the scoring snapshot once (timed), then times the
scoring path (customer features and histories in Spark, then in `mapInPandas` tasks the online
recommender: candidates → filters → features → XGBoost → diversity) for growing customer samples. A
line t = fixed + per_customer * n through the timings gives the projection; the fixed part (TensorFlow
and index start-up per worker) does not grow with customers.
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
from fashionrec.snapshot.build import build_snapshot, customer_rows, purchase_rows

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


def _full_scale_artifacts(small_artifacts: Path, articles_csv: Path) -> Path:
    """A copy of the `small` artifacts whose index holds every full-scale article id (IVF, as `auto`
    picks above 50k articles), on clustered random unit vectors of the query tower's dimension."""
    import pandas as pd

    from fashionrec.retrieval.index import ArticleIndex
    from fashionrec.retrieval.towers import INDEX_FILE

    out = Path("data") / "full_bench_artifacts"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(small_artifacts, out)
    dim = ArticleIndex.load(small_artifacts / INDEX_FILE).index.d
    ids = pd.read_csv(articles_csv, usecols=["article_id"], dtype=str)["article_id"].tolist()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, dim))
    vectors = centres[rng.integers(0, len(centres), len(ids))] + 0.3 * rng.normal(size=(len(ids), dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ArticleIndex.build(vectors.astype(np.float32), ids, "auto").save(out / INDEX_FILE)
    return out


def run_full() -> dict[str, Any]:
    from fashionrec.config import IngestParams
    from fashionrec.lake.ingest import run_ingest
    from fashionrec.lake.tables import table_exists
    from fashionrec.ranking.score import run_batch_score

    _, small_artifacts = _ensure_trained("small")
    data, lakehouse = Path("data") / "full", Path("data") / "full_lakehouse"
    generate("full", data)
    spark = get_spark("fashionrec-bench-scoring")
    ingest = IngestParams(lakehouse=str(lakehouse), data_path=str(data))
    if not table_exists(spark, ingest.tables, "transactions"):
        run_ingest(ingest, spark)
    artifacts = _full_scale_artifacts(small_artifacts, data / "articles.csv")
    started = time.perf_counter()
    scored = run_batch_score(
        ScoringParams(lakehouse=str(lakehouse), artifacts_dir=str(artifacts), full=True), spark
    )
    seconds = time.perf_counter() - started
    return {
        "scale": "full",
        "customers_scored": scored["customers_scored"],
        "fallback_rows": scored["fallback_rows"],
        "seconds": round(seconds, 1),
        "customers_per_second": round(scored["customers_scored"] / seconds, 1),
        "minutes": round(seconds / 60, 1),
        "target_min": TARGET_S / 60,
        "meets_target": bool(seconds < TARGET_S),
        "peak_rss_gib": peak_rss_gib(),
    }


def run(scale: str) -> dict[str, Any]:
    if scale == "full":
        return run_full()
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
