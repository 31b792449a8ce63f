"""Vocabularies of the two towers (built from the feature tables by `retrieval.vocab_lake`, never from
one batch).

Index 0 of every vocabulary is the out-of-vocabulary bucket (unknown customer, new article, missing
category); the towers' embedding tables have `len(values) + 1` rows.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# Candidate-tower categorical inputs (besides article_id), columns of the article features.
ARTICLE_CATEGORIES = ("garment_group_name", "index_group_name", "product_type_name", "colour_group_name")


@dataclass
class Vocabulary:
    customers: list[str]
    articles: list[str]
    categories: dict[str, list[str]]
    age_mean: float = 36.0
    age_std: float = 14.0
    # Article metadata in `articles` order, for the candidate tower over the whole catalogue.
    article_categories: dict[str, list[str]] = field(default_factory=dict)
    # Sales of each article before the as-of week, in `articles` order: the log-Q correction's frequencies.
    article_sales: list[int] = field(default_factory=list)

    def index(self, name: str) -> dict[str, int]:
        values = (
            self.customers
            if name == "customer_id"
            else self.articles
            if name == "article_id"
            else self.categories[name]
        )
        return {v: i + 1 for i, v in enumerate(values)}

    def size(self, name: str) -> int:
        return len(self.index(name)) + 1

    def save(self, path: str | Path) -> None:
        """Atomic: written to a temporary file and renamed, so a reader never sees half a vocabulary."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        return cls(**json.loads(Path(path).read_text()))

    def sampling_probability(self) -> np.ndarray:
        """P(article appears as a training positive), indexed like the embeddings (0 = OOV), smoothed."""
        counts = np.concatenate([[0.0], np.asarray(self.article_sales, dtype=np.float64)]) + 1.0
        return (counts / counts.sum()).astype(np.float32)

    def catalog_arrays(self) -> dict[str, np.ndarray]:
        """Candidate-tower inputs for every article of the vocabulary, in vocabulary order."""
        arrays = {"article_id": np.arange(1, len(self.articles) + 1, dtype=np.int32)}
        for name in ARTICLE_CATEGORIES:
            lookup = self.index(name)
            arrays[name] = np.array([lookup.get(v, 0) for v in self.article_categories[name]], dtype=np.int32)
        return arrays
