"""Tasks `train_retrieval` and `build_index` of the bundle job.

train_retrieval: vocabularies from the feature tables → (optional) Hyperopt SparkTrials search, each
trial a nested MLflow run scored by validation recall@100 → final training on `workers` Spark barrier
tasks → towers exported as SavedModels to `artifacts_dir/retrieval/towers` and logged to MLflow with
the hyperparameters and the Delta versions they were trained on.

build_index: the candidate tower embeds the whole catalogue → FAISS index (one file) → top-100 for the
test week's buyers, scored beside the popularity candidates and the oracle, and kept in the Delta table
`retrieval_candidates` for the ranking stage and the evaluate task.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config import IndexParams, RetrievalParams, Tables
from fashionrec.features.splits import Splits
from fashionrec.features.weeks import week_after
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import overwrite_table, pin_tables, read_table
from fashionrec.retrieval.inputs import encode_queries
from fashionrec.retrieval.queries import query_table
from fashionrec.retrieval.towers import INDEX_FILE, TOWERS, embed_catalog, embed_queries, load_towers
from fashionrec.retrieval.train import HyperParams, TrainingSpec, ValidationSet, train_worker
from fashionrec.retrieval.vocab import ARTICLE_CATEGORIES, PRODUCT, Vocabulary
from fashionrec.retrieval.vocab_lake import vocabulary_from_lake
from fashionrec.training.distributed import SINGLE, run_on_barrier
from fashionrec.training.tracking import metric_name, tracked_run
from fashionrec.training.tuning import TrialTracking, absolute_tracking_uri, search, start_trial_run

TRAINING_SOURCES = (
    Tables.RETRIEVAL_TRAINING_SET,
    Tables.CUSTOMER_FEATURES,
    Tables.ARTICLE_FEATURES,
    Tables.SPLITS,
)


def validation_set(
    spark: SparkSession, params: Any, splits: Splits, vocab: Vocabulary, split: str = "val"
) -> tuple[pa.Table, ValidationSet]:
    tables = params.tables
    truth = read_table(spark, tables, Tables.GROUND_TRUTH).where(F.col("split") == split)
    actual = {r["customer_id"]: list(r["article_ids"]) for r in truth.collect()}
    queries = query_table(
        read_table(spark, tables, Tables.TRANSACTIONS),
        read_table(spark, tables, Tables.CUSTOMERS),
        truth.select("customer_id"),
        splits.target_week(split),
    )
    ids = queries.column("customer_id").to_pylist()
    return queries, ValidationSet(encode_queries(queries, vocab), [actual[c] for c in ids])


SEARCH_SPACE_BOUNDS = {
    "embedding_dim": [32, 64, 128],
    "memory_dim": [128, 256],
    "depth": [0, 1, 2],
    "batch_size": [512, 1024, 2048],
    "learning_rate": (1e-3, 3e-2),
    "temperature": (0.02, 0.3),
}


def search_space() -> dict[str, Any]:
    from hyperopt import hp

    b = SEARCH_SPACE_BOUNDS
    return {
        "embedding_dim": hp.choice("embedding_dim", b["embedding_dim"]),
        "memory_dim": hp.choice("memory_dim", b["memory_dim"]),
        "depth": hp.choice("depth", b["depth"]),
        "batch_size": hp.choice("batch_size", b["batch_size"]),
        "learning_rate": hp.loguniform("learning_rate", *map(math.log, b["learning_rate"])),
        "temperature": hp.loguniform("temperature", *map(math.log, b["temperature"])),
    }


def _tune(
    spark: SparkSession,
    params: RetrievalParams,
    spec: TrainingSpec,
    base: HyperParams,
    tracking: TrialTracking,
) -> tuple[HyperParams, list[dict[str, Any]]]:
    def objective(values: dict[str, Any]) -> dict[str, Any]:
        from hyperopt import STATUS_OK

        hp = base.with_updates(**{k: (int(v) if isinstance(v, np.integer) else v) for k, v in values.items()})
        with start_trial_run(tracking, "trial"):
            mlflow.log_params(asdict(hp))
            result = train_worker(spec, hp, SINGLE)
            mlflow.log_metrics({metric_name("val", k): v for k, v in result.metrics.items()})
            mlflow.log_metric("examples_per_second", result.examples_per_second)
        recall = result.metrics[f"recall@{spec.recall_k}"]
        return {"loss": -recall, "status": STATUS_OK, "params": asdict(hp), "metrics": result.metrics}

    found = search(spark, objective, search_space(), params.max_evals, params.parallelism, params.seed)
    return base.with_updates(**found.best), found.trials


def training_spec(
    spark: SparkSession, params: RetrievalParams, version: int | None = None
) -> tuple[TrainingSpec, pa.Table]:
    """What every worker needs (the training snapshot's files, vocabulary, validation set) and the
    validation queries; `version` pins the training set's Delta version (None: the current one)."""
    tables = params.tables
    splits = Splits.from_frame(read_table(spark, tables, Tables.SPLITS))
    vocab = vocabulary_from_lake(spark, tables, splits.val_week, params.min_customer_purchases)
    files = read_table(spark, tables, Tables.RETRIEVAL_TRAINING_SET, version=version).inputFiles()
    queries, validation = validation_set(spark, params, splits, vocab, "val")
    return TrainingSpec(files=list(files), vocab=vocab, validation=validation, seed=params.seed), queries


def run_train_retrieval(params: RetrievalParams, spark: SparkSession | None = None) -> dict[str, Any]:
    spark = spark or get_spark("fashionrec-train-retrieval")
    started = time.perf_counter()
    _, versions = pin_tables(spark, params.tables, TRAINING_SOURCES)
    spec, _ = training_spec(spark, params, versions[Tables.RETRIEVAL_TRAINING_SET])
    vocab, validation = spec.vocab, spec.validation
    assert validation is not None
    base = HyperParams(
        embedding_dim=params.embedding_dim,
        depth=params.depth,
        learning_rate=params.learning_rate,
        batch_size=params.batch_size,
        temperature=params.temperature,
        epochs=params.epochs,
        customer_dropout=params.customer_dropout,
        logq_correction=params.logq_correction,
        random_negatives=params.random_negatives,
        memory_dim=params.memory_dim,
        sales_bias=params.sales_bias,
        mixed_precision=params.mixed_precision,
    )
    final_dir = Path(params.artifacts_dir) / TOWERS
    staging = final_dir.with_name(f"towers.tmp-{uuid.uuid4().hex[:8]}")

    tracking_uri = absolute_tracking_uri(params.mlflow_tracking_uri)
    with tracked_run(tracking_uri, params.experiment, "train_retrieval", {"task": "train_retrieval"}) as run:
        mlflow.log_params({f"version.{t}": v for t, v in versions.items()})
        mlflow.log_params(
            {
                "workers": params.workers,
                "max_evals": params.max_evals,
                "customers_in_vocab": len(vocab.customers),
                "articles": len(vocab.articles),
            }
        )
        trials: list[dict[str, Any]] = []
        hp = base
        if params.max_evals > 0:
            tracking = TrialTracking(tracking_uri, run.info.experiment_id, run.info.run_id)
            hp, trials = _tune(spark, params, spec, base, tracking)
        mlflow.log_params({f"hp.{k}": v for k, v in asdict(hp).items()})
        spec.output_dir = str(staging.resolve())
        results = run_on_barrier(spark, lambda worker: train_worker(spec, hp, worker), params.workers)
        chief = results[0]
        vocab.save(staging / "vocab.json")
        if final_dir.exists():
            shutil.rmtree(final_dir)
        staging.rename(final_dir)  # readers see the old towers or the new ones, never half
        mlflow.log_metrics({metric_name("val", k): v for k, v in chief.metrics.items()})
        mlflow.log_metric("examples_per_second", sum(r.examples_per_second for r in results))
        for epoch, loss in enumerate(chief.losses):
            mlflow.log_metric("loss", loss, step=epoch)
        mlflow.log_artifacts(str(final_dir), artifact_path="towers")
        run_id = run.info.run_id

    return {
        "hyperparams": asdict(hp),
        "tuning_trials": [
            {"val_recall@100": -t.get("loss", float("nan")), **t.get("params", {})} for t in trials
        ],
        "workers": params.workers,
        "training_examples": sum(r.examples for r in results),
        "examples_per_second": round(sum(r.examples_per_second for r in results), 1),
        "loss_per_epoch": [round(x, 3) for x in chief.losses],
        "val_customers": validation.size,
        **{f"val_{k}": round(v, 4) for k, v in chief.metrics.items()},
        "towers": str(final_dir),
        "mlflow_run_id": run_id,
        "versions_read": versions,
        "seconds": round(time.perf_counter() - started, 1),
    }


def catalog_index(
    candidate_encoder: Any, articles: DataFrame, transactions: DataFrame, week: int, kind: str = "auto"
) -> tuple[Any, np.ndarray, float, float]:
    """The candidate tower's embedding of every article, with its recent sales as of `week`, in a FAISS
    index; returns (index, embeddings, embed seconds, build seconds)."""
    from fashionrec.features.recent_sales import with_recent_sales_as_of
    from fashionrec.retrieval.index import ArticleIndex

    catalogue = articles.select(
        "article_id", F.col(PRODUCT).cast("string").alias(PRODUCT), *ARTICLE_CATEGORIES
    )
    table = with_recent_sales_as_of(catalogue, transactions, week).orderBy("article_id").toArrow()
    t0 = time.perf_counter()
    embeddings = embed_catalog(candidate_encoder, table)
    embed_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = ArticleIndex.build(embeddings, table.column("article_id").to_pylist(), kind)
    return index, embeddings, embed_seconds, time.perf_counter() - t0


def write_index(
    candidate_encoder: Any,
    articles: DataFrame,
    transactions: DataFrame,
    week: int,
    artifacts_dir: str | Path,
    kind: str = "auto",
) -> Path:
    """`catalog_index` as of `week`, saved where the recommender core reads it (`INDEX_FILE`)."""
    index, *_ = catalog_index(candidate_encoder, articles, transactions, week, kind)
    return index.save(Path(artifacts_dir) / INDEX_FILE)


def run_build_index(params: IndexParams, spark: SparkSession | None = None) -> dict[str, Any]:
    from fashionrec.evaluation.report import metric_rows
    from fashionrec.evaluation.task import baseline_methods, evaluate_methods, oracle_method
    from fashionrec.retrieval.index import measure

    spark = spark or get_spark("fashionrec-build-index")
    started = time.perf_counter()
    tables = params.tables
    _, versions = pin_tables(
        spark,
        tables,
        (Tables.ARTICLES, Tables.TRANSACTIONS, Tables.CUSTOMERS, Tables.SPLITS, Tables.GROUND_TRUTH),
    )
    query_encoder, candidate_encoder, vocab = load_towers(params.artifacts_dir)
    splits = Splits.from_frame(read_table(spark, tables, Tables.SPLITS))
    week = splits.target_week(params.split)
    all_articles, all_tx = (
        read_table(spark, tables, Tables.ARTICLES),
        read_table(spark, tables, Tables.TRANSACTIONS),
    )
    # Measured with the articles' sales as of the split's week; served with them as of the week batch
    # scoring targets (the recent-sales bias must not be a week stale there).
    index, embeddings, embed_seconds, build_seconds = catalog_index(
        candidate_encoder, all_articles, all_tx, week, params.index_kind
    )
    index_path = write_index(
        candidate_encoder, all_articles, all_tx, week_after(all_tx), params.artifacts_dir, params.index_kind
    )
    queries, validation = validation_set(spark, params, splits, vocab, params.split)
    query_embeddings = embed_queries(query_encoder, queries)
    latency = measure(index, query_embeddings, params.candidates)
    scores, top = index.search(query_embeddings, params.candidates)
    customer_ids = queries.column("customer_id").to_pylist()
    two_tower = dict(zip(customer_ids, top, strict=True))

    candidates = spark.createDataFrame(
        [
            (params.split, c, ids, [float(s) for s in row[: len(ids)]])
            for c, ids, row in zip(customer_ids, top, scores, strict=True)
        ],
        "split string, customer_id string, article_ids array<string>, scores array<float>",
    )
    candidates_version = overwrite_table(candidates, tables, Tables.RETRIEVAL_CANDIDATES)

    tx, customers = (
        read_table(spark, tables, Tables.TRANSACTIONS),
        read_table(spark, tables, Tables.CUSTOMERS),
    )
    targets = spark.createDataFrame([(c,) for c in customer_ids], "customer_id string")
    baselines = baseline_methods(tx, customers, targets, week, params.candidates)
    methods = {
        "two_tower": two_tower,
        "decayed_popularity": baselines["decayed_popularity"],
        "age_band_popular": baselines["age_band_popular"],
    }
    oracle = oracle_method(params.data_path, tx, targets, week, params.candidates)
    if oracle is not None:
        methods["oracle"] = oracle
    actual = dict(zip(customer_ids, validation.actual, strict=True))
    product_type = {
        r["article_id"]: r["product_type_name"]
        for r in read_table(spark, tables, Tables.ARTICLES)
        .select("article_id", "product_type_name")
        .collect()
    }
    results = evaluate_methods(actual, methods, 12, index.index.ntotal, product_type)
    keep = ("recall@12", f"recall@{params.candidates}", "map@12")
    table = [{k: v for k, v in row.items() if k in ("method", *keep)} for row in metric_rows(results)]
    reports = Path(params.reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / f"retrieval_{params.split}.json").write_text(json.dumps(table, indent=2))

    with tracked_run(
        absolute_tracking_uri(params.mlflow_tracking_uri),
        params.experiment,
        "build_index",
        {"task": "build_index"},
    ) as run:
        mlflow.log_params({"index_kind": index.kind, "articles": index.index.ntotal, "split": params.split})
        mlflow.log_params({f"version.{t}": v for t, v in versions.items()})
        for method, metrics in results.items():
            mlflow.log_metrics({metric_name(method, m): metrics[m] for m in keep if m in metrics})
        mlflow.log_metrics({k: v for k, v in latency.items()})
        mlflow.log_artifact(str(index_path), artifact_path="index")
        mlflow.log_artifact(str(reports / f"retrieval_{params.split}.json"))
        run_id = run.info.run_id

    recall_key = f"recall@{params.candidates}"
    best_pop = max(("decayed_popularity", "age_band_popular"), key=lambda m: results[m][recall_key])
    return {
        "index": {
            "kind": index.kind,
            "articles": index.index.ntotal,
            "dimension": int(embeddings.shape[1]),
            "file": str(index_path),
        },
        "embed_catalog_s": round(embed_seconds, 2),
        "build_index_s": round(build_seconds, 3),
        **latency,
        "split": f"{params.split} week {splits.rows()[2 if params.split == 'test' else 1][2]}",
        "customers_evaluated": len(actual),
        "metrics": table,
        f"two_tower_{recall_key}": round(results["two_tower"][recall_key], 4),
        f"best_popularity_{recall_key}": round(results[best_pop][recall_key], 4),
        f"two_tower_vs_popularity_{recall_key}": f"{results['two_tower'][recall_key] / max(1e-9, results[best_pop][recall_key]):.2f}x",
        "candidates_table_version": candidates_version,
        "mlflow_run_id": run_id,
        "seconds": round(time.perf_counter() - started, 1),
    }
