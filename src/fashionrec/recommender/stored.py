"""Answers computed before serving: batch scoring's lists for the snapshot's customers (the served method's
top-k, `recommendations`), which `register` stores in the serving snapshot. A request with the default
method, no `exclude` and k at most the stored length is answered from them: the top-k of every live method
is the first k of its top-12, and batch scoring runs this very core on the same snapshot."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

ANSWERS_FILE = "answers.parquet"
FINGERPRINT_KEY = b"fashionrec.fingerprint"  # parquet metadata: the snapshot files the answers belong to


class StoredAnswers:
    """The stored lists by customer, kept as Arrow columns (compact at a million customers)."""

    def __init__(self, path: Path) -> None:
        table = pq.read_table(path, columns=["customer_id", "article_ids", "scores", "sources"])
        self.row = {c: i for i, c in enumerate(table.column("customer_id").to_pylist())}
        self.articles = table.column("article_ids").combine_chunks()
        self.scores = table.column("scores").combine_chunks()
        self.sources = table.column("sources").combine_chunks()
        lengths = self.articles.value_lengths().to_numpy(zero_copy_only=False)
        self.k = int(lengths.max()) if len(lengths) else 0  # the stored lists' length (the pipeline's k)

    @classmethod
    def load(cls, folder: Path, fingerprint: str) -> StoredAnswers | None:
        """The snapshot's stored answers, or None without them or when they belong to other files."""
        path = folder / ANSWERS_FILE
        if not path.exists():
            return None
        metadata = pq.read_schema(path).metadata or {}
        if metadata.get(FINGERPRINT_KEY, b"").decode() != fingerprint:
            return None
        return cls(path)

    def get(self, customer: str, k: int) -> tuple[list[str], list[float], list[str]] | None:
        """(articles, scores, sources) of the customer's first k, or None when none is stored."""
        row = self.row.get(customer)
        if row is None:
            return None
        return (
            self.articles[row].values.to_pylist()[:k],
            self.scores[row].values.to_pylist()[:k],
            self.sources[row].values.to_pylist()[:k],
        )
