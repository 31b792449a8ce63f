"""Where each table lives: a local lakehouse folder, or Unity Catalog `catalog.schema.table`.

Every stage asks a `TableLocator` for a table instead of building paths itself, so the same code runs
on this machine (path-based Delta tables under ./lakehouse) and on Databricks (catalog tables).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class Tables:
    """Names of the lakehouse tables (one place, so a rename is one edit)."""

    ARTICLES = "articles"
    CUSTOMERS = "customers"
    TRANSACTIONS = "transactions"
    QUARANTINE = "quarantine"
    EVENTS = "events"  # the shop's real-time events (streaming.events)
    CUSTOMER_FEATURES = "customer_features"
    ARTICLE_FEATURES = "article_features"
    SPLITS = "splits"
    GROUND_TRUTH = "ground_truth"
    RETRIEVAL_TRAINING_SET = "retrieval_training_set"
    FEATURE_STATE = "feature_state"
    RETRIEVAL_CANDIDATES = "retrieval_candidates"
    ARTICLE_AVAILABILITY = "article_availability"
    RANKED_CANDIDATES = "ranked_candidates"
    BACKTEST_LISTS = "backtest_lists"
    RECOMMENDATIONS = "recommendations"
    SCORING_STATE = "scoring_state"
    ARTICLE_IMAGES = "article_images"
    IMAGE_FILE_STATE = "image_file_state"
    LANDED_FILES = "landed_files"
    SIMILAR_ARTICLES = "similar_articles"
    IMAGE_EMBEDDINGS = "image_embeddings"


@dataclass(frozen=True)
class TableLocator:
    """Resolves a table name to a Delta location.

    With `catalog` empty, tables are path-based under `lakehouse`; otherwise they are catalog tables
    `catalog.schema.name` (Unity Catalog on Databricks).
    """

    lakehouse: str = "lakehouse"
    catalog: str = ""
    schema: str = "fashionrec"

    @property
    def uses_catalog(self) -> bool:
        return bool(self.catalog)

    def path(self, table: str) -> str:
        """Absolute folder of a path-based table."""
        if self.uses_catalog:
            raise ValueError(f"table {table!r} is a catalog table ({self.name(table)}), it has no local path")
        return os.path.abspath(os.path.join(self.lakehouse, table))

    def name(self, table: str) -> str:
        """SQL identifier usable in `spark.sql` / `spark.table`."""
        if self.uses_catalog:
            return f"`{self.catalog}`.`{self.schema}`.`{table}`"
        return f"delta.`{self.path(table)}`"

    def describe(self) -> str:
        return f"{self.catalog}.{self.schema}" if self.uses_catalog else os.path.abspath(self.lakehouse)
