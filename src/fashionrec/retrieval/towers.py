"""The two towers at run time: load the saved towers, embed customers (query tower) and articles
(candidate tower). TensorFlow and numpy only: the served model, batch scoring and the index task share it;
training (`retrieval.train`, `retrieval.task`) writes what it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fashionrec.retrieval.vocab import ARTICLE_CATEGORIES, ARTICLE_SALES, PRODUCT, Vocabulary
from fashionrec.training.tf_env import import_tensorflow
from fashionrec.weeks import HISTORY_LENGTH

TOWERS = Path("retrieval") / "towers"  # under the artifacts folder
INDEX_FILE = Path("retrieval") / "index.npz"
QUERY_ROWS_MULTIPLE = 64  # `embed_queries` pads each chunk to a multiple of this many rows


def load_towers(artifacts_dir: str | Path) -> tuple[Any, Any, Vocabulary]:
    folder = Path(artifacts_dir) / TOWERS
    if not (folder / "vocab.json").exists():
        raise FileNotFoundError(f"no trained towers in {folder}: run the train_retrieval task first")
    return (
        load_encoder(folder / "query_tower"),
        load_encoder(folder / "candidate_tower"),
        Vocabulary.load(folder / "vocab.json"),
    )


def load_query_tower(artifacts_dir: str | Path) -> Any:
    """The query tower alone: what the recommender core needs to embed a customer."""
    folder = Path(artifacts_dir) / TOWERS
    if not (folder / "query_tower").exists():
        raise FileNotFoundError(f"no trained towers in {folder}: run the train_retrieval task first")
    return load_encoder(folder / "query_tower")


def load_encoder(path: str | Path) -> Any:
    """A saved tower (TensorFlow only: TensorFlow Recommenders is a training dependency)."""
    return import_tensorflow().saved_model.load(str(path))


def embed_catalog(candidate_encoder: Any, articles: pa.Table, batch: int = 8192) -> np.ndarray:
    """Candidate embeddings of every article row (new articles: OOV id, known product and categories; a
    table without the ARTICLE_SALES columns embeds articles with no recent sales)."""
    parts = []
    for start in range(0, articles.num_rows, batch):
        chunk = articles.slice(start, batch)
        inputs: dict[str, np.ndarray] = {
            c: np.asarray(chunk.column(c).cast(pa.string()).fill_null("").to_pylist(), dtype=object)
            for c in ("article_id", PRODUCT, *ARTICLE_CATEGORIES)
        }
        for c in ARTICLE_SALES:
            values = chunk.column(c).fill_null(0.0) if c in chunk.column_names else None
            inputs[c] = (
                np.zeros(chunk.num_rows, np.float32)
                if values is None
                else values.to_numpy(zero_copy_only=False).astype(np.float32)
            )
        parts.append(candidate_encoder(inputs).numpy())
    return np.concatenate(parts)


def embed_queries(query_encoder: Any, queries: pa.Table, batch: int = 8192) -> np.ndarray:
    """Query-tower embeddings of `queries` rows. Each chunk is padded (its last row repeated) to a multiple
    of `QUERY_ROWS_MULTIPLE` rows: the CPU kernels round a row differently when it falls in a partial
    block, so unpadded, a customer's vector (and, at near ties, its top-100) would depend on how many
    others shared its batch."""
    parts = []
    for start in range(0, queries.num_rows, batch):
        chunk = queries.slice(start, batch)
        rows = chunk.num_rows
        fill = [rows - 1] * (-rows % QUERY_ROWS_MULTIPLE)
        if fill:
            chunk = pa.concat_tables([chunk, chunk.take(fill)])
        history = [(h or [])[-HISTORY_LENGTH:] for h in chunk.column("history").to_pylist()]
        padded = np.array(
            [[""] * (HISTORY_LENGTH - len(h)) + list(h) for h in history], dtype=object
        ).reshape(-1, HISTORY_LENGTH)
        age = chunk.column("age").to_numpy(zero_copy_only=False).astype(np.float32)
        parts.append(
            query_encoder(
                {
                    "customer_id": np.asarray(chunk.column("customer_id").to_pylist(), dtype=object),
                    "age": age,
                    "month_sin": chunk.column("month_sin").to_numpy().astype(np.float32),
                    "month_cos": chunk.column("month_cos").to_numpy().astype(np.float32),
                    "history": padded,
                }
            ).numpy()[:rows]
        )
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
