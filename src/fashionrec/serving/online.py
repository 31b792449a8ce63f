"""The online recommender: batch scoring's pipeline for a handful of customers, in memory.

Candidates (two-tower via the query tower and the FAISS index, repurchase, other colours, trending, age
band, visual cold start) → business filters → the ranker's features → XGBoost → diversity, from a
snapshot (`serving.snapshot`) loaded once. Each step mirrors its Spark twin in `ranking/`; the serving
tests check that a customer's answer equals their `recommendations` row.
"""

from __future__ import annotations

import json
import math
import time
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
from fashionrec.ranking.candidates import ABSENT_RANK, SOURCES
from fashionrec.ranking.features import FEATURES
from fashionrec.ranking.model import Ranker
from fashionrec.ranking.rank import rank_frame
from fashionrec.ranking.task import RANKER_DIR
from fashionrec.retrieval.queries import month_angle
from fashionrec.retrieval.task import INDEX_FILE
from fashionrec.serving.snapshot import FALLBACK_DEPTH

FALLBACK_SOURCE = "age_band_fallback"


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


def _top(frame: pd.DataFrame, by: str, n: int) -> pd.DataFrame:
    """Per customer, the `n` best rows by `by` descending, ties by article id (Spark's window order)."""
    ordered = frame.sort_values(["customer_id", by, "article_id"], ascending=[True, False, True])
    out = ordered.groupby("customer_id", sort=False).head(n)
    return out.assign(source_rank=out.groupby("customer_id", sort=False).cumcount() + 1)


