"""The recommender core: candidates → business filters → ranker features → XGBoost → diversity, for a
batch of customers, in memory, from a snapshot (`recommender.snapshot`) loaded once.

It is the one implementation of every per-customer step. The ranker's training rows
(`ranking.frames`, on Spark through `mapInPandas`), the backtest, `batch_score` (also `mapInPandas`) and
the served pyfunc all call it, so what the ranker learned from is what it is asked about.

Sources (`recommender.layout.SOURCES`): two-tower (query tower + FAISS index), repurchase, other colours
of bought products, trending, age-band best sellers, decayed popularity, articles bought together with the
customer's recent ones, best sellers of their product types weighted by their taste, and visual cold start.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fashionrec.features.history import HISTORY_LENGTH, HISTORY_WEEKS
from fashionrec.features.weeks import EPOCH
from fashionrec.ranking.live import PIPELINE, live_lists, own_recent
from fashionrec.ranking.model import Ranker
from fashionrec.ranking.rank import rank_arrays
from fashionrec.recommender.layout import (
    ABSENT_RANK,
    ARTICLE_FEATURES,
    CUSTOMER_TABLE_FEATURES,
    FALLBACK_DEPTH,
    RANDOM_SOURCE,
    RANKER_DIR,
    SOURCES,
)
from fashionrec.retrieval.queries import month_angle

FALLBACK_SOURCE = "age_band_fallback"
# Snapshot columns copied into the ranker's features (customers' "feature_age" becomes "age").
CUSTOMER_COLUMNS = (*[c for c in CUSTOMER_TABLE_FEATURES if c != "age"], "feature_age")
ARTICLE_COLUMNS = tuple(ARTICLE_FEATURES)
ATTRIBUTES = ("product", "type", "colour", "department", "index_group")  # snapshot columns attr_<name>
TASTE_SMOOTHING = 0.5  # pseudo-count of a colour / department the customer never bought (taste weights)


SOURCE_SLOT = {source: slot for slot, source in enumerate(SOURCES)}
RANDOM_SLOT = len(SOURCES)  # an extra column of the union, dropped before the features


@dataclass
class Candidates:
    """Candidate rows of a request: one (customer, article) per row; `ranks`/`scores` are (rows, sources)
    arrays holding each source's rank and score, NaN where the source did not propose the article."""

    customer_ids: list[str]
    article_ids: list[str]
    sources: list[list[str]]
    ranks: np.ndarray
    scores: np.ndarray

    def subset(self, rows: list[int]) -> Candidates:
        return Candidates(
            [self.customer_ids[i] for i in rows],
            [self.article_ids[i] for i in rows],
            [self.sources[i] for i in rows],
            self.ranks[rows],
            self.scores[rows],
        )


@dataclass(frozen=True)
class Recommendation:
    customer_id: str
    article_ids: list[str]
    scores: list[float]
    sources: list[str]
    fallback: bool


class StageTimer:
    """Seconds spent per pipeline stage, summed over calls (for the serving benchmark)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


class UnknownArticleError(KeyError):
    """An article id the snapshot's catalogue does not hold."""


def drawn_per_customer(customer_ids: list[str], n: int, count: int, seed: int) -> np.ndarray:
    """`count` random indices below `n` per customer, seeded by the customer's id and `seed`: the same
    for a customer whichever batch (Spark task, row order) it arrives in, so training rows repeat."""
    rows = [
        np.random.default_rng((seed, zlib.crc32(customer.encode()))).integers(0, n, count)
        for customer in customer_ids
    ]
    return np.array(rows, dtype=np.int64).reshape(len(customer_ids), count)


