"""Candidate sources (`recommender.layout.SOURCES`): two-tower (query tower + FAISS index), repurchase,
other colours of bought products, trending, age-band best sellers, decayed popularity, articles bought
together with the customer's recent ones, best sellers of their product types weighted by their taste, and
visual cold start. Each proposes (article, rank, score) per customer; `candidates` unions them into one
row per (customer, article) with every source's rank and score.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from fashionrec.recommender.layout import RANDOM_SOURCE, SOURCES
from fashionrec.recommender.state import SnapshotState
from fashionrec.retrieval.towers import embed_queries
from fashionrec.weeks import HISTORY_LENGTH, HISTORY_WEEKS

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


def drawn_per_customer(customer_ids: list[str], n: int, count: int, seed: int) -> np.ndarray:
    """`count` random indices below `n` per customer, seeded by the customer's id and `seed`: the same
    for a customer whichever batch (Spark task, row order) it arrives in, so training rows repeat."""
    rows = [
        np.random.default_rng((seed, zlib.crc32(customer.encode()))).integers(0, n, count)
        for customer in customer_ids
    ]
    return np.array(rows, dtype=np.int64).reshape(len(customer_ids), count)


class CandidateSources(SnapshotState):
    """The sources, over the loaded snapshot (the query tower and index: `Recommender`)."""

    query_encoder: Any
    index: Any
    query_override: dict[str, np.ndarray]

    def _embed(self, customer_ids: list[str]) -> np.ndarray:
        """Query-tower embeddings, computed from the snapshot the way batch scoring computes them."""
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
            fresh = [c for c in dict.fromkeys(missing) if c not in self.query_override]
            if fresh:  # not in the snapshot's purchases, or bought since (`recommender.fresh`): embed now
                self.query_override.update(zip(fresh, self._embed(fresh), strict=True))
            if self.query_matrix.size:
                embeddings = self.query_matrix[np.maximum(rows, 0)]
            else:
                embeddings = np.zeros((len(rows), self.index.index.d), np.float32)
            for i, (customer, row) in enumerate(zip(customer_ids, rows, strict=True)):
                if row < 0:
                    embeddings[i] = self.query_override[customer]
        with self.timer.stage("ann"):
            scores, top = self.index.search(embeddings, self.counts.two_tower)
        return [
            [
                (article, rank, float(score))
                for rank, (article, score) in enumerate(zip(ids, values, strict=False), 1)
            ]
            for ids, values in zip(top, scores.tolist(), strict=True)
        ]

    @staticmethod
    def _best(scores: dict[str, float], n: int) -> list[tuple[str, int, float]]:
        """The `n` best (article, score) by score descending, ties by article id; with ranks from 1."""
        ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:n]
        return [(a, rank, score) for rank, (a, score) in enumerate(ordered, start=1)]

    def _personal_sources(self, customer: str) -> dict[str, list[tuple[str, int, float]]]:
        """Repurchase, other colours and visual cold start for one customer: (article, rank, score)."""
        recent, out = self._recent(customer, self.counts.repurchase_weeks), {}
        if self.counts.repurchase > 0:
            last: dict[str, int] = {}
            times: dict[str, int] = {}
            for article, day in recent:
                last[article] = max(day, last.get(article, day))
                times[article] = times.get(article, 0) + 1
            ordered = sorted(last, key=lambda a: (-last[a], -times[a], a))[: self.counts.repurchase]
            out["repurchase"] = [(a, rank, float(times[a])) for rank, a in enumerate(ordered, start=1)]
        distinct = {a for a, _ in recent}
        if self.counts.same_product > 0:
            out["same_product"] = self._other_colours(recent, distinct)
        if self.similar is not None and self.counts.visual > 0:
            looks: dict[str, float] = {}
            for article in distinct:
                for neighbour, similarity in self.cold_neighbours.get(article, []):
                    looks[neighbour] = max(similarity, looks.get(neighbour, similarity))
            out["visual"] = self._best(looks, self.counts.visual)
        if self.together and self.counts.bought_together > 0:
            together: dict[str, float] = {}
            for article in distinct:
                for other, count in self.together.get(article, []):
                    if other not in distinct:
                        together[other] = together.get(other, 0.0) + count
            out["bought_together"] = self._best(together, self.counts.bought_together)
        if self.type_rows and self.counts.favourite_type > 0:
            out["favourite_type"] = self._favourite_types(customer)
        return out

    def _other_colours(self, recent: list[tuple[str, int]], bought: set[str]) -> list[tuple[str, int, float]]:
        """Other colours of the customer's products, best 4-week sellers first and, among equals, those of
        the most recently bought product first: most colours of a real catalogue never sold to the
        shoppers seen, so the tie-break decides the list (docs/journal.md, "other colours in the order real
        shoppers buy them"). Score: the 4-week sales."""
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
            (a, rank, sales) for rank, (a, (sales, _)) in enumerate(ordered[: self.counts.same_product], 1)
        ]

    def _favourite_types(self, customer: str) -> list[tuple[str, int, float]]:
        """Best sellers of the product types the customer bought, weighted by their taste: decayed sales
        × the customer's share of the article's type × smoothed shares of its colour and department in
        their whole history (a missing code counts as never bought).

        Why: shoppers keep to their types, colours and departments; against the two favourite types' best
        sellers by sales alone, see docs/journal.md, "best sellers weighted by the shopper's taste"."""
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
        top = np.argsort(-score, kind="stable")[: self.counts.favourite_type]
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
        trending = self.trending_rows[: self.counts.trending]
        popular = self.popular_rows[: self.counts.popular]
        for person, customer in enumerate(customer_ids):
            for source, found in self._personal_sources(customer).items():
                add(person, source, found)
            add(person, "trending", trending)
            add(person, "popular", popular)
            add(person, "age_band", self.band_rows.get(self._band(customer), [])[: self.counts.age_band])
        if random_negatives > 0:
            drawn = drawn_per_customer(customer_ids, len(self.articles), random_negatives, seed)
            for person, row in enumerate(drawn):
                who.extend([person] * len(row))
                articles.extend(self.articles.index[row])
                slots.extend([RANDOM_SLOT] * len(row))
                ranks.extend([1.0] * len(row))
                scores.extend([0.0] * len(row))
        return _union(customer_ids, who, articles, slots, ranks, scores)


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
