"""Towers trained as of a week from a snapshot's tables, for the backtest's folds: each fold serves the
two-tower source from towers that saw only purchases before its week, retrained every few weeks, as a
weekly job would (`train_retrieval` and `build_index` do the same from the feature tables)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame

from fashionrec.features.splits import Splits
from fashionrec.features.training_set import retrieval_training_set
from fashionrec.retrieval.task import write_index
from fashionrec.retrieval.towers import TOWERS, load_encoder
from fashionrec.retrieval.train import HyperParams, TrainingSpec, train_worker
from fashionrec.retrieval.vocab_lake import vocabulary_from_transactions
from fashionrec.training.distributed import SINGLE

MIN_BATCH = 64
BATCHES_PER_EPOCH = 8  # a short training set still takes this many steps an epoch


def fold_batch_size(rows: int, wanted: int) -> int:
    """`wanted`, or the largest power of two (at least MIN_BATCH) giving BATCHES_PER_EPOCH batches when the
    training set is short (a fold near the start of the data)."""
    size = wanted
    while size > MIN_BATCH and rows < size * BATCHES_PER_EPOCH:
        size //= 2
    return size


def train_towers_as_of(
    transactions: DataFrame,
    customers: DataFrame,
    articles: DataFrame,
    week: int,
    folder: str | Path,
    hp: HyperParams,
    train_weeks: int,
    seed: int = 42,
) -> dict[str, Any]:
    """Towers trained on the `train_weeks` weeks before `week` and their index of `articles`, written to
    `folder` laid out as an artifacts folder (`retrieval/towers`, `retrieval/index.npz`), replacing what
    was there."""
    started = time.perf_counter()
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    vocab = vocabulary_from_transactions(transactions, customers, articles, week)
    staging = folder / "_training_set"
    training = retrieval_training_set(transactions, customers, articles, Splits(week + 1), train_weeks)
    training.write.mode("overwrite").parquet(str(staging))
    files = sorted(str(p) for p in staging.glob("*.parquet"))
    try:
        rows = transactions.sparkSession.read.parquet(str(staging)).count()
        if rows < MIN_BATCH:
            raise ValueError(
                f"{rows} purchases in the {train_weeks} weeks before week {week}: too few to train the towers"
            )
        tuned = hp.with_updates(batch_size=fold_batch_size(rows, hp.batch_size))
        towers = folder / TOWERS
        spec = TrainingSpec(files=files, vocab=vocab, output_dir=str(towers.resolve()), seed=seed)
        result = train_worker(spec, tuned, SINGLE)
        vocab.save(towers / "vocab.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_index(load_encoder(towers / "candidate_tower"), articles, transactions, week, folder)
    return {
        "week": week,
        "training_examples": rows,
        "batch_size": tuned.batch_size,
        "loss_per_epoch": [round(x, 3) for x in result.losses],
        "seconds": round(time.perf_counter() - started, 1),
    }
