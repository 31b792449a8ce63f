"""What the core knows once a snapshot is loaded: the catalogue and its lists (the global half), the
customers of the batch or the server (the personal half), and the per-id lookups every step reads, so a
request touches only its own rows.

`SnapshotState` is the base of `recommender.core.Recommender`; the candidate sources
(`recommender.sources`), the business rules (`recommender.rules`) and the ranker's features
(`recommender.features`) read the attributes it sets.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionrec.recommender.layout import ARTICLE_FEATURES, CUSTOMER_TABLE_FEATURES
from fashionrec.recommender.pipeline import PipelineConfig

# Snapshot columns copied into the ranker's features (customers' "feature_age" becomes "age").
CUSTOMER_COLUMNS = (*[c for c in CUSTOMER_TABLE_FEATURES if c != "age"], "feature_age")
ARTICLE_COLUMNS = tuple(ARTICLE_FEATURES)
ATTRIBUTES = ("product", "type", "colour", "department", "index_group")  # snapshot columns attr_<name>


class SnapshotState:
    """The loaded snapshot and its lookups."""

    def load_snapshot(self, folder: Path, config: PipelineConfig | None = None) -> None:
        """Read the global half of the snapshot in `folder` (articles, lists, pairs, neighbours, meta.json);
        `config` replaces the pipeline config it was written with (the backtest asks one snapshot for
        several rankers' choices)."""
        self.meta = json.loads((folder / "meta.json").read_text())
        self.week = int(self.meta["week"])
        self.config = config or PipelineConfig.from_dict(self.meta["pipeline"])
        self.rules, self.counts = self.config.rules, self.config.candidates
        self.k, self.max_per_type = self.config.k, self.config.max_per_type
        self.first_day = self.week * 7
        # Sorted: Spark writes the rows in another order each run, and row positions pick random
        # negatives and break ties, so an unsorted catalogue would make each run's training rows differ.
        self.articles = pd.read_parquet(folder / "articles.parquet").set_index("article_id").sort_index()
        tops = pd.read_parquet(folder / "tops.parquet")
        trending = tops[tops["list"] == "trending"].sort_values("source_rank")
        self.trending = trending[["article_id", "source_rank", "source_score"]].reset_index(drop=True)
        decayed = tops[tops["list"] == "decayed_popularity"].sort_values("source_rank")
        self.popular_rows = list(
            zip(decayed["article_id"], decayed["source_rank"], decayed["source_score"], strict=True)
        )
        self.popular = decayed["article_id"].tolist()[: self.k]  # the baseline's list (live method)
        self.last_week = trending["article_id"].tolist()[: self.k]  # the whole-history baseline's
        by_type = tops[tops["list"] == "type"].sort_values(["band", "source_rank"])
        self.type_rows = {
            int(t): list(zip(g["article_id"], g["source_rank"], g["source_score"], strict=True))
            for t, g in by_type.groupby("band")
        }
        self.together: dict[str, list[tuple[str, float]]] = {}
        if self.meta.get("has_pairs"):
            pairs = pd.read_parquet(folder / "pairs.parquet")
            for article, other, count in zip(
                pairs["article_id"], pairs["other_id"], pairs["count"], strict=True
            ):
                self.together.setdefault(article, []).append((other, float(count)))
        self.live = self.config.live.name
        bands = tops[tops["list"] == "age_band"].sort_values(["band", "source_rank"])
        self.bands = {
            int(b): g[["article_id", "source_rank", "source_score"]].reset_index(drop=True)
            for b, g in bands.groupby("band")
        }
        self.similar: pd.DataFrame | None = None
        if self.meta["has_similar"]:
            self.similar = pd.read_parquet(folder / "similar.parquet")
        self._build_lookups()

    def _build_lookups(self) -> None:
        """Per-id dictionaries, so a request touches only its own rows (no scans of the catalogue)."""

        def code(value: Any) -> Any:
            return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

        articles = self.articles
        self.attrs = {
            a: (code(p), code(t))
            for a, p, t in zip(articles.index, articles["attr_product"], articles["attr_type"], strict=True)
        }
        self.siblings: dict[Any, list[str]] = {}
        for article, (product, _) in self.attrs.items():
            if product is not None:
                self.siblings.setdefault(product, []).append(article)
        sales = articles["sales_4w_source"].fillna(0).astype(np.float64)
        self.sales_4w = dict(zip(articles.index, sales, strict=True))
        self.cold_neighbours: dict[str, list[tuple[str, float]]] = {}
        if self.similar is not None:
            sold = set(articles.index[articles["has_sold"].fillna(False).astype(bool)])
            for article, neighbour, similarity in zip(
                self.similar["article_id"],
                self.similar["neighbour_id"],
                self.similar["similarity"],
                strict=True,
            ):
                if neighbour not in sold:
                    self.cold_neighbours.setdefault(article, []).append((neighbour, float(similarity)))
        self._article_codes()
        self._type_pools()
        self.trending_rows = list(
            zip(
                self.trending["article_id"],
                self.trending["source_rank"],
                self.trending["source_score"],
                strict=True,
            )
        )
        self.band_rows = {
            band: list(zip(rows["article_id"], rows["source_rank"], rows["source_score"], strict=True))
            for band, rows in self.bands.items()
        }
        self.article_matrix = articles[list(ARTICLE_COLUMNS)].to_numpy(dtype=np.float64)
        self._article_rules()

    def _article_codes(self) -> None:
        """Integer codes for the batched interaction features: every article id (the catalogue first,
        then ids only the neighbour pairs name), its product / type / colour codes (-1: missing), and
        the neighbour pairs grouped by article (`neighbour_start[code]` to `neighbour_start[code + 1]`)."""
        catalogue = list(self.articles.index)
        extra: list[str] = []
        if self.similar is not None:
            named = pd.unique(pd.concat([self.similar["article_id"], self.similar["neighbour_id"]]))
            extra = [a for a in named if a not in self.attrs]
        self.code_of = {a: i for i, a in enumerate(catalogue + extra)}
        self.article_of = np.array(catalogue + extra, dtype=object)  # code → article id
        self.in_catalogue = np.arange(len(self.code_of)) < len(catalogue)
        self.attr_codes = np.full((len(self.code_of), len(ATTRIBUTES)), -1, dtype=np.int64)
        for j, name in enumerate(ATTRIBUTES):
            self.attr_codes[: len(catalogue), j] = pd.factorize(self.articles[f"attr_{name}"])[0]
        self.neighbour_start = np.zeros(len(self.code_of) + 1, dtype=np.int64)
        self.neighbour_code = np.zeros(0, dtype=np.int64)
        self.neighbour_similarity = np.zeros(0, dtype=np.float64)
        if self.similar is not None:
            source = self.similar["article_id"].map(self.code_of).to_numpy(dtype=np.int64)
            order = np.argsort(source, kind="stable")
            self.neighbour_start = np.searchsorted(source[order], np.arange(len(self.code_of) + 1))
            self.neighbour_code = self.similar["neighbour_id"].map(self.code_of).to_numpy(np.int64)[order]
            self.neighbour_similarity = self.similar["similarity"].to_numpy(np.float64)[order]

    def _type_pools(self) -> None:
        """Each product type's best-seller list as arrays over article codes (type code → codes, decayed
        sales, colour and department codes) for the taste-weighted `favourite_type` source."""
        type_j, colour_j, department_j = (ATTRIBUTES.index(n) for n in ("type", "colour", "department"))
        self.type_pool: dict[int, tuple[np.ndarray, ...]] = {}
        for rows in self.type_rows.values():
            known = [(self.code_of[a], v) for a, _, v in rows if a in self.code_of]
            if known:
                codes = np.array([c for c, _ in known], dtype=np.int64)
                sales = np.array([v for _, v in known], dtype=np.float64)
                kind = int(self.attr_codes[codes[0], type_j])
                self.type_pool[kind] = (
                    codes,
                    sales,
                    self.attr_codes[codes, colour_j],
                    self.attr_codes[codes, department_j],
                )
        self.taste_columns = (type_j, colour_j, department_j)
        self.code_count = {
            j: int(self.attr_codes[:, j].max(initial=-1)) + 2 for j in (colour_j, department_j)
        }

    def _customer_lookups(self) -> None:
        """Per-customer rows and the filters' customer side (a missing value never removes a
        candidate, as in the Spark filters)."""
        customers = self.customers
        self.customer_row = {c: i for i, c in enumerate(customers.index)}
        self.customer_matrix = customers[list(CUSTOMER_COLUMNS)].to_numpy(dtype=np.float64)
        self.query_age = {
            c: None if pd.isna(age) else float(age)
            for c, age in zip(customers.index, customers["age"], strict=True)
        }
        self.band_of = {c: int(b) for c, b in zip(customers.index, customers["band"], strict=True)}
        self.customer_age = {c: math.nan if age is None else age for c, age in self.query_age.items()}
        # The customer's column in `region_allowed` (a region no article names: the last one).
        known = {region: j for j, region in enumerate(self.regions)}
        self.region_column = {
            c: known.get(r, len(self.regions))
            for c, r in zip(customers.index, customers["region"], strict=True)
            if isinstance(r, str)
        }

    def _article_rules(self) -> None:
        """Stock, region and age rules as arrays over article codes (a missing value never removes a
        candidate, as in the Spark filters)."""
        articles, size, known = self.articles, len(self.code_of), len(self.articles)
        self.stock_out = np.zeros(size, dtype=bool)
        self.min_age_of = np.zeros(size)
        self.regions: list[str] = []
        self.region_restricted = np.zeros(size, dtype=bool)
        self.region_allowed = np.zeros((size, 1), dtype=bool)  # the last column: a region no one allows
        if not self.meta["has_availability"]:
            return
        self.stock_out[:known] = (articles["in_stock"] == 0).to_numpy()
        self.min_age_of[:known] = articles["min_age"].astype(np.float64).fillna(0.0).to_numpy()
        allowed = [set(r.split(";")) if isinstance(r, str) and r else set() for r in articles["regions"]]
        self.regions = sorted(set().union(*allowed))
        column = {region: j for j, region in enumerate(self.regions)}
        self.region_allowed = np.zeros((size, len(self.regions) + 1), dtype=bool)
        for row, names in enumerate(allowed):
            self.region_restricted[row] = bool(names)
            self.region_allowed[row, [column[r] for r in names]] = True

    def _band(self, customer: str) -> int:
        return self.band_of.get(customer, -1)

    def _recent(self, customer: str, weeks: int) -> list[tuple[str, int]]:
        start = self.week - weeks
        return [(a, d) for a, d in self.history_rows.get(customer, []) if d // 7 >= start]

    def _purchases(self, people: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(customer position, article code, day) of the customers' purchases of catalogue articles."""
        who: list[int] = []
        ids: list[str] = []
        days: list[int] = []
        for position, customer in enumerate(people):
            rows = self.history_rows.get(customer)
            if rows:
                bought, when = zip(*rows, strict=True)
                who.extend([position] * len(bought))
                ids.extend(bought)
                days.extend(when)
        code = np.fromiter((self.code_of.get(a, -1) for a in ids), np.int64, len(ids))
        known = (code >= 0) & self.in_catalogue[np.maximum(code, 0)]
        return np.asarray(who, np.int64)[known], code[known], np.asarray(days, np.int64)[known]

    def is_warm(self, customer_id: str) -> bool:
        return customer_id in self.history_rows


def purchase_histories(purchases: pd.DataFrame) -> dict[str, list[tuple[str, int]]]:
    """(customer_id, article_id, day) rows → each customer's (article_id, day) list, in row order;
    customers in order of first appearance. One stable sort instead of a pandas group per customer:
    the served model builds this for every customer at start."""
    codes, customers = pd.factorize(purchases["customer_id"].to_numpy(dtype=object))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(customers) + 1)).tolist()
    pairs = list(
        zip(
            purchases["article_id"].to_numpy(dtype=object)[order].tolist(),
            purchases["day"].to_numpy()[order].tolist(),
            strict=True,
        )
    )
    return {c: pairs[bounds[i] : bounds[i + 1]] for i, c in enumerate(customers.tolist())}
