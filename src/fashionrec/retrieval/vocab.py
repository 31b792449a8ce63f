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
# The product an article is a colour of: the candidate tower's and the query history's memory key.
PRODUCT = "product_code"
# Candidate-tower numeric inputs: the article's sales as of the week (`features.recent_sales`).
ARTICLE_SALES = ("recent_sales", "last_week_sales", "weeks_on_sale")


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
    # Product code of each article, and its ARTICLE_SALES as of the as-of week, in `articles` order.
    article_products: list[str] = field(default_factory=list)
    article_recent_sales: list[list[float]] = field(default_factory=list)

    @property
    def products(self) -> list[str]:
        return sorted(set(self.article_products))

    def index(self, name: str) -> dict[str, int]:
        values = (
            self.customers
            if name == "customer_id"
            else self.articles
            if name == "article_id"
            else self.products
            if name == PRODUCT
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
        """Candidate-tower inputs for every article of the vocabulary, in vocabulary order, with its sales
        as of the vocabulary's week."""
        arrays = {"article_id": np.arange(1, len(self.articles) + 1, dtype=np.int32)}
        for name in ARTICLE_CATEGORIES:
            lookup = self.index(name)
            arrays[name] = np.array([lookup.get(v, 0) for v in self.article_categories[name]], dtype=np.int32)
        arrays[PRODUCT] = self.history_products()[1:]
        sales = np.asarray(self.article_recent_sales, dtype=np.float32).reshape(-1, len(ARTICLE_SALES))
        if len(sales) != len(self.articles):
            sales = np.zeros((len(self.articles), len(ARTICLE_SALES)), np.float32)
        for column, name in enumerate(ARTICLE_SALES):
            arrays[name] = sales[:, column]
        return arrays

    def history_products(self) -> np.ndarray:
        """Product index of each article index (0, the padding / unknown article, maps to 0): how the
        query tower finds the products of a customer's history."""
        lookup = self.index(PRODUCT)
        products = [lookup.get(p, 0) for p in self.article_products] or [0] * len(self.articles)
        return np.array([0, *products], dtype=np.int32)