class OnlineRecommender:
    """Loads the towers, the index, the ranker and the snapshot once; `recommend` does no disk I/O."""

    def __init__(self, snapshot_dir: str | Path, artifacts_dir: str | Path) -> None:
        from fashionrec.retrieval.index import ArticleIndex
        from fashionrec.retrieval.task import load_towers

        folder = Path(snapshot_dir)
        self.meta = json.loads((folder / "meta.json").read_text())
        self.week = int(self.meta["week"])
        pipeline = self.meta["pipeline"]
        self.rules = pipeline["rules"]
        self.counts = pipeline["candidates"]
        self.k, self.max_per_type = int(pipeline["k"]), int(pipeline["max_per_type"])
        self.first_day = self.week * 7
        purchases = pd.read_parquet(folder / "purchases.parquet")
        self.purchases = {c: g.drop(columns="customer_id") for c, g in purchases.groupby("customer_id")}
        self.customers = pd.read_parquet(folder / "customers.parquet").set_index("customer_id")
        self.articles = pd.read_parquet(folder / "articles.parquet").set_index("article_id")
        tops = pd.read_parquet(folder / "tops.parquet")
        trending = tops[tops["list"] == "trending"].sort_values("source_rank")
        self.trending = trending[["article_id", "source_rank", "source_score"]].reset_index(drop=True)
        bands = tops[tops["list"] == "age_band"].sort_values(["band", "source_rank"])
        self.bands = {
            int(b): g[["article_id", "source_rank", "source_score"]].reset_index(drop=True)
            for b, g in bands.groupby("band")
        }
        self.similar: pd.DataFrame | None = None
        if self.meta["has_similar"]:
            self.similar = pd.read_parquet(folder / "similar.parquet")
            cold = ~self.articles["has_sold"].reindex(self.similar["neighbour_id"]).fillna(False).to_numpy()
            self.cold_similar = self.similar[cold]
        artifacts = Path(artifacts_dir)
        self.query_encoder, _, _ = load_towers(artifacts)
        self.index = ArticleIndex.load(artifacts / INDEX_FILE)
        self.ranker = Ranker.load(artifacts / RANKER_DIR)
        self.month_sin, self.month_cos = month_angle(self.week)
        self.timer = StageTimer()

    # --- candidates -------------------------------------------------------------------------------
    def _history(self, customer_id: str) -> pd.DataFrame:
        return self.purchases.get(customer_id, _EMPTY)

    def _window(self, customer_id: str, weeks: int) -> pd.DataFrame:
        past = self._history(customer_id)
        return past[past["day"] // 7 >= self.week - weeks]

    def _two_tower(self, customer_ids: list[str]) -> pd.DataFrame:
        from fashionrec.retrieval.task import embed_queries

        histories, ages = [], []
        for customer in customer_ids:
            recent = self._window(customer, HISTORY_WEEKS)
            latest = recent.sort_values(["day", "article_id"], ascending=False).head(HISTORY_LENGTH)
            histories.append(latest["article_id"].tolist()[::-1])
            age = self.customers["age"].get(customer, np.nan)
            ages.append(None if age is None or (isinstance(age, float) and math.isnan(age)) else float(age))
        queries = pa.table(
            {
                "customer_id": pa.array(customer_ids, pa.string()),
                "age": pa.array(ages, pa.float64()),
                "month_sin": pa.array([self.month_sin] * len(customer_ids), pa.float64()),
                "month_cos": pa.array([self.month_cos] * len(customer_ids), pa.float64()),
                "history": pa.array(histories, pa.list_(pa.string())),
            }
        )
        with self.timer.stage("embed"):
            embeddings = embed_queries(self.query_encoder, queries)
        with self.timer.stage("ann"):
            scores, top = self.index.search(embeddings, self.counts["two_tower"])
        rows = [
            (customer, article, rank + 1, float(score))
            for customer, ids, values in zip(customer_ids, top, scores, strict=True)
            for rank, (article, score) in enumerate(zip(ids, values, strict=False))
        ]
        return pd.DataFrame(rows, columns=["customer_id", "article_id", "source_rank", "source_score"])

    def _personal_sources(self, customer: str) -> dict[str, pd.DataFrame]:
        weeks, out = self.counts.get("repurchase_weeks", 12), {}
        recent = self._window(customer, weeks).assign(customer_id=customer)
        if self.counts["repurchase"] > 0:
            bought = recent.groupby(["customer_id", "article_id"], as_index=False).agg(
                last=("day", "max"), source_score=("day", "size")
            )
            ordered = bought.sort_values(
                ["last", "source_score", "article_id"], ascending=[False, False, True]
            )
            top = ordered.head(self.counts["repurchase"])
            out["repurchase"] = top.assign(source_rank=np.arange(1, len(top) + 1))
        distinct = recent["article_id"].drop_duplicates()
        if self.counts["same_product"] > 0:
            codes = set(self.articles["attr_product"].reindex(distinct).dropna())
            siblings = self.articles[self.articles["attr_product"].isin(codes)]
            siblings = siblings[~siblings.index.isin(distinct)]
            frame = pd.DataFrame(
                {
                    "customer_id": customer,
                    "article_id": siblings.index,
                    "source_score": siblings["sales_4w_source"].fillna(0).to_numpy(dtype=np.float64),
                }
            )
            out["same_product"] = _top(frame, "source_score", self.counts["same_product"])
        if self.similar is not None and self.counts.get("visual", 0) > 0:
            pairs = self.cold_similar[self.cold_similar["article_id"].isin(distinct)]
            looks = pairs.groupby("neighbour_id", as_index=False)["similarity"].max()
            frame = pd.DataFrame(
                {
                    "customer_id": customer,
                    "article_id": looks["neighbour_id"],
                    "source_score": looks["similarity"],
                }
            )
            out["visual"] = _top(frame, "source_score", self.counts["visual"])
        return out

    def _band(self, customer: str) -> int:
        return int(self.customers["band"].get(customer, -1))

    def candidates(self, customer_ids: list[str]) -> pd.DataFrame:
        """`union_candidates` for warm customers: one row per (customer, article), rank/score per source."""
        parts: list[pd.DataFrame] = []
        if self.counts["two_tower"] > 0:
            parts.append(self._two_tower(customer_ids).assign(source="two_tower"))
        for customer in customer_ids:
            for source, frame in self._personal_sources(customer).items():
                parts.append(frame.assign(source=source))
            if self.counts["trending"] > 0:
                parts.append(self.trending.assign(customer_id=customer, source="trending"))
            if self.counts["age_band"] > 0:
                band = self.bands.get(self._band(customer), _EMPTY_LIST).head(self.counts["age_band"])
                parts.append(band.assign(customer_id=customer, source="age_band"))
        rows = pd.concat(
            [p[["customer_id", "article_id", "source", "source_rank", "source_score"]] for p in parts],
            ignore_index=True,
        )
        union = rows.groupby(["customer_id", "article_id"], sort=False).agg(
            sources=("source", lambda s: sorted(set(s)))
        )
        for source in SOURCES:
            hit = rows[rows["source"] == source].groupby(["customer_id", "article_id"])
            union[f"rank_{source}"] = hit["source_rank"].min()
            union[f"score_{source}"] = hit["source_score"].max()
        return union.reset_index()

    # --- filters ----------------------------------------------------------------------------------
    def keep(self, frame: pd.DataFrame) -> np.ndarray:
        """`apply_filters`'s keep column for rows (customer_id, article_id)."""
        keep = np.ones(len(frame), dtype=bool)
        weeks = int(self.rules.get("already_bought_weeks", 0))
        if weeks > 0:
            bought = {
                (c, a) for c in frame["customer_id"].unique() for a in self._window(c, weeks)["article_id"]
            }
            keep &= ~np.array(
                [(c, a) in bought for c, a in zip(frame["customer_id"], frame["article_id"], strict=True)]
            )
        if not self.meta["has_availability"]:
            return keep
        items = self.articles.reindex(frame["article_id"])
        people = self.customers.reindex(frame["customer_id"])
        if self.rules.get("out_of_stock", True):
            keep &= ~(items["in_stock"] == 0).to_numpy()
        if self.rules.get("region", True):
            regions = items["regions"].to_numpy()
            region = people["region"].to_numpy()
            outside = [
                isinstance(allowed, str)
                and bool(allowed)
                and isinstance(mine, str)
                and mine not in allowed.split(";")
                for allowed, mine in zip(regions, region, strict=True)
            ]
            keep &= ~np.array(outside, dtype=bool)
        if self.rules.get("age", True):
            too_young = people["age"].to_numpy() < items["min_age"].fillna(0).to_numpy()
            keep &= ~np.nan_to_num(too_young, nan=0).astype(bool)
        return keep

    # --- features ---------------------------------------------------------------------------------
    def features(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """`ranking_features` for the candidate rows: every column of FEATURES as float64."""
        out = candidates.copy()
        attrs = self.articles[["attr_product", "attr_type", "attr_colour"]]
        own = attrs.reindex(out["article_id"]).to_numpy()
        counts = {name: np.zeros(len(out)) for name in ("article", "product", "type", "colour")}
        since = {name: np.full(len(out), np.nan) for name in ("article", "product")}
        visual = np.zeros(len(out)) if self.similar is not None else np.full(len(out), np.nan)
        for customer, rows in out.groupby("customer_id").indices.items():
            past = self._history(customer)
            past = past[past["article_id"].isin(attrs.index)]  # Spark inner-joins the catalogue
            if past.empty:
                continue
            past_attrs = attrs.reindex(past["article_id"]).to_numpy()
            keys = {
                "article": past["article_id"].to_numpy(),
                "product": past_attrs[:, 0],
                "type": past_attrs[:, 1],
                "colour": past_attrs[:, 2],
            }
            mine = {
                "article": out["article_id"].to_numpy()[rows],
                "product": own[rows, 0],
                "type": own[rows, 1],
                "colour": own[rows, 2],
            }
            days = past["day"].to_numpy()
            for name, values in keys.items():
                frame = pd.DataFrame({"key": values, "day": days}).dropna(subset=["key"])
                grouped = frame.groupby("key")["day"]
                counts[name][rows] = pd.Series(mine[name]).map(grouped.size()).fillna(0).to_numpy()
                if name in since:
                    last = pd.Series(mine[name]).map(grouped.max()).to_numpy(dtype=np.float64)
                    since[name][rows] = self.first_day - last
            if self.similar is not None:
                pairs = self.similar[self.similar["article_id"].isin(set(keys["article"]))]
                best = pairs.groupby("neighbour_id")["similarity"].max()
                visual[rows] = pd.Series(mine["article"]).map(best).fillna(0.0).to_numpy()
        for name in counts:
            out[f"n_bought_{name}"] = counts[name]
        out["days_since_article"], out["days_since_product"] = since["article"], since["product"]
        out["visual_similarity"] = visual
        people = self.customers.reindex(out["customer_id"])
        for column in ("days_since_last_purchase", "n_purchases_1w", "n_purchases_4w", "n_purchases_12w"):
            out[column] = people[column].to_numpy(dtype=np.float64)
        for column in ("n_purchases_all", "spend_4w", "online_share", "customer_mean_price"):
            out[column] = people[column].to_numpy(dtype=np.float64)
        out["age"] = people["feature_age"].to_numpy(dtype=np.float64)
        items = self.articles.reindex(out["article_id"])
        for column in (
            "sales_1w",
            "sales_4w",
            "sales_all",
            "trend",
            "weeks_on_sale",
            "article_mean_price",
            "mean_buyer_age",
            "product_type_no",
            "index_group_no",
            "garment_group_no",
            "colour_group_code",
            "graphical_appearance_no",
        ):
            out[column] = items[column].to_numpy(dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = out["article_mean_price"] / out["customer_mean_price"]
        out["price_ratio"] = ratio.where(out["customer_mean_price"] != 0)  # Spark: x / 0 is null
        out["age_gap"] = out["age"] - out["mean_buyer_age"]
        out["n_sources"] = out["sources"].map(len).astype(np.float64)
        for source in SOURCES:
            out[f"rank_{source}"] = out[f"rank_{source}"].fillna(ABSENT_RANK)
        for column in FEATURES:
            out[column] = out[column].astype(np.float64)
        return out

    # --- the answer -------------------------------------------------------------------------------
    def is_warm(self, customer_id: str) -> bool:
        return customer_id in self.purchases

    def fallback(self, customer_id: str, k: int, exclude: set[str]) -> Recommendation:
        """Age-band best sellers (global ones for unknown customers), after the same filters."""
        listed = self.bands.get(self._band(customer_id), _EMPTY_LIST).head(FALLBACK_DEPTH * self.k)
        frame = listed.assign(customer_id=customer_id)
        frame = frame[self.keep(frame) & ~frame["article_id"].isin(exclude)].head(k)
        return Recommendation(
            customer_id,
            frame["article_id"].tolist(),
            frame["source_score"].astype(float).tolist(),
            [FALLBACK_SOURCE] * len(frame),
            True,
        )

    def recommend(
        self, customer_ids: list[str], k: int | None = None, exclude: set[str] | None = None
    ) -> list[Recommendation]:
        """Top-`k` (default: the pipeline's k) for each customer, in input order."""
        k, exclude = k or self.k, exclude or set()
        warm = [c for c in dict.fromkeys(customer_ids) if self.is_warm(c)]
        answers: dict[str, Recommendation] = {}
        if warm:
            with self.timer.stage("candidates"):
                candidates = self.candidates(warm)  # includes the "embed" and "ann" stages
            with self.timer.stage("filters"):
                candidates = candidates[self.keep(candidates) & ~candidates["article_id"].isin(exclude)]
            with self.timer.stage("features"):
                features = self.features(candidates)
            with self.timer.stage("rank"):
                ranked = rank_frame(features, self.ranker, k, self.max_per_type)
            for row in ranked.itertuples(index=False):
                answers[row.customer_id] = Recommendation(
                    row.customer_id, list(row.article_ids), list(row.scores), list(row.sources), False
                )
        return [answers[c] if c in answers else self.fallback(c, k, exclude) for c in customer_ids]

    def similar_items(self, article_id: str, k: int) -> list[tuple[str, float]]:
        """The visual neighbours of an article, closest first."""
        if article_id not in self.articles.index:
            raise UnknownArticleError(article_id)
        if self.similar is None:
            return []
        rows = self.similar[self.similar["article_id"] == article_id]
        rows = rows.sort_values(["similarity", "neighbour_id"], ascending=[False, True]).head(k)
        return list(zip(rows["neighbour_id"], rows["similarity"].astype(float), strict=True))


_EMPTY = pd.DataFrame({"article_id": pd.Series(dtype=str), "day": pd.Series(dtype=np.int32)})
_EMPTY_LIST = pd.DataFrame(
    {
        "article_id": pd.Series(dtype=str),
        "source_rank": pd.Series(dtype=np.int32),
        "source_score": pd.Series(dtype=np.float64),
    }
)


def day_number(day: Any) -> int:
    """Days since the week epoch (the snapshot's date encoding)."""
    return (pd.Timestamp(day).date() - EPOCH).days
