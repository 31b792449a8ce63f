"""The served core reading the online store (`recommender.fresh`) on the hand-written snapshot of
test_recommender: a purchase since the snapshot is bought, a sell-out is out of stock, an event the
snapshot already holds is not counted twice."""

from __future__ import annotations

import pandas as pd

from fashionrec.online.store import Purchase, StoreBatch, open_store
from fashionrec.recommender.layout import STREAMED_FILE
from fashionrec.recommender.pipeline import FilterRules
from tests.test_recommender import DAY, load, proposals


def _core(tmp_path, rules=None, availability=True):
    core = load(tmp_path, rules or FilterRules(12, True, False, False), availability=availability)
    store = open_store(f"sqlite:///{tmp_path / 'online.db'}")
    return core, store


def test_a_purchase_since_the_snapshot_counts_as_bought(tmp_path):
    core, store = _core(tmp_path)
    core.attach_online_store(store, tmp_path / "snapshot")
    assert "0300000002" not in proposals(core, "c1").get("repurchase", {})
    assert core.keep(["c1"], ["0300000002"]).all()
    store.apply(StoreBatch(0, ["e1"], [Purchase("e1", "c1", "0300000002", DAY + 1, 1.0)]))
    core.sync(["c1"])
    assert "0300000002" in proposals(core, "c1")["repurchase"]  # the repurchase source sees it
    assert not core.keep(["c1"], ["0300000002"]).any()  # the already-bought rule too
    assert core.stale_stored("c1", []) and not core.stale_stored("c2", ["0400000001"])
    core.sync(["c1"])  # read again: applied once
    assert [a for a, _ in core.history_rows["c1"]].count("0300000002") == 1
    assert core.history_rows["c2"] == load(tmp_path / "again").history_rows["c2"]  # others untouched


def test_a_sell_out_removes_the_article_and_a_restock_brings_it_back(tmp_path):
    core, store = _core(tmp_path)
    core.attach_online_store(store, tmp_path / "snapshot")
    assert core.keep(["c1"], ["0400000001"]).all()
    store.apply(StoreBatch(0, ["s1"], stock={"0400000001": False}))
    core.sync([])
    assert not core.keep(["c1"], ["0400000001"]).any()
    assert core.stale_stored("c2", ["0400000001"])  # a stored list holding it is computed again
    store.apply(StoreBatch(1, ["s2"], stock={"0400000001": True, "0100000002": True}))
    core.sync([])
    assert core.keep(
        ["c1", "c1"], ["0400000001", "0100000002"]
    ).all()  # back, and the snapshot's sell-out too


def test_events_the_snapshot_holds_are_not_counted_twice(tmp_path):
    core, store = _core(tmp_path)
    pd.DataFrame({"event_id": ["e1"]}).to_parquet(tmp_path / "snapshot" / STREAMED_FILE)
    core.attach_online_store(store, tmp_path / "snapshot")
    store.apply(
        StoreBatch(
            0,
            ["e1", "e2"],
            [Purchase("e1", "c1", "0300000002", DAY - 1, 1.0), Purchase("e2", "c1", "0200000002", DAY, 2.0)],
        )
    )
    core.sync(["c1"])
    bought = [a for a, _ in core.history_rows["c1"]]
    assert "0300000002" not in bought and bought.count("0200000002") == 1


def test_an_unknown_customer_stays_a_new_customer(tmp_path):
    core, store = _core(tmp_path)
    core.attach_online_store(store, tmp_path / "snapshot")
    store.apply(StoreBatch(0, ["e1"], [Purchase("e1", "stranger", "0300000002", DAY, 1.0)]))
    core.sync(["stranger"])
    assert not core.is_warm("stranger")


def test_a_new_article_gets_neighbours_and_reaches_buyers_of_lookalikes(tmp_path):
    import numpy as np

    from fashionrec.online.store import NewArticle
    from fashionrec.recommender.layout import GALLERY_FILE
    from tests.test_recommender import ARTICLES

    core, store = _core(tmp_path)
    ids = list(ARTICLES)
    vectors = np.eye(len(ids), dtype=np.float32)
    np.savez(tmp_path / "snapshot" / GALLERY_FILE, article_ids=np.asarray(ids), vectors=vectors)
    core.attach_online_store(store, tmp_path / "snapshot")
    looks = 0.9 * vectors[ids.index("0200000001")] + 0.1 * vectors[ids.index("0400000001")]
    new = NewArticle("0999000001", {"product_code": 999000, "prod_name": "New"}, looks, 5.0)
    store.apply(StoreBatch(0, ["n1"], new_articles=[new]))
    assert "0999000001" not in proposals(core, "c1").get("visual", {})
    similar = core.similar_items("0999000001", 2)  # reads the store itself
    assert [a for a, _ in similar] == ["0200000001", "0400000001"]
    assert similar[0][1] == np.float32(0.9)
    # c1 bought 0200000001 ten days ago: the new lookalike is a visual candidate for them
    assert "0999000001" in proposals(core, "c1")["visual"]
    assert "0999000001" not in proposals(core, "c2").get("visual", {})


def test_an_answer_computed_after_the_snapshot_is_reused_until_a_purchase_or_a_sell_out(tmp_path):
    core, store = _core(tmp_path)
    core.attach_online_store(store, tmp_path / "snapshot")
    core.remember_answer("c1", ["0400000001", "0300000002"], [0.9, 0.8], ["trending", "popular"])
    assert core.fresh_answer("c1", 2) == (["0400000001", "0300000002"], [0.9, 0.8], ["trending", "popular"])
    assert core.fresh_answer("c1", 3) is None  # shorter than asked: computed again
    store.apply(StoreBatch(0, ["e1"], [Purchase("e1", "c1", "0200000002", DAY, 1.0)]))
    core.sync(["c1"])
    assert core.fresh_answer("c1", 2) is None  # bought since
    core.remember_answer("c1", ["0400000001"], [0.9], ["trending"])
    assert core.fresh_answer("c1", 1) is not None
    store.apply(StoreBatch(1, ["s1"], stock={"0400000001": False}))
    core.sync([])
    assert core.fresh_answer("c1", 1) is None  # sold out since
