"""Training input: a Delta snapshot's Parquet files → pyarrow → integer arrays → `tf.data`.

petastorm does not import with pyarrow >= 16, so the snapshot is read directly: Spark lists the files
of the table version (`DataFrame.inputFiles()`; the training set is written by overwrite, so it has no
deletion vectors), and each training worker streams its shard of record batches with pyarrow. Strings
become vocabulary indices here, once, vectorised, instead of inside the model on every step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from fashionrec.features.history import HISTORY_LENGTH
from fashionrec.retrieval.vocab import ARTICLE_CATEGORIES, ARTICLE_SALES, PRODUCT, Vocabulary

QUERY_INPUTS = ("customer_id", "age", "age_missing", "month_sin", "month_cos", "history")
CANDIDATE_INPUTS = ("article_id", PRODUCT, *ARTICLE_CATEGORIES, *ARTICLE_SALES)
READ_BATCH_ROWS = 65_536


def local_path(uri: str) -> str:
    """A Spark file URI as a path pyarrow can open (file:/ locally, /dbfs or /Volumes on Databricks)."""
    for prefix, replacement in (
        ("file://", ""),
        ("file:", ""),
        ("dbfs:/Volumes/", "/Volumes/"),
        ("dbfs:/", "/dbfs/"),
    ):
        if uri.startswith(prefix):
            return replacement + uri[len(prefix) :]
    return uri


def in_partition_order(files: list[str]) -> list[str]:
    """A snapshot's files in the order of the Spark partitions that wrote them (part-00000 first; the UUID
    in each name breaks ties between writes). `inputFiles()` lists them in another order on every fresh
    lakehouse, and rows in another order train other towers: in this order two lakehouses built from the
    same data give the same model."""

    def key(uri: str) -> tuple[str, str]:
        name = uri.rsplit("/", 1)[-1]
        parts = name.split("-")
        return (parts[1] if len(parts) > 2 and parts[0] == "part" else "", name)

    return sorted(files, key=key)


def encode(values: pa.Array | pa.ChunkedArray, vocabulary: list[str] | pa.Array) -> np.ndarray:
    """Vocabulary index + 1 of each string; 0 for unknown or null (the OOV bucket)."""
    found = pc.index_in(
        values, value_set=pa.array(vocabulary, pa.string()) if isinstance(vocabulary, list) else vocabulary
    )
    return pc.fill_null(pc.add(found, 1), 0).to_numpy(zero_copy_only=False).astype(np.int32)


def encode_history(
    lists: pa.Array | pa.ChunkedArray, articles: pa.Array, length: int = HISTORY_LENGTH
) -> np.ndarray:
    """[rows, length] article indices, right-aligned (latest last), 0-padded on the left."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    n = len(lists)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    ids = encode(pc.list_flatten(lists), articles)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = np.repeat(np.arange(n), lengths)
    position = np.arange(len(ids)) - starts  # position inside the customer's list, oldest first
    column = length - np.repeat(lengths, lengths) + position
    keep = column >= 0  # only the latest `length` items
    out = np.zeros((n, length), dtype=np.int32)
    out[rows[keep], column[keep]] = ids[keep]
    return out


def encode_queries(
    table: pa.Table, vocab: Vocabulary, articles: pa.Array | None = None
) -> dict[str, np.ndarray]:
    """Query-tower inputs from columns customer_id, age, month_sin, month_cos, history."""
    articles = articles if articles is not None else pa.array(vocab.articles, pa.string())
    age = table.column("age").to_numpy(zero_copy_only=False).astype(np.float32)
    missing = np.isnan(age)
    return {
        "customer_id": encode(table.column("customer_id"), pa.array(vocab.customers, pa.string())),
        "age": np.where(missing, 0.0, (age - vocab.age_mean) / vocab.age_std).astype(np.float32),
        "age_missing": missing.astype(np.float32),
        "month_sin": table.column("month_sin").to_numpy(zero_copy_only=False).astype(np.float32),
        "month_cos": table.column("month_cos").to_numpy(zero_copy_only=False).astype(np.float32),
        "history": encode_history(table.column("history"), articles),
    }


