"""The online store's contract on both backends (SQLite file; a real PostgreSQL server the session starts)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fashionrec.online.store import NO_BATCH, NewArticle, Purchase, StoreBatch, open_store


def _batch(batch_id: int, *purchases: Purchase, stock=None, new=()) -> StoreBatch:
    ids = [p.event_id for p in purchases] + [f"s{batch_id}-{a}" for a in (stock or {})]
    ids += [f"n-{n.article_id}" for n in new]
    return StoreBatch(batch_id, ids, purchases, stock or {}, new)


def test_batches_apply_once_and_read_back(online_store_url):
    with open_store(online_store_url) as store:
        assert store.applied_batch() == NO_BATCH
        vector = np.arange(4, dtype=np.float32) / 7
        first = _batch(
            0,
            Purchase("e1", "c1", "a1", 100, 1.5),
            Purchase("e2", "c2", "a2", 101, 2.5),
            stock={"a3": False},
            new=[NewArticle("n1", {"prod_name": "Dress", "product_code": 9}, vector, 3.0)],
        )
        assert store.apply(first)
        assert not store.apply(first)  # a replayed batch writes nothing
        assert store.applied_batch() == 0
        assert store.purchases_of(["c1", "c9"], since_day=0) == [Purchase("e1", "c1", "a1", 100, 1.5)]
        assert store.purchases_of(["c1"], since_day=101) == []
        changes = store.changes_since(NO_BATCH)
        assert changes.batch_id == 0 and changes.stock == {"a3": False}
        (new,) = changes.new_articles
        assert new.article_id == "n1" and new.catalogue["prod_name"] == "Dress"
        np.testing.assert_array_equal(new.embedding, vector)
        assert store.changes_since(0).stock == {} and store.changes_since(0).new_articles == []
        assert store.apply(_batch(1, Purchase("e3", "c1", "a2", 102, 4.0), stock={"a3": True}))
        assert store.changes_since(0).stock == {"a3": True}
        assert [p.event_id for p in store.purchases_of(["c1"], 0)] == ["e1", "e3"]
        # batch 0's events are duplicates for batch 1 and later, not for a replay of batch 0
        assert store.seen_before(["e1", "e3", "zz"], 1) == {"e1": 0}
        assert store.seen_before(["e1"], 0) == {}


def test_a_failed_batch_leaves_nothing(online_store_url):
    with open_store(online_store_url) as store:
        store.apply(_batch(0, Purchase("e1", "c1", "a1", 100, 1.0)))
        before = store.dump()
        bad = StoreBatch(1, ["e2"], [Purchase("e2", "c1", None, 100, 1.0)])  # type: ignore[arg-type]
        with pytest.raises(Exception, match=r"(?i)null"):
            store.apply(bad)
        assert store.dump() == before and store.applied_batch() == 0


def test_readers_in_threads_see_each_commit(online_store_url):
    """Serving threads read while the stream writes: each read sees whole batches."""
    with open_store(online_store_url) as store:
        seen: list[int] = []
        stop = threading.Event()

        def read() -> None:
            reader = open_store(online_store_url)
            while not stop.is_set():
                count = len(reader.purchases_of(["c1"], 0))
                seen.append(count)
            reader.close()

        thread = threading.Thread(target=read)
        thread.start()
        for b in range(20):
            store.apply(_batch(b, Purchase(f"e{b}a", "c1", "a1", 1, b), Purchase(f"e{b}b", "c1", "a2", 1, b)))
        stop.set()
        thread.join()
        assert all(count % 2 == 0 for count in seen)  # never half a batch
        assert len(store.purchases_of(["c1"], 0)) == 40


def test_bad_url_is_a_clear_error():
    with pytest.raises(ValueError, match="expected sqlite"):
        open_store("redis://localhost")
