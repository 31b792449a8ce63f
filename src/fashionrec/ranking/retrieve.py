"""The two-tower candidate source, distributed: each Spark task loads the towers and the index once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame

CANDIDATE_SCHEMA = (
    "customer_id string, article_id string, source string, source_rank int, source_score double"
)


def two_tower_candidates(queries: DataFrame, artifacts_dir: str, n: int, partitions: int) -> DataFrame:
    """ANN top-`n` per customer of `queries` (the query-tower inputs of `retrieval.queries.query_frame`).

    `mapInPandas` hands each task an iterator over its Arrow batches, so TensorFlow, the towers and the
    FAISS index load once per task, not once per customer.
    """
    folder = str(Path(artifacts_dir).resolve())

    def retrieve(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import pyarrow as pa

        from fashionrec.retrieval.index import ArticleIndex
        from fashionrec.retrieval.task import INDEX_FILE, embed_queries, load_towers

        query_encoder, _, _ = load_towers(folder)
        index = ArticleIndex.load(Path(folder) / INDEX_FILE)
        for batch in batches:
            if batch.empty:
                continue
            embeddings = embed_queries(query_encoder, pa.Table.from_pandas(batch, preserve_index=False))
            scores, top = index.search(embeddings, n)
            customers, articles, ranks, values = [], [], [], []
            for customer, ids, row in zip(batch["customer_id"], top, scores, strict=True):
                customers += [customer] * len(ids)
                articles += ids
                ranks += range(1, len(ids) + 1)
                values += row[: len(ids)].tolist()
            yield pd.DataFrame(
                {
                    "customer_id": customers,
                    "article_id": articles,
                    "source": "two_tower",
                    "source_rank": pd.Series(ranks, dtype="int32"),
                    "source_score": pd.Series(values, dtype="float64"),
                }
            )

    return queries.repartition(partitions).mapInPandas(retrieve, CANDIDATE_SCHEMA)
