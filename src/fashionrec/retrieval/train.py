"""Train the two-tower model on one worker or as one of several data-parallel workers.

`train_worker` is what each Spark barrier task (or the driver, with one worker) runs: read its shard
of the training snapshot, build the model under `MultiWorkerMirroredStrategy` when there are several
workers, fit, measure recall@k on the validation week against the whole catalogue, and (chief only)
export the towers. Every worker takes the same number of steps (the smallest shard decides), since a
collective all-reduce waits for every worker.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.retrieval.inputs import read_shard, tf_dataset
from fashionrec.retrieval.vocab import Vocabulary
from fashionrec.training.distributed import WorkerContext, mixed_precision_policy, multi_worker_strategy


@dataclass(frozen=True)
class HyperParams:
    embedding_dim: int = 64
    depth: int = 1
    learning_rate: float = 0.005
    batch_size: int = 1024  # per worker: the number of in-batch negatives
    temperature: float = 0.05
    epochs: int = 2
    customer_dropout: float = 0.05
    logq_correction: bool = True
    random_negatives: int = 0  # uniform catalogue negatives added to each batch's in-batch negatives
    memory_dim: int = 256  # product memory (`retrieval.model.TowerConfig`; 0: off)
    sales_bias: bool = True  # recent-sales bias in every score
    jit_compile: bool = False  # XLA-compile the train step
    mixed_precision: bool = False  # float16 compute on GPUs (towers still return float32); off on CPUs

    def with_updates(self, **changes: Any) -> HyperParams:
        return HyperParams(**(asdict(self) | changes))


@dataclass
class ValidationSet:
    """Query-tower inputs of the validation week's buyers and what they bought."""

    queries: dict[str, np.ndarray]
    actual: list[list[str]]

    @property
    def size(self) -> int:
        return len(self.actual)


@dataclass
class TrainingSpec:
    files: list[str]  # Parquet files of the training-set snapshot
    vocab: Vocabulary
    validation: ValidationSet | None = None
    min_week: int | None = None
    output_dir: str | None = None  # the chief exports the towers here
    recall_k: int = 100
    seed: int = 42


@dataclass
class WorkerResult:
    index: int
    examples: int
    row_ranges: list[tuple[int, int]]
    steps_per_epoch: int
    losses: list[float]
    train_seconds: float
    examples_per_second: float
    weights_sha256: str
    weights_sum: float
    metrics: dict[str, float] = field(default_factory=dict)
    exported: dict[str, str] = field(default_factory=dict)
    gpus: tuple[str, ...] = ()  # GPU addresses this worker was given (empty on CPUs)
    precision: str = "float32"  # Keras dtype policy it trained under


def _fingerprint(weights: list[np.ndarray]) -> tuple[str, float]:
    flat = np.concatenate([np.asarray(w, dtype=np.float32).ravel() for w in weights])
    return hashlib.sha256(flat.tobytes()).hexdigest(), float(flat.astype(np.float64).sum())


def recall_against_catalog(
    query_embeddings: np.ndarray,
    catalog_embeddings: np.ndarray,
    articles: list[str],
    actual: list[list[str]],
    ks: tuple[int, ...],
) -> dict[str, float]:
    """Mean recall@k of exact top-k over the whole catalogue (the index is measured separately)."""
    from fashionrec.evaluation.metrics import recall_at_k
    from fashionrec.retrieval.index import exact_search

    _, top = exact_search(catalog_embeddings, query_embeddings, max(ks))
    ids = np.asarray(articles, dtype=object)
    return {
        f"recall@{k}": float(
            np.mean([recall_at_k(a, list(ids[row[:k]]), k) for a, row in zip(actual, top, strict=True)])
        )
        for k in ks
    }


def train_worker(spec: TrainingSpec, hp: HyperParams, worker: WorkerContext) -> WorkerResult:
    from fashionrec.training.progress import EpochLog
    from fashionrec.training.tf_env import import_tensorflow

    tf = import_tensorflow()
    # The strategy must exist before any other TensorFlow op of this process.
    strategy = multi_worker_strategy(worker) or tf.distribute.get_strategy()
    precision = mixed_precision_policy(hp.mixed_precision)
    from fashionrec.retrieval.model import TowerConfig, TwoTower, export_towers
    from fashionrec.training.lazy_adam import LazyAdam

    # Keras' unseeded initialisers draw their seeds from Python's `random`: `tf.random.set_seed` alone
    # left every run's towers (and the demo's MAP@12, 1.59-1.73x) different; this seeds all three.
    tf.keras.utils.set_random_seed(spec.seed)
    shard = read_shard(spec.files, spec.vocab, worker.index, worker.workers, spec.min_week)
    sizes = [int(x) for x in worker.all_gather(str(shard.rows))]
    steps = min(sizes) // hp.batch_size
    if steps < 1:
        raise ValueError(
            f"the smallest of {worker.workers} worker shards has {min(sizes)} training examples, "
            f"fewer than one batch of {hp.batch_size}: lower batch_size or workers"
        )
    arrays = shard.arrays
    arrays["sampling_probability"] = spec.vocab.sampling_probability()[arrays["article_id"]]

    config = TowerConfig(**{f.name: getattr(hp, f.name) for f in fields(TowerConfig)})
    with strategy.scope():
        model = TwoTower(spec.vocab, config)
        model.compile(optimizer=LazyAdam(learning_rate=hp.learning_rate), jit_compile=hp.jit_compile)
    seed = spec.seed + worker.index
    if worker.workers > 1:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = strategy.distribute_datasets_from_function(
            lambda _: tf_dataset(arrays, hp.batch_size, seed, hp.customer_dropout).with_options(options)
        )
    else:
        dataset = tf_dataset(arrays, hp.batch_size, seed, hp.customer_dropout)
    started = time.perf_counter()
    history = model.fit(
        dataset,
        epochs=hp.epochs,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=[EpochLog("two-tower", hp.epochs, enabled=worker.is_chief)],
    )
    seconds = time.perf_counter() - started

    result = WorkerResult(
        index=worker.index,
        examples=shard.rows,
        row_ranges=shard.row_ranges,
        steps_per_epoch=steps,
        losses=[float(x) for x in history.history["loss"]],
        train_seconds=round(seconds, 2),
        examples_per_second=round(steps * hp.batch_size * hp.epochs / seconds, 1),
        weights_sha256="",
        weights_sum=0.0,
        gpus=worker.gpus,
        precision=precision,
    )
    result.weights_sha256, result.weights_sum = _fingerprint(model.get_weights())
    if spec.validation is not None and spec.validation.size:
        catalog = model.candidate_tower(spec.vocab.catalog_arrays()).numpy()
        queries = model.query_tower(spec.validation.queries).numpy()
        result.metrics = recall_against_catalog(
            queries, catalog, spec.vocab.articles, spec.validation.actual, (12, spec.recall_k)
        )
    if spec.output_dir:
        # Every worker saves (saving may run collectives); only the chief's copy is kept.
        target = spec.output_dir if worker.is_chief else tempfile.mkdtemp(prefix=f"worker{worker.index}-")
        result.exported = export_towers(model, spec.vocab, target)
        if worker.is_chief:
            Path(target, "training.json").write_text(
                json.dumps({"hyperparams": asdict(hp), "workers": worker.workers})
            )
    return result
