"""The recommender core: candidates → business rules → ranker features → XGBoost → diversity → the live
method, for a batch of customers, in memory, from a snapshot (`snapshot.build`) loaded once.

It is the one implementation of every per-customer step. The ranker's training rows and the backtest's
and `train_ranker`'s lists (`ranking.frames`, on Spark through `mapInPandas`), `batch_score` (also
`mapInPandas`) and the served pyfunc all call it, so what the ranker learned from is what it is asked
about, and every offline figure is a figure of the served code.

The steps live in their own modules: `state` (the loaded snapshot and its lookups), `sources` (candidate
sources), `rules` (business rules), `features` (the ranker's features); `Recommender` joins them with the
models and answers.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionrec.online.store import OnlineStore
from fashionrec.recommender.features import RankerFeatures
from fashionrec.recommender.fresh import FreshEvents
from fashionrec.recommender.layout import FALLBACK_DEPTH, QUERY_FILE, RANKER_DIR
from fashionrec.recommender.live import BASELINE_ALL, PIPELINE, SERVED_BASELINES, live_lists, own_recent
from fashionrec.recommender.pipeline import PipelineConfig
from fashionrec.recommender.rank import rank_arrays
from fashionrec.recommender.ranker import Ranker
from fashionrec.recommender.rules import BusinessRules
from fashionrec.recommender.sources import CandidateSources
from fashionrec.recommender.state import CUSTOMER_COLUMNS, purchase_histories
from fashionrec.recommender.stored import ANSWERS_FILE, StoredAnswers
from fashionrec.retrieval.index import ArticleIndex
from fashionrec.retrieval.towers import INDEX_FILE, load_query_tower
from fashionrec.weeks import month_angle

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


class Recommender(CandidateSources, BusinessRules, RankerFeatures, FreshEvents):
    """Loads the snapshot, the towers, the index and the ranker once; `recommend` does no disk I/O."""

    def __init__(
        self,
        snapshot_dir: str | Path,
        artifacts_dir: str | Path,
        customers: bool = True,
        ranker: bool = True,
        config: PipelineConfig | None = None,
        ranker_dir: str | Path | None = None,
        online_store: OnlineStore | None = None,
    ) -> None:
        """Load the global half of the snapshot (articles, lists, neighbours) and the models; with
        `customers`, also its personal half (every customer's purchases and features: online serving).
        Batch scoring and training pass `customers=False` and hand each batch's customers to
        `use_customers`; training passes `ranker=False` (it computes the ranker's rows). The towers and
        the index load only when the two-tower source is on. `config` replaces the snapshot's pipeline
        config and `ranker_dir` the artifacts' ranker (the backtest's folds). With `online_store`, every
        answer first reads what happened since the snapshot (`recommender.fresh`)."""
        folder = Path(snapshot_dir)
        self.load_snapshot(folder, config)
        self.artifacts_dir = Path(artifacts_dir)
        self.uses_two_tower = self.counts.two_tower > 0
        self._query_tower: Any = None  # loaded on the first customer without a stored embedding
        if self.uses_two_tower:
            self.index = ArticleIndex.load(self.artifacts_dir / INDEX_FILE)
        ranker_folder = Path(ranker_dir) if ranker_dir is not None else self.artifacts_dir / RANKER_DIR
        self.ranker: Ranker | None = Ranker.load(ranker_folder).single_threaded() if ranker else None
        self.month_sin, self.month_cos = month_angle(self.week)
        self.timer = StageTimer()
        self.stored: StoredAnswers | None = None
        if customers:
            # Hashing the personal half is only worth it when something stored must match it.
            stored = any((folder / name).exists() for name in (QUERY_FILE, ANSWERS_FILE))
            fingerprint = snapshot_fingerprint(folder) if stored else ""
            self.use_customers(
                pd.read_parquet(folder / "customers.parquet"),
                purchase_histories(pd.read_parquet(folder / "purchases.parquet")),
                stored_query_embeddings(folder, fingerprint) if self.uses_two_tower else None,
            )
            self.stored = StoredAnswers.load(folder, fingerprint) if ranker and ranker_dir is None else None
            if online_store is not None:
                self.attach_online_store(online_store, folder)
        else:
            columns = ["customer_id", "age", "band", "region", *CUSTOMER_COLUMNS]
            self.use_customers(pd.DataFrame(columns=columns), {})

    def forget_query_embeddings(self, customers: set[str]) -> None:
        """Their history changed: embed them again on their next request."""
        for customer in customers:
            self.query_row.pop(customer, None)
            self.query_override.pop(customer, None)

    @property
    def query_encoder(self) -> Any:
        """The query tower, loaded on first use: a served model whose snapshot carries every customer's
        embedding (`write_query_embeddings`) starts without TensorFlow for it."""
        if self._query_tower is None:
            self._query_tower = load_query_tower(self.artifacts_dir)
        return self._query_tower

    def use_customers(
        self,
        customers: pd.DataFrame,
        histories: dict[str, list[tuple[str, int]]],
        embeddings: tuple[list[str], np.ndarray] | None = None,
    ) -> None:
        """The personal half: customers' snapshot rows (`customer_id` and the snapshot's customer
        columns), their purchases before the week as (article_id, day number) lists and, when the
        snapshot stores them, their query embeddings (ids, matrix)."""
        self.customers = customers.set_index("customer_id")
        self.history_rows = histories
        self._customer_lookups()
        # A query embedding depends only on the snapshot (history, age, the week's month): computed once
        # in batches (here, or by `register` into the snapshot), it spares each request a TensorFlow call.
        self.query_override: dict[str, np.ndarray] = {}  # embedded after load (`recommender.fresh`)
        if embeddings is not None:
            ids, matrix = embeddings
            self.query_row, self.query_matrix = {c: i for i, c in enumerate(ids)}, matrix
            return
        warm = sorted(histories) if self.uses_two_tower else []
        self.query_row = {c: i for i, c in enumerate(warm)}
        self.query_matrix = self._embed(warm) if warm else np.zeros((0, 0), np.float32)

    # --- the answer -------------------------------------------------------------------------------
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
        (`recommender.live`; `method` overrides it, e.g. "pipeline" for the ranker's lists alone)."""
        k, exclude = k or self.k, exclude or set()
        answers: dict[str, Recommendation] = {}
        if self.online is not None:
            with self.timer.stage("online"):
                self.sync(customer_ids)
        default = method in (None, self.live) and not exclude
        if default and self.stored is not None and k <= self.stored.k:
            with self.timer.stage("stored"):
                for customer in dict.fromkeys(customer_ids):
                    found = self.stored.get(customer, k)
                    if found is not None and not self.stale_stored(customer, found[0]):
                        answers[customer] = Recommendation(customer, *found, False)
        if default and self.online is not None:
            for customer in dict.fromkeys(customer_ids):
                remembered = self.fresh_answer(customer, k) if customer not in answers else None
                if remembered is not None:
                    answers[customer] = Recommendation(customer, *remembered, False)
        method = method or self.live
        warm = [c for c in dict.fromkeys(customer_ids) if c not in answers and self.is_warm(c)]
        computed = self._computed(warm, method, k, exclude)
        if default and self.online is not None:
            for customer, answer in computed.items():
                self.remember_answer(customer, answer.article_ids, answer.scores, answer.sources)
        answers |= computed
        return [answers[c] if c in answers else self.fallback(c, k, exclude) for c in customer_ids]

    def _computed(self, warm: list[str], method: str, k: int, exclude: set[str]) -> dict[str, Recommendation]:
        """The answers of customers with purchases, computed: candidates, rules, features, ranker,
        diversity, then the live method."""
        ranked_k = k if method == PIPELINE else 2 * k  # a blend may drop ranked articles it already holds
        answers: dict[str, Recommendation] = {}
        if warm and self.ranker is None and method not in SERVED_BASELINES:
            raise ValueError("this Recommender was loaded without a ranker: it computes candidates only")
        if warm and method in SERVED_BASELINES:  # a baseline ranks nothing: its lists alone
            with self.timer.stage("live"):
                nothing = {c: Recommendation(c, [], [], [], False) for c in warm}
                answers = self._live(method, nothing, k, exclude)
        elif warm and self.ranker is not None:
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
        return answers

    def _live(
        self, method: str, ranked: dict[str, Recommendation], k: int, exclude: set[str]
    ) -> dict[str, Recommendation]:
        """The live method's lists from the ranker's: own recent articles and the baseline's popular list
        pass the business rules (not the already-bought one) and `exclude`, as the ranked ones did. One
        `keep` call for the whole batch."""
        history = self.history_rows
        own = {c: own_recent(history.get(c, []), self.first_day, k) for c in ranked}
        ever = method == BASELINE_ALL  # only that method reads the whole history
        own_all = {c: own_recent(history.get(c, []), self.first_day, k, None) if ever else [] for c in ranked}
        pools = {c: list(dict.fromkeys(own[c] + own_all[c] + self.popular + self.last_week)) for c in ranked}
        people = [c for c in ranked for _ in pools[c]]
        allowed = iter(self.keep(people, [a for c in ranked for a in pools[c]], already_bought_weeks=0))
        out = {}
        for customer, answer in ranked.items():
            kept = {a for a in pools[customer] if next(allowed) and a not in exclude}
            mine = set(own[customer]) | set(own_all[customer])
            articles = live_lists(
                method,
                [a for a in own[customer] if a in kept],
                answer.article_ids,
                [a for a in self.popular if a in kept],
                k,
                [a for a in own_all[customer] if a in kept],
                [a for a in self.last_week if a in kept],
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
        """The visual neighbours of an article, closest first (of an article added since the snapshot:
        the catalogue articles whose photos are closest to its photo)."""
        if self.online is not None and article_id not in self.articles.index:
            self.sync([])
            if article_id in self.new_articles:
                return self.new_neighbours.get(article_id, [])[:k]
        if article_id not in self.articles.index:
            raise UnknownArticleError(article_id)
        if self.similar is None:
            return []
        rows = self.similar[self.similar["article_id"] == article_id]
        rows = rows.sort_values(["similarity", "neighbour_id"], ascending=[False, True]).head(k)
        return list(zip(rows["neighbour_id"], rows["similarity"].astype(float), strict=True))


def snapshot_fingerprint(folder: Path) -> str:
    """A digest of the snapshot's personal half: stored embeddings are used only with the files they
    were computed from."""
    digest = hashlib.sha256()
    for name in ("purchases.parquet", "customers.parquet", "meta.json"):
        with open(folder / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_query_embeddings(snapshot_dir: str | Path, artifacts_dir: str | Path) -> int:
    """Store every warm customer's query embedding in the snapshot (`QUERY_FILE`), computed as serving
    would compute them at load, with the digest of the files they come from; returns how many (0
    without the two-tower source, and nothing is written)."""
    folder = Path(snapshot_dir)
    core = Recommender(folder, artifacts_dir, customers=True, ranker=False)
    if not core.uses_two_tower:
        return 0
    ids = sorted(core.query_row, key=core.query_row.__getitem__)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz", delete=False) as handle:
        np.savez(
            handle,
            customer_ids=np.asarray(ids, dtype=str),
            vectors=core.query_matrix,
            fingerprint=np.asarray(snapshot_fingerprint(folder)),
        )
    os.replace(handle.name, folder / QUERY_FILE)  # readers see the old file or the new one
    return len(ids)


def stored_query_embeddings(folder: Path, fingerprint: str) -> tuple[list[str], np.ndarray] | None:
    """The snapshot's stored query embeddings (ids, matrix), or None when it has none or they were
    computed from other files (`fingerprint`: those of the snapshot; then the core embeds at load)."""
    path = folder / QUERY_FILE
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        if str(data["fingerprint"]) != fingerprint:
            return None
        return data["customer_ids"].astype(str).tolist(), data["vectors"]
