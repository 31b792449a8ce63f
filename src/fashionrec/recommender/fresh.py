"""What happened since the snapshot, read from the online store on every request (`fashionrec.online`):
purchases join the shopper's history (so the already-bought rule, repurchase, bought-together and the
query tower see them), stock changes reach the stock rule, new articles become searchable.

One primary-key read tells whether any batch landed since the last request; the catalogue-wide changes are
then read once (an indexed range) and kept; each request reads its own customers' purchases (one indexed
lookup). Events the snapshot already holds (`STREAMED_FILE`) are skipped, so nothing is counted twice.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd

from fashionrec.online.store import NO_BATCH, NewArticle, OnlineStore
from fashionrec.recommender.layout import GALLERY_FILE, STREAMED_FILE
from fashionrec.recommender.state import SnapshotState

# A new article joins the visual neighbours of this many catalogue articles (the snapshot's pairs per
# article), so shoppers who bought those get it from the visual source.
NEW_ARTICLE_NEIGHBOURS = 12
# Purchases this many days before the snapshot's history cut are still read: a purchase that reached the
# store after the snapshot was built, with an older date.
LOOKBACK_DAYS = 28


class FreshEvents(SnapshotState):
    """The online store's events applied to the loaded snapshot (`sync` before each answer)."""

    online: OnlineStore | None = None

    def attach_online_store(self, store: OnlineStore, folder: Path) -> None:
        """Read `store` before every answer from now on; `folder` is the snapshot's."""
        path = folder / STREAMED_FILE
        streamed = pd.read_parquet(path)["event_id"] if path.exists() else pd.Series([], dtype=object)
        self.online = store
        self.streamed: set[str] = set(streamed.astype(str))
        self.since_day = int(self.meta.get("personal", {}).get("history_week", self.week)) * 7 - LOOKBACK_DAYS
        self.online_batch = NO_BATCH
        self.applied_events: set[str] = set()
        self.fresh_customers: dict[str, int] = {}  # whose history changed since the snapshot: how often
        # Answers computed after the snapshot, reused like the stored ones while they stay right:
        # customer → (the customer's `fresh_customers` count then, articles, scores, sources).
        self.fresh_answers: dict[str, tuple[int, list[str], list[float], list[str]]] = {}
        self.restocked: set[str] = set()  # articles whose stock the store changed
        self.new_articles: dict[str, NewArticle] = {}
        self.new_neighbours: dict[str, list[tuple[str, float]]] = {}  # a new article's closest photos
        self._gallery_file = folder / GALLERY_FILE
        self._gallery: tuple[list[str], np.ndarray] | None = None
        self._sync_lock = threading.Lock()

    def sync(self, customer_ids: list[str]) -> None:
        """Apply the store's new catalogue-wide changes and these customers' new purchases."""
        if self.online is None:
            return
        with self._sync_lock:
            changes = self.online.changes_since(self.online_batch)
            for article, in_stock in changes.stock.items():
                code = self.code_of.get(article)
                if code is not None:
                    self.stock_out[code] = not in_stock
                    self.restocked.add(article)
            for new in changes.new_articles:
                self._add_article(new)
            self.online_batch = changes.batch_id
            known = [c for c in dict.fromkeys(customer_ids) if c in self.customer_row]
            changed = set()
            for purchase in self.online.purchases_of(known, self.since_day):
                if purchase.event_id in self.applied_events or purchase.event_id in self.streamed:
                    continue
                customer = purchase.customer_id
                # a new list, not an append: a batch computing from the old one keeps it whole
                self.history_rows[customer] = [
                    *self.history_rows.get(customer, []),
                    (purchase.article_id, purchase.day),
                ]
                self.applied_events.add(purchase.event_id)
                changed.add(customer)
            if changed:
                for customer in changed:
                    self.fresh_customers[customer] = self.fresh_customers.get(customer, 0) + 1
                self.forget_query_embeddings(changed)

    def _add_article(self, new: NewArticle) -> None:
        """A new article: its closest catalogue photos are its neighbours, and it becomes a visual
        candidate of theirs (a never-sold lookalike, like the snapshot's cold-start pairs)."""
        self.new_articles[new.article_id] = new
        if new.embedding is None or not self._gallery_file.exists():
            return
        if self._gallery is None:  # read on the first new article: most serving processes never see one
            with np.load(self._gallery_file, allow_pickle=False) as data:
                self._gallery = data["article_ids"].astype(str).tolist(), data["vectors"].astype(np.float32)
        ids, vectors = self._gallery
        if vectors.shape[1] != len(new.embedding):
            return  # embedded by another image model than the snapshot's gallery
        similarity = vectors @ new.embedding
        top = np.argsort(-similarity, kind="stable")[:NEW_ARTICLE_NEIGHBOURS]
        top = top[similarity[top] > 0]  # unit vectors: a photo pointing away is no lookalike
        self.new_neighbours[new.article_id] = [(ids[i], float(similarity[i])) for i in top]
        for i in top:
            self.cold_neighbours.setdefault(ids[i], []).append((new.article_id, float(similarity[i])))

    def forget_query_embeddings(self, customers: set[str]) -> None:
        """Hook: the core drops these customers' stored query embeddings (their history changed)."""

    def stale_stored(self, customer: str, articles: list[str]) -> bool:
        """Is a list computed before the store's events wrong now (new purchases, or an article sold out)?"""
        if self.online is None:
            return False
        if customer in self.fresh_customers:
            return True
        return self._sold_out_in(articles)

    def _sold_out_in(self, articles: list[str]) -> bool:
        if not self.restocked:
            return False
        codes = [self.code_of.get(a, -1) for a in articles]
        return bool(np.any([c >= 0 and self.stock_out[c] for c in codes]))

    def remember_answer(
        self, customer: str, articles: list[str], scores: list[float], sources: list[str]
    ) -> None:
        """Keep a default answer computed after the snapshot, for the customer's next requests."""
        if self.online is not None:
            self.fresh_answers[customer] = (self.fresh_customers.get(customer, 0), articles, scores, sources)

    def fresh_answer(self, customer: str, k: int) -> tuple[list[str], list[float], list[str]] | None:
        """A remembered answer (first k), while no purchase of the customer and no sell-out made it wrong."""
        found = self.fresh_answers.get(customer) if self.online is not None else None
        if found is None or len(found[1]) < k:
            return None
        count, articles, scores, sources = found
        if count != self.fresh_customers.get(customer, 0) or self._sold_out_in(articles):
            return None
        return articles[:k], scores[:k], sources[:k]