def encode_candidates(
    table: pa.Table, vocab: Vocabulary, articles: pa.Array | None = None
) -> dict[str, np.ndarray]:
    articles = articles if articles is not None else pa.array(vocab.articles, pa.string())
    out = {
        "article_id": encode(table.column("article_id"), articles),
        PRODUCT: encode(table.column(PRODUCT), vocab.products),
    }
    for name in ARTICLE_CATEGORIES:
        out[name] = encode(table.column(name), vocab.categories[name])
    for name in ARTICLE_SALES:
        out[name] = pc.fill_null(table.column(name), 0.0).to_numpy(zero_copy_only=False).astype(np.float32)
    return out


@dataclass
class Shard:
    """One worker's training examples as arrays, plus which rows of the snapshot they are."""

    arrays: dict[str, np.ndarray]
    row_ranges: list[tuple[int, int]] = field(default_factory=list)  # [start, stop) among the rows read

    @property
    def rows(self) -> int:
        return len(self.arrays["article_id"]) if self.arrays else 0


def read_shard(
    files: list[str], vocab: Vocabulary, worker: int = 0, workers: int = 1, min_week: int | None = None
) -> Shard:
    """The `worker`-th of `workers` disjoint shards of the snapshot's rows from `min_week` on, encoded;
    together the shards cover every such row (tested)."""
    # In partition order, whatever order the caller listed them in: every worker slices the same rows.
    dataset = ds.dataset([local_path(f) for f in in_partition_order(files)], format="parquet")
    columns = ["customer_id", "age", "month_sin", "month_cos", "history", "week", *CANDIDATE_INPUTS]
    articles = pa.array(vocab.articles, pa.string())
    parts: list[dict[str, np.ndarray]] = []
    ranges: list[tuple[int, int]] = []
    offset = 0
    # The week filter is pushed into the scan: row groups of earlier weeks are skipped, not decoded.
    rows = None if min_week is None else ds.field("week") >= min_week
    for batch in dataset.to_batches(
        columns=columns, filter=rows, batch_size=READ_BATCH_ROWS, use_threads=False
    ):
        # Worker i takes the i-th contiguous slice of every record batch: balanced even when the
        # snapshot is a single batch.
        lo = offset + batch.num_rows * worker // workers
        hi = offset + batch.num_rows * (worker + 1) // workers
        table = pa.Table.from_batches([batch]).slice(lo - offset, hi - lo)
        offset += batch.num_rows
        if hi == lo:
            continue
        ranges.append((lo, hi))
        parts.append(encode_queries(table, vocab, articles) | encode_candidates(table, vocab, articles))
    if not parts:
        return Shard({}, ranges)
    return Shard({k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, ranges)


def batches(
    arrays: dict[str, np.ndarray], batch_size: int, seed: int, customer_dropout: float = 0.0
) -> Iterator[dict[str, np.ndarray]]:
    """Endless shuffled full batches (a new permutation every pass). `customer_dropout` replaces that
    share of customer ids by the OOV index, which trains the OOV embedding new customers get."""
    rng = np.random.default_rng(seed)
    n = len(arrays["article_id"])
    if n < batch_size:
        raise ValueError(f"a worker's shard has {n} examples, fewer than one batch of {batch_size}")
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            take = order[start : start + batch_size]
            batch = {k: v[take] for k, v in arrays.items()}
            if customer_dropout > 0:
                batch["customer_id"] = np.where(
                    rng.random(batch_size) < customer_dropout, 0, batch["customer_id"]
                )
            yield batch


def tf_dataset(arrays: dict[str, np.ndarray], batch_size: int, seed: int, customer_dropout: float = 0.0):
    """`tf.data.Dataset` of endless shuffled batches, prefetching while the model trains."""
    from fashionrec.training.tf_env import import_tensorflow

    tf = import_tensorflow()
    signature = {
        k: tf.TensorSpec(shape=(batch_size, *v.shape[1:]), dtype=tf.as_dtype(v.dtype))
        for k, v in arrays.items()
    }
    return tf.data.Dataset.from_generator(
        lambda: batches(arrays, batch_size, seed, customer_dropout), output_signature=signature
    ).prefetch(tf.data.AUTOTUNE)
