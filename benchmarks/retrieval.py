"""Retrieval benchmark: two-tower training throughput against the seed tutorial's model, and the index.

Throughput: examples per second of training on this machine, ours (integer inputs prepared once,
log-Q in-batch softmax, no top-k metrics during training) beside the tutorial model (string lookups in
the model, FactorizedTopK on every batch, batch 2048, Adam), on the same rows; recall@100 of both on
the validation week after the same number of epochs (small scale). `--scale full` adds the full-scale
vocabularies (1.37M customers, 105k articles) trained on the last two weeks before validation.

Index: FAISS exact inner product vs IVF-Flat (both sizes) and HNSW (105k only: its build takes minutes
at 1M on two cores and its recall at 1M stayed under 0.95, see docs/journal.md) at 105k and 1M articles. The catalogue vectors are a mixture
of 1,000 Gaussian clusters on the unit sphere in 64 dimensions (trained embeddings are clustered by
product type and colour; uniform random vectors would be the worst case and not representative).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import peak_rss_gib
from fashionrec.config import FeaturesParams, IngestParams, RetrievalParams, Tables
from fashionrec.data.synthetic import generate
from fashionrec.features.pipeline import run_features
from fashionrec.lake.ingest import run_ingest
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import read_table, table_exists

EPOCHS = 2


def _lake(spark: Any, scale: str) -> RetrievalParams:
    data = Path("data") / scale
    generate(scale, data)
    lakehouse = Path("data") / f"{scale}_lakehouse"
    params = RetrievalParams(lakehouse=str(lakehouse))
    if not table_exists(spark, params.tables, Tables.TRANSACTIONS):
        run_ingest(IngestParams(lakehouse=str(lakehouse), data_path=str(data)), spark)
    if not table_exists(spark, params.tables, Tables.RETRIEVAL_TRAINING_SET):
        run_features(FeaturesParams(lakehouse=str(lakehouse)), spark)
    return params


def _throughput(spark: Any, scale: str, weeks: int | None) -> dict[str, Any]:
    from benchmarks.tutorial_model import TutorialModel, tf, to_dataset
    from fashionrec.features.splits import Splits
    from fashionrec.retrieval.task import validation_set
    from fashionrec.retrieval.train import HyperParams, TrainingSpec, recall_against_catalog, train_worker
    from fashionrec.retrieval.vocab_lake import vocabulary_from_lake
    from fashionrec.training.distributed import SINGLE

    params = _lake(spark, scale)
    tables = params.tables
    splits = Splits.from_frame(read_table(spark, tables, Tables.SPLITS))
    vocab = vocabulary_from_lake(spark, tables, splits.val_week)
    training = read_table(spark, tables, Tables.RETRIEVAL_TRAINING_SET)
    min_week = splits.val_week - weeks if weeks else None
    queries, validation = validation_set(spark, params, splits, vocab, "val")
    spec = TrainingSpec(list(training.inputFiles()), vocab, validation, min_week=min_week)
    ours = train_worker(spec, HyperParams(epochs=EPOCHS), SINGLE)
    out: dict[str, Any] = {
        f"{scale}.examples": ours.examples,
        f"{scale}.ours_examples_per_s": ours.examples_per_second,
        f"{scale}.ours_val_recall@100": round(ours.metrics["recall@100"], 4),
    }

    frame = (training.where(training.week >= min_week) if min_week else training).toPandas()
    catalog = tf.data.Dataset.from_tensor_slices(
        {"article_id": np.asarray(vocab.articles)}
        | {c: np.asarray(vocab.article_categories[c]) for c in ("garment_group_name", "index_group_name")}
    )
    steps = len(frame) // 2048
    for metrics in (True, False):
        model = TutorialModel(
            vocab.customers,
            vocab.articles,
            vocab.categories["garment_group_name"],
            vocab.categories["index_group_name"],
            catalog,
            metrics,
        )
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=0.005))
        dataset = to_dataset(frame)
        # With top-k metrics on every batch a full epoch takes too long at full scale: time 40 steps.
        epochs, take = (EPOCHS, steps) if not metrics or scale != "full" else (1, min(steps, 40))
        started = time.perf_counter()
        model.fit(
            dataset.take(take).repeat(epochs) if take < steps else dataset.repeat(epochs), epochs=1, verbose=0
        )
        rate = take * 2048 * epochs / (time.perf_counter() - started)
        label = "with_topk_metrics" if metrics else "without_metrics"
        out[f"{scale}.tutorial_{label}_examples_per_s"] = round(rate, 1)
        if epochs == EPOCHS:
            emb = model.candidate_embedding(
                {
                    k: tf.constant(v)
                    for k, v in {
                        "article_id": np.asarray(vocab.articles),
                        "garment_group_name": np.asarray(vocab.article_categories["garment_group_name"]),
                        "index_group_name": np.asarray(vocab.article_categories["index_group_name"]),
                    }.items()
                }
            ).numpy()
            age = queries.column("age").to_numpy(zero_copy_only=False).astype(np.float32)
            q = model.query_embedding(
                {
                    "customer_id": tf.constant(np.asarray(queries.column("customer_id").to_pylist())),
                    "age": tf.constant(np.where(np.isnan(age), 0.0, (age - 36.0) / 14.0).astype(np.float32)),
                    "month_sin": tf.constant(queries.column("month_sin").to_numpy().astype(np.float32)),
                    "month_cos": tf.constant(queries.column("month_cos").to_numpy().astype(np.float32)),
                }
            ).numpy()
            recall = recall_against_catalog(q, emb, vocab.articles, validation.actual, (100,))["recall@100"]
            out[f"{scale}.tutorial_{label}_val_recall@100"] = round(recall, 4)
    base = out[f"{scale}.tutorial_with_topk_metrics_examples_per_s"]
    out[f"{scale}.speedup_vs_tutorial"] = round(ours.examples_per_second / base, 1)
    out[f"{scale}.speedup_vs_tutorial_without_metrics"] = round(
        ours.examples_per_second / out[f"{scale}.tutorial_without_metrics_examples_per_s"], 2
    )
    return out


def clustered_vectors(n: int, dim: int = 64, clusters: int = 1000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _index(n: int, kinds: tuple[str, ...]) -> dict[str, Any]:
    from fashionrec.retrieval.index import ArticleIndex, measure, recall_vs_exact

    catalog = clustered_vectors(n, seed=1)
    queries = clustered_vectors(1000, seed=2)
    ids = [str(i) for i in range(n)]
    out: dict[str, Any] = {}
    results = {}
    for kind in ("exact", *kinds):
        started = time.perf_counter()
        index = ArticleIndex.build(catalog, ids, kind)
        out[f"{n}.{kind}_build_s"] = round(time.perf_counter() - started, 2)
        out |= {f"{n}.{kind}_{k}": v for k, v in measure(index, queries, 100).items()}
        results[kind] = index.search(queries, 100)[1]
    for kind in kinds:
        out[f"{n}.{kind}_recall@100_vs_exact"] = round(recall_vs_exact(results[kind], results["exact"]), 4)
        out[f"{n}.{kind}_speedup_single_query"] = round(
            out[f"{n}.exact_single_query_ms_median"] / out[f"{n}.{kind}_single_query_ms_median"], 1
        )
    return out


def run(scale: str) -> dict[str, Any]:
    figures: dict[str, Any] = {"index_vectors": "1,000-cluster Gaussian mixture on the unit sphere, 64 dims"}
    figures |= _index(105_542, ("ivf", "hnsw"))
    figures |= _index(1_000_000, ("ivf",))
    spark = get_spark("fashionrec-bench-retrieval")
    figures |= _throughput(spark, "small", None)
    if scale == "full":
        figures |= _throughput(spark, "full", 2)
    figures["peak_rss_gib"] = peak_rss_gib()
    return figures