class Recommender:
    """Loads the snapshot, the towers, the index and the ranker once; `recommend` does no disk I/O."""

    def __init__(
        self,
        snapshot_dir: str | Path,
        artifacts_dir: str | Path,
        customers: bool = True,
        ranker: bool = True,
    ) -> None:
        """Load the global half of the snapshot (articles, lists, neighbours) and the models; with
        `customers`, also its personal half (every customer's purchases and features: online serving).
        Batch scoring and training pass `customers=False` and hand each batch's customers to
        `use_customers`; training passes `ranker=False` (it computes the ranker's rows). The towers and
        the index load only when the two-tower source is on."""
        folder = Path(snapshot_dir)
        self.meta = json.loads((folder / "meta.json").read_text())
        self.week = int(self.meta["week"])
        pipeline = self.meta["pipeline"]
        self.rules = pipeline["rules"]
        self.counts = pipeline["candidates"]
        self.k, self.max_per_type = int(pipeline["k"]), int(pipeline["max_per_type"])
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
        self.live = str(pipeline.get("live", {}).get("name", PIPELINE))
        bands = tops[tops["list"] == "age_band"].sort_values(["band", "source_rank"])
        self.bands = {
            int(b): g[["article_id", "source_rank", "source_score"]].reset_index(drop=True)
            for b, g in bands.groupby("band")
        }
        self.similar: pd.DataFrame | None = None
        if self.meta["has_similar"]:
            self.similar = pd.read_parquet(folder / "similar.parquet")
        self._build_lookups()
        artifacts = Path(artifacts_dir)
        self.uses_two_tower = int(self.counts.get("two_tower", 0)) > 0
        if self.uses_two_tower:
            from fashionrec.retrieval.index import ArticleIndex
            from fashionrec.retrieval.task import INDEX_FILE, load_towers

            self.query_encoder, _, _ = load_towers(artifacts)
            self.index = ArticleIndex.load(artifacts / INDEX_FILE)
        self.ranker: Ranker | None = Ranker.load(artifacts / RANKER_DIR).single_threaded() if ranker else None
        self.month_sin, self.month_cos = month_angle(self.week)
        self.timer = StageTimer()
        if customers:
            self.use_customers(
                pd.read_parquet(folder / "customers.parquet"),
                purchase_histories(pd.read_parquet(folder / "purchases.parquet")),
            )
        else:
            columns = ["customer_id", "age", "band", "region", *CUSTOMER_COLUMNS]
            self.use_customers(pd.DataFrame(columns=columns), {})

    def use_customers(self, customers: pd.DataFrame, histories: dict[str, list[tuple[str, int]]]) -> None:
        """The personal half: customers' snapshot rows (`customer_id` and the snapshot's customer
        columns) and their purchases before the week as (article_id, day number) lists."""
        self.customers = customers.set_index("customer_id")
        self.history_rows = histories
        self._customer_lookups()
        # A query embedding depends only on the snapshot (history, age, the week's month): computed once
        # here in batches, it spares each request a TensorFlow call (~2 ms of a ~7 ms answer).
        warm = sorted(histories) if self.uses_two_tower else []
        self.query_row = {c: i for i, c in enumerate(warm)}
        self.query_matrix = self._embed(warm) if warm else np.zeros((0, 0), np.float32)

    # --- candidates -------------------------------------------------------------------------------
    def _embed(self, customer_ids: list[str]) -> np.ndarray:
        """Query-tower embeddings, computed from the snapshot the way batch scoring computes them."""
        from fashionrec.retrieval.task import embed_queries

        histories = []
        for customer in customer_ids:
            recent = self._recent(customer, HISTORY_WEEKS)
            latest = sorted(recent, key=lambda item: (item[1], item[0]), reverse=True)[:HISTORY_LENGTH]
            histories.append([a for a, _ in latest][::-1])
        n = len(customer_ids)
        queries = pa.table(
            {
                "customer_id": pa.array(customer_ids, pa.string()),
                "age": pa.array([self.query_age.get(c) for c in customer_ids], pa.float64()),
                "month_sin": pa.array([self.month_sin] * n, pa.float64()),
                "month_cos": pa.array([self.month_cos] * n, pa.float64()),
                "history": pa.array(histories, pa.list_(pa.string())),
            }
        )
        return embed_queries(self.query_encoder, queries)

    def _two_tower(self, customer_ids: list[str]) -> list[list[tuple[str, int, float]]]:
        """Per customer, the ANN's (article, rank, score) for the query tower's embedding."""
        with self.timer.stage("embed"):
            rows = [self.query_row.get(c, -1) for c in customer_ids]
            missing = [c for c, row in zip(customer_ids, rows, strict=True) if row < 0]
            embeddings = self.query_matrix[np.maximum(rows, 0)]
            if missing:  # not in the snapshot's purchases: embed now
                fresh = iter(self._embed(missing))
                for i, row in enumerate(rows):
                    if row < 0:
                        embeddings[i] = next(fresh)
        with self.timer.stage("ann"):
            scores, top = self.index.search(embeddings, self.counts["two_tower"])
        return [
            [
                (article, rank, float(score))
                for rank, (article, score) in enumerate(zip(ids, values, strict=False), 1)
            ]
            for ids, values in zip(top, scores.tolist(), strict=True)
        ]

    def _band(self, customer: str) -> int:
        return self.band_of.get(customer, -1)

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

    def _recent(self, customer: str, weeks: int) -> list[tuple[str, int]]:
        start = self.week - weeks
        return [(a, d) for a, d in self.history_rows.get(customer, []) if d // 7 >= start]

    @staticmethod
    def _best(scores: dict[str, float], n: int) -> list[tuple[str, int, float]]:
        """The `n` best (article, score) by score descending, ties by article id; with ranks from 1."""
        ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:n]
        return [(a, rank, score) for rank, (a, score) in enumerate(ordered, start=1)]

    def _personal_sources(self, customer: str) -> dict[str, list[tuple[str, int, float]]]:
        """Repurchase, other colours and visual cold start for one customer: (article, rank, score)."""
        recent, out = self._recent(customer, self.counts.get("repurchase_weeks", 12)), {}
        if self.counts["repurchase"] > 0:
            last: dict[str, int] = {}
            times: dict[str, int] = {}
            for article, day in recent:
                last[article] = max(day, last.get(article, day))
                times[article] = times.get(article, 0) + 1
            ordered = sorted(last, key=lambda a: (-last[a], -times[a], a))[: self.counts["repurchase"]]
            out["repurchase"] = [(a, rank, float(times[a])) for rank, a in enumerate(ordered, start=1)]
        distinct = {a for a, _ in recent}
        if self.counts["same_product"] > 0:
            out["same_product"] = self._other_colours(recent, distinct)
        if self.similar is not None and self.counts.get("visual", 0) > 0:
            looks: dict[str, float] = {}
            for article in distinct:
                for neighbour, similarity in self.cold_neighbours.get(article, []):
                    looks[neighbour] = max(similarity, looks.get(neighbour, similarity))
            out["visual"] = self._best(looks, self.counts["visual"])
        if self.together and self.counts.get("bought_together", 0) > 0:
            together: dict[str, float] = {}
            for article in distinct:
                for other, count in self.together.get(article, []):
                    if other not in distinct:
                        together[other] = together.get(other, 0.0) + count
            out["bought_together"] = self._best(together, self.counts["bought_together"])
        if self.type_rows and self.counts.get("favourite_type", 0) > 0:
            out["favourite_type"] = self._favourite_types(customer)
        return out

    def _other_colours(self, recent: list[tuple[str, int]], bought: set[str]) -> list[tuple[str, int, float]]:
        """Other colours of the customer's products, best 4-week sellers first and, among equals, those of
        the most recently bought product first: most colours of a real catalogue never sold to the
        shoppers seen, so the tie-break decides the list (on hm_real_dev's choice weeks this order found
        34 of 2,805 purchases at 12 per customer, 68 at 48). Score: the 4-week sales."""
        latest: dict[Any, int] = {}
        for article, day in recent:
            product = self.attrs.get(article, (None, None))[0]
            if product is not None:
                latest[product] = max(day, latest.get(product, day))
        siblings = {
            s: (self.sales_4w.get(s, 0.0), day)
            for product, day in latest.items()
            for s in self.siblings.get(product, [])
            if s not in bought
        }
        ordered = sorted(siblings.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))
        return [
            (a, rank, sales) for rank, (a, (sales, _)) in enumerate(ordered[: self.counts["same_product"]], 1)
        ]

    def _favourite_types(self, customer: str) -> list[tuple[str, int, float]]:
        """Best sellers of the product types the customer bought, weighted by their taste: decayed sales
        × the customer's share of the article's type × smoothed shares of its colour and department in
        their whole history (a missing code counts as never bought).

        Why: shoppers keep to their types, colours and departments. On the choice weeks this found
        2.4× (hm_real_dev) and 1.5× (`small`) the purchases of the old rule, the two favourite types'
        best sellers by sales alone, at 24 per customer (docs/benchmarks.md)."""
        codes = [self.code_of[a] for a, _ in self.history_rows.get(customer, []) if a in self.code_of]
        if not codes:
            return []
        type_j, colour_j, department_j = self.taste_columns
        mine = self.attr_codes[np.array(codes, dtype=np.int64)]
        kinds, counts = np.unique(mine[:, type_j], return_counts=True)
        pools = [
            (self.type_pool[int(t)], c) for t, c in zip(kinds, counts, strict=True) if t in self.type_pool
        ]
        if not pools:
            return []
        n = float(len(codes))

        def share(column: int) -> np.ndarray:  # index code + 1: slot 0 is the missing code (-1)
            bought = np.bincount(mine[:, column] + 1, minlength=self.code_count[column])
            return (bought + TASTE_SMOOTHING) / (n + TASTE_SMOOTHING)

        colours, departments = share(colour_j), share(department_j)
        article = np.concatenate([pool[0] for pool, _ in pools])
        score = (
            np.concatenate([pool[1] * (count / n) for pool, count in pools])
            * colours[np.concatenate([pool[2] for pool, _ in pools]) + 1]
            * departments[np.concatenate([pool[3] for pool, _ in pools]) + 1]
        )
        top = np.argsort(-score, kind="stable")[: self.counts["favourite_type"]]
        return [
            (str(self.article_of[a]), rank, float(v))
            for rank, (a, v) in enumerate(zip(article[top], score[top], strict=True), start=1)
            if v > 0
        ]

    def candidates(self, customer_ids: list[str], random_negatives: int = 0, seed: int = 0) -> Candidates:
        """One row per (customer, article) proposed by any source, with each source's rank and score (the
        best rank and score when a source proposes an article twice). `random_negatives` adds that many
        random catalogue articles per customer (training only: easy negatives, source "random", no
        source rank)."""
        who: list[int] = []
        articles: list[str] = []
        slots: list[int] = []
        ranks: list[float] = []
        scores: list[float] = []

        def add(person: int, source: str, found: list[tuple[str, int, float]]) -> None:
            if found:
                ids, found_ranks, found_scores = zip(*found, strict=True)
                who.extend([person] * len(ids))
                slots.extend([SOURCE_SLOT[source]] * len(ids))
                articles.extend(ids)
                ranks.extend(found_ranks)
                scores.extend(found_scores)

        if self.uses_two_tower:
            for person, found in enumerate(self._two_tower(customer_ids)):
                add(person, "two_tower", found)
        trending = self.trending_rows[: self.counts["trending"]]
        popular = self.popular_rows[: self.counts.get("popular", 0)]
        for person, customer in enumerate(customer_ids):
            for source, found in self._personal_sources(customer).items():
                add(person, source, found)
            add(person, "trending", trending)
            add(person, "popular", popular)
            add(person, "age_band", self.band_rows.get(self._band(customer), [])[: self.counts["age_band"]])
        if random_negatives > 0:
            drawn = drawn_per_customer(customer_ids, len(self.articles), random_negatives, seed)
            for person, row in enumerate(drawn):
                who.extend([person] * len(row))
                articles.extend(self.articles.index[row])
                slots.extend([RANDOM_SLOT] * len(row))
                ranks.extend([1.0] * len(row))
                scores.extend([0.0] * len(row))
        return _union(customer_ids, who, articles, slots, ranks, scores)

    # --- filters ----------------------------------------------------------------------------------
    def keep(
        self, customer_ids: list[str], article_ids: list[str], already_bought: bool = True
    ) -> np.ndarray:
        """The business rules' verdict for (customer, article) rows: not bought within the window, in
        stock, sold in the customer's region and not age-restricted for them (each rule that is on).
        `already_bought=False` skips the first rule (the live method's own recent articles)."""
        removed = self.removals(customer_ids, article_ids, already_bought)
        ok = np.ones(len(article_ids), dtype=bool)
        for flags in removed.values():
            ok &= ~flags
        return ok

    def removals(
        self, customer_ids: list[str], article_ids: list[str], already_bought: bool = True
    ) -> dict[str, np.ndarray]:
        """Per active rule, which rows it removes (a row can fail several; they are counted per rule).
        A missing value never removes a row."""
        weeks = int(self.rules.get("already_bought_weeks", 0)) if already_bought else 0
        on = bool(self.meta["has_availability"])  # without the availability table the rules have no data
        stock, region, age = (on and bool(self.rules.get(r, True)) for r in ("out_of_stock", "region", "age"))
        person, people = pd.factorize(np.asarray(customer_ids, dtype=object))
        article = np.fromiter((self.code_of.get(a, -1) for a in article_ids), np.int64, len(article_ids))
        known, at = article >= 0, np.maximum(article, 0)
        removed: dict[str, np.ndarray] = {}
        if weeks > 0:
            who, bought, day = self._purchases(list(people))
            recent = day // 7 >= self.week - weeks
            width = len(self.code_of) + 1
            keys, _, _ = _key_table(who[recent] * width + bought[recent], day[recent])
            removed["already_bought"] = _find(keys, np.where(known, person * width + article, -1))[1]
        if stock:
            removed["out_of_stock"] = known & self.stock_out[at]
        if region:
            home = np.array([self.region_column.get(c, -1) for c in people], dtype=np.int64)[person]
            restricted = known & self.region_restricted[at] & (home >= 0)
            removed["region"] = restricted & ~self.region_allowed[at, np.maximum(home, 0)]
        if age:
            ages = np.array([self.customer_age.get(c, math.nan) for c in people], dtype=np.float64)[person]
            removed["age"] = ages < np.where(known, self.min_age_of[at], 0.0)
        return removed

    # --- features ---------------------------------------------------------------------------------
    def features(self, candidates: Candidates, names: list[str] | None = None) -> np.ndarray:
        """The ranker's features of the candidate rows (`layout.FEATURES`; NaN where unknown): a float32
        matrix with the columns `names` (default: the loaded ranker's)."""
        if names is None:
            if self.ranker is None:
                raise ValueError("no ranker loaded: name the feature columns")
            names = self.ranker.features
        n = len(candidates.article_ids)
        person, people = pd.factorize(np.asarray(candidates.customer_ids, dtype=object))
        article = np.fromiter((self.code_of.get(a, -1) for a in candidates.article_ids), np.int64, n)
        counts, since, visual, totals = self._interactions(person, list(people), article)
        columns: dict[str, np.ndarray] = {f"n_bought_{name}": counts[name] for name in counts}
        with np.errstate(divide="ignore", invalid="ignore"):
            for name in ("type", "department", "colour", "index_group"):
                columns[f"{name}_share"] = np.where(totals > 0, counts[name] / totals, np.nan)
        columns["days_since_article"], columns["days_since_product"] = since["article"], since["product"]
        columns["visual_similarity"] = visual
        columns["repeat_share"] = self._repeat_share(list(people))[person]
        customer_rows = self._rows(self.customer_matrix, self.customer_row, list(people))[person]
        for i, column in enumerate(CUSTOMER_COLUMNS):
            columns["age" if column == "feature_age" else column] = customer_rows[:, i]
        # Article codes of the catalogue are its rows (`_article_codes`); others get NaN (a left join).
        in_catalogue = (article >= 0) & self.in_catalogue[np.maximum(article, 0)]
        items = self.article_matrix[np.where(in_catalogue, article, 0)]
        items[~in_catalogue] = np.nan
        for i, column in enumerate(ARTICLE_COLUMNS):
            columns[column] = items[:, i]
        price = columns["customer_mean_price"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = columns["article_mean_price"] / price
        columns["price_ratio"] = np.where(price != 0, ratio, np.nan)  # Spark: x / 0 is null
        columns["age_gap"] = columns["age"] - columns["mean_buyer_age"]
        columns["n_sources"] = np.count_nonzero(~np.isnan(candidates.ranks), axis=1).astype(np.float64)
        ranks = np.where(np.isnan(candidates.ranks), ABSENT_RANK, candidates.ranks)
        scores = candidates.scores
        for slot, source in enumerate(SOURCES):
            columns[f"rank_{source}"] = ranks[:, slot]
            columns[f"score_{source}"] = scores[:, slot]
        matrix = np.empty((n, len(names)), dtype=np.float32)
        for j, column in enumerate(names):
            matrix[:, j] = columns[column]
        return matrix

    def _repeat_share(self, people: list[str]) -> np.ndarray:
        """Per customer, the share of their purchases that repeat an article they bought before (NaN
        without purchases): how much "buy it again" fits them."""
        out = np.full(len(people), np.nan)
        for i, customer in enumerate(people):
            rows = self.history_rows.get(customer)
            if rows:
                out[i] = 1.0 - len({a for a, _ in rows}) / len(rows)
        return out

    def _interactions(
        self, person: np.ndarray, people: list[str], article: np.ndarray
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Per candidate row (`people[person]` and article code `article`, -1 when unknown): how often
        the customer bought the article / each of its attributes (`ATTRIBUTES`) before the week, days
        since the last purchase of the article / product, the best visual similarity to their purchases
        (0 without any) and their number of purchases. Whole batches at once: purchases and candidates
        become integer keys (customer position × code), looked up in sorted key tables.

        Purchases of articles outside the catalogue count for nothing, and a missing attribute never
        matches."""
        n = len(article)
        who, bought, day = self._purchases(people)
        width = len(self.code_of) + 1
        counts: dict[str, np.ndarray] = {}
        last: dict[str, np.ndarray] = {}
        for j, name in enumerate(("article", *ATTRIBUTES)):
            if name == "article":
                mine, theirs = bought, article
            else:
                mine = self.attr_codes[bought, j - 1]
                theirs = np.where(article >= 0, self.attr_codes[np.maximum(article, 0), j - 1], -1)
            ok = mine >= 0
            keys, count, latest = _key_table(who[ok] * width + mine[ok], day[ok])
            at, found = _find(keys, np.where(theirs >= 0, person * width + theirs, -1))
            counts[name] = np.where(found, count[at], 0).astype(np.float64)
            if name in ("article", "product"):
                last[name] = np.where(found, self.first_day - latest[at], np.nan)
        visual = np.full(n, np.nan)
        if self.similar is not None:
            visual = self._visual(person, article, who, bought, width)
        totals = np.bincount(who, minlength=len(people)).astype(np.float64)[person]
        return counts, last, visual, totals

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

    def _visual(
        self, person: np.ndarray, article: np.ndarray, who: np.ndarray, bought: np.ndarray, width: int
    ) -> np.ndarray:
        """The best similarity between each candidate and its customer's purchased articles."""
        pairs = np.unique(who * width + bought)  # distinct (customer, article) purchases
        owner, item = pairs // width, pairs % width
        begin = self.neighbour_start[item]
        sizes = self.neighbour_start[item + 1] - begin
        offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        at_pair = np.repeat(begin, sizes) + offsets  # positions in the neighbour arrays
        keys, _, best = _key_table(
            np.repeat(owner, sizes) * width + self.neighbour_code[at_pair], self.neighbour_similarity[at_pair]
        )
        at, found = _find(keys, np.where(article >= 0, person * width + article, -1))
        return np.where(found, best[at], 0.0)

    @staticmethod
    def _rows(matrix: np.ndarray, row_of: dict[str, int], ids: list[str]) -> np.ndarray:
        """Rows of `matrix` for `ids`; NaN for ids it does not hold (Spark's left join)."""
        picked = np.array([row_of.get(i, -1) for i in ids], dtype=np.int64)
        out = matrix[np.maximum(picked, 0)]
        out[picked < 0] = np.nan
        return out

    # --- the answer -------------------------------------------------------------------------------
    def is_warm(self, customer_id: str) -> bool:
        return customer_id in self.history_rows

    def fallback(self, customer_id: str, k: int, exclude: set[str]) -> Recommendation:
        """Age-band best sellers (global ones for unknown customers), after the same filters."""
        listed = self.band_rows.get(self._band(customer_id), [])[: FALLBACK_DEPTH * self.k]
        articles = [a for a, _, _ in listed]
        keep = self.keep([customer_id] * len(articles), articles)
        picked = [
            (a, float(v)) for (a, _, v), ok in zip(listed, keep, strict=True) if ok and a not in exclude
        ]
        return Recommendation(
            customer_id,
            [a for a, _ in picked[:k]],
            [v for _, v in picked[:k]],
            [FALLBACK_SOURCE] * len(picked[:k]),
            True,
        )

    def recommend(
        self,
        customer_ids: list[str],
        k: int | None = None,
        exclude: set[str] | None = None,
        method: str | None = None,
    ) -> list[Recommendation]:
        """Top-`k` (default: the pipeline's k) for each customer, in input order, by the live method
        (`ranking.live`; `method` overrides it, e.g. "pipeline" for the ranker's lists alone)."""
        k, exclude = k or self.k, exclude or set()
        method = method or self.live
        ranked_k = k if method == PIPELINE else 2 * k  # a blend may drop ranked articles it already holds
        warm = [c for c in dict.fromkeys(customer_ids) if self.is_warm(c)]
        answers: dict[str, Recommendation] = {}
        if warm and self.ranker is None:
            raise ValueError("this Recommender was loaded without a ranker: it computes candidates only")
        if warm and self.ranker is not None:
            with self.timer.stage("candidates"):
                candidates = self.candidates(warm)  # includes the "embed" and "ann" stages
            with self.timer.stage("filters"):
                keep = self.keep(candidates.customer_ids, candidates.article_ids)
                candidates = candidates.subset(
                    [i for i, a in enumerate(candidates.article_ids) if keep[i] and a not in exclude]
                )
            with self.timer.stage("features"):
                features = self.features(candidates)
            with self.timer.stage("rank"):
                product_type = features[:, self.ranker.features.index("product_type_no")]
                ranked = rank_arrays(
                    np.asarray(candidates.customer_ids, dtype=object),
                    np.asarray(candidates.article_ids, dtype=object),
                    self.ranker.score_matrix(features),
                    product_type,
                    candidates.sources,
                    ranked_k,
                    self.max_per_type,
                )
            for customer, articles, scores, sources in ranked:
                answers[customer] = Recommendation(customer, articles, scores, sources, False)
            if method != PIPELINE:
                with self.timer.stage("live"):
                    answers = self._live(method, answers, k, exclude)
        return [answers[c] if c in answers else self.fallback(c, k, exclude) for c in customer_ids]

    def _live(
        self, method: str, ranked: dict[str, Recommendation], k: int, exclude: set[str]
    ) -> dict[str, Recommendation]:
        """The live method's lists from the ranker's: own recent articles and the baseline's popular list
        pass the business rules (not the already-bought one) and `exclude`, as the ranked ones did. One
        `keep` call for the whole batch."""
        own = {c: own_recent(self.history_rows.get(c, []), self.first_day, k) for c in ranked}
        pools = {c: list(dict.fromkeys(own[c] + self.popular)) for c in ranked}
        people = [c for c in ranked for _ in pools[c]]
        allowed = iter(self.keep(people, [a for c in ranked for a in pools[c]], already_bought=False))
        out = {}
        for customer, answer in ranked.items():
            kept = {a for a in pools[customer] if next(allowed) and a not in exclude}
            mine = set(own[customer])
            articles = live_lists(
                method,
                [a for a in own[customer] if a in kept],
                answer.article_ids,
                [a for a in self.popular if a in kept],
                k,
            )
            score = dict(zip(answer.article_ids, answer.scores, strict=True))
            source = dict(zip(answer.article_ids, answer.sources, strict=True))
            out[customer] = Recommendation(
                customer,
                articles,
                [float(score.get(a, 0.0)) for a in articles],
                [source.get(a, "repurchase" if a in mine else "popular") for a in articles],
                False,
            )
        return out

    def similar_items(self, article_id: str, k: int) -> list[tuple[str, float]]:
        """The visual neighbours of an article, closest first."""
        if article_id not in self.articles.index:
            raise UnknownArticleError(article_id)
        if self.similar is None:
            return []
        rows = self.similar[self.similar["article_id"] == article_id]
        rows = rows.sort_values(["similarity", "neighbour_id"], ascending=[False, True]).head(k)
        return list(zip(rows["neighbour_id"], rows["similarity"].astype(float), strict=True))


def _union(
    customer_ids: list[str],
    who: list[int],
    articles: list[str],
    slots: list[int],
    ranks: list[float],
    scores: list[float],
) -> Candidates:
    """Proposals (customer position, article, source slot, rank, score) → one row per (customer,
    article), with numpy instead of a dictionary per row (the batch path unions ~80 rows per customer).
    Slot `RANDOM_SLOT` marks random negatives: labelled "random" when no source proposed the article,
    and never a rank or score column."""
    width = len(SOURCES) + 1
    if not articles:
        empty = np.zeros((0, len(SOURCES)))
        return Candidates([], [], [], empty, empty.copy())
    code, names = pd.factorize(np.asarray(articles, dtype=object))
    pair = np.asarray(who, dtype=np.int64) * len(names) + code
    pairs, row = np.unique(pair, return_inverse=True)
    slot = np.asarray(slots, dtype=np.int64)
    best_rank = np.full((len(pairs), width), np.inf)
    np.minimum.at(best_rank, (row, slot), np.asarray(ranks, dtype=np.float64))
    best_score = np.full((len(pairs), width), -np.inf)
    np.maximum.at(best_score, (row, slot), np.asarray(scores, dtype=np.float64))
    present = best_rank != np.inf
    mask = present[:, : len(SOURCES)] @ (1 << np.arange(len(SOURCES)))
    labels = {int(m): sorted(s for i, s in enumerate(SOURCES) if m >> i & 1) for m in np.unique(mask)}
    labels[0] = [RANDOM_SOURCE]  # only random draws propose it
    present, best_rank, best_score = present[:, :-1], best_rank[:, :-1], best_score[:, :-1]
    return Candidates(
        np.asarray(customer_ids, dtype=object)[pairs // len(names)].tolist(),
        np.asarray(names, dtype=object)[pairs % len(names)].tolist(),
        [labels[m] for m in mask.tolist()],
        np.where(present, best_rank, np.nan),
        np.where(present, best_score, np.nan),
    )


def _key_table(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct `keys` in order, with each key's number of rows and the largest of its `values`."""
    if not len(keys):
        return keys, np.zeros(0, np.int64), np.zeros(0, values.dtype)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    counts = np.diff(np.append(starts, len(keys)))
    return ordered[starts], counts, np.maximum.reduceat(values[order], starts)


def _find(keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's position in the sorted `keys` and whether it is there (negative queries never are)."""
    if not len(keys):
        return np.zeros(len(queries), np.int64), np.zeros(len(queries), bool)
    at = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    return at, (keys[at] == queries) & (queries >= 0)


def purchase_histories(purchases: pd.DataFrame) -> dict[str, list[tuple[str, int]]]:
    """(customer_id, article_id, day) rows → each customer's (article_id, day) list, in row order."""
    return {
        c: list(zip(g["article_id"].tolist(), g["day"].tolist(), strict=True))
        for c, g in purchases.groupby("customer_id", sort=False)
    }


def day_number(day: Any) -> int:
    """Days since the week epoch (the snapshot's date encoding)."""
    return (pd.Timestamp(day).date() - EPOCH).days
