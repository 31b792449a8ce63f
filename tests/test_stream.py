"""The stream job on real Spark and Delta: events into transactions, the catalogue and the online store
exactly once; bad events quarantined with their reason; a SIGKILLed stream restarted ends as if never
killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fashionrec.config import StreamParams
from fashionrec.config.tables import TableLocator, Tables
from fashionrec.data.events import make_events
from fashionrec.lake.tables import current_version, read_table
from fashionrec.online.store import open_store
from fashionrec.streaming.events_table import append_events
from fashionrec.streaming.replay import read_events
from fashionrec.streaming.task import run_stream
from tests.conftest import BRONZE_TABLES, REPO_ROOT, copy_folders


@pytest.fixture()
def day_of_events(tiny_data, tmp_path) -> pd.DataFrame:
    """60 generated events of the day after the tiny history (purchases, sell-outs, new articles)."""
    folder = tmp_path / "events"
    folder.mkdir()
    for name in ("transactions_train.csv", "articles.csv"):
        shutil.copy(tiny_data / name, folder / name)
    return read_events(make_events(folder, 60, new_articles=2, sell_outs=2))


def _params(lakehouse: Path, store_url: str, **more) -> StreamParams:
    return StreamParams(
        lakehouse=str(lakehouse),
        online_store=store_url,
        checkpoint_dir=str(lakehouse.parent / "checkpoints"),
        available_now=True,
        **more,
    )


def _bad_events(good: pd.DataFrame) -> pd.DataFrame:
    """One event per way of being wrong, each named by its event id."""
    purchase = good[good["type"] == "purchase"].iloc[0]
    row = {c: purchase[c] for c in ("customer_id", "article_id", "price", "event_time")}
    later = pd.Timestamp.now() + pd.Timedelta(days=2)
    return pd.DataFrame(
        [
            {**row, "event_id": "bad-type", "type": "refund"},
            {**row, "event_id": "bad-customer", "type": "purchase", "customer_id": "nobody"},
            {**row, "event_id": "bad-article", "type": "purchase", "article_id": "0000000001"},
            {**row, "event_id": "bad-future", "type": "purchase", "event_time": later},
            {**row, "event_id": "bad-price", "type": "purchase", "price": 0.0},
            {**row, "event_id": purchase["event_id"], "type": "purchase"},  # applied by the first batch
            {
                "event_id": "bad-json",
                "type": "new_article",
                "article_id": "0999999999",
                "article": "{oops",
                "event_time": row["event_time"],
            },
            {**row, "event_id": "twice", "type": "purchase"},
            {**row, "event_id": "twice", "type": "purchase"},
            {"event_id": None, "type": "purchase", **{k: v for k, v in row.items()}},
        ]
    )


def _event_rows(spark, tables: TableLocator) -> list[tuple]:
    tx = read_table(spark, tables, Tables.TRANSACTIONS).where("event_id IS NOT NULL")
    return sorted(
        tuple(r) for r in tx.select("event_id", "customer_id", "article_id", "t_dat", "price").collect()
    )


def test_events_applied_exactly_once_and_bad_ones_quarantined(
    spark, ingested_copy, day_of_events, online_store_url
):
    tables = TableLocator(str(ingested_copy))
    params = _params(ingested_copy, online_store_url)
    append_events(spark, tables, day_of_events.iloc[:40])
    append_events(spark, tables, day_of_events.iloc[40:])
    first = run_stream(params, spark)
    purchases = day_of_events[day_of_events["type"] == "purchase"]
    assert first["applied_purchase"] == len(purchases) and first["quarantined"] == 0
    assert first["applied_stock"] == 2 and first["applied_new_article"] == 2
    rows = _event_rows(spark, tables)
    assert [r[0] for r in rows] == sorted(purchases["event_id"])  # each purchase once, by its event id
    txn_version = current_version(spark, tables, Tables.TRANSACTIONS)

    # nothing new: nothing written; the same events again: duplicates, quarantined
    assert run_stream(params, spark)["batches"] == 0
    assert current_version(spark, tables, Tables.TRANSACTIONS) == txn_version
    bad = _bad_events(day_of_events)
    append_events(spark, tables, bad)
    second = run_stream(params, spark)
    assert second["applied_purchase"] == 1  # the first "twice"
    assert _event_rows(spark, tables) == sorted(
        [*rows, *[r for r in _event_rows(spark, tables) if r[0] == "twice"]]
    )
    quarantine = read_table(spark, tables, Tables.QUARANTINE).where("table = 'events'").toPandas()
    reasons = {
        json.loads(raw)["event_id"]: (col, why)
        for raw, col, why in zip(quarantine["raw"], quarantine["column"], quarantine["reason"], strict=True)
    }
    assert reasons["bad-type"][0] == "type" and "refund" in reasons["bad-type"][1]
    assert reasons["bad-customer"] == ("customer_id", "unknown customer nobody")
    assert reasons["bad-article"] == ("article_id", "unknown article 0000000001")
    assert reasons["bad-future"][0] == "event_time" and "future" in reasons["bad-future"][1]
    assert reasons["bad-price"][0] == "price"
    assert reasons["bad-json"][0] == "article" and "not JSON" in reasons["bad-json"][1]
    assert "applied in batch" in reasons[purchases["event_id"].iloc[0]][1]
    assert "twice in this batch" in reasons["twice"][1]
    assert reasons[None][0] == "event_id"
    assert len(quarantine) == len(bad) - 1

    with open_store(online_store_url) as store:
        held = store.dump()
        assert len(held["purchases"]) == len(purchases) + 1
        changes = store.changes_since(-1)
        assert changes.stock == {
            a: False for a in day_of_events.loc[day_of_events["type"] == "stock", "article_id"]
        }
        new_ids = set(day_of_events.loc[day_of_events["type"] == "new_article", "article_id"])
        assert {n.article_id for n in changes.new_articles} == new_ids
    articles = read_table(spark, tables, Tables.ARTICLES).toPandas().set_index("article_id")
    assert new_ids <= set(articles.index)
    availability = read_table(spark, tables, Tables.ARTICLE_AVAILABILITY).toPandas().set_index("article_id")
    assert (availability.loc[list(changes.stock), "in_stock"] == 0).all()


def _state(spark, lakehouse: Path, store_url: str) -> dict:
    tables = TableLocator(str(lakehouse))
    quarantine = read_table(spark, tables, Tables.QUARANTINE).where("table = 'events'")
    articles = read_table(spark, tables, Tables.ARTICLES)
    with open_store(store_url) as store:
        return {
            "transactions": sorted(
                tuple(r) for r in read_table(spark, tables, Tables.TRANSACTIONS).collect()
            ),
            "quarantine": sorted(tuple(r) for r in quarantine.drop("quarantined_at").collect()),
            "articles": sorted(tuple(r) for r in articles.collect()),
            "store": store.dump(),
        }


def test_a_killed_stream_restarted_ends_as_if_never_killed(spark, tiny_ingest, day_of_events, tmp_path):
    """SIGKILL in the middle of the batches, restart: the tables and the store equal an uninterrupted run's."""
    source, _ = tiny_ingest
    runs = {}
    chunks = [day_of_events.iloc[i : i + 12] for i in range(0, len(day_of_events), 12)]
    chunks[2] = pd.concat([chunks[2], _bad_events(day_of_events).iloc[:3]])
    for name in ("straight", "killed"):
        lakehouse = copy_folders(source, tmp_path / name / "lakehouse", BRONZE_TABLES)
        for chunk in chunks:
            append_events(spark, TableLocator(str(lakehouse)), chunk)
        runs[name] = (lakehouse, f"sqlite:///{tmp_path / name / 'online.db'}")
    lakehouse, url = runs["straight"]
    run_stream(_params(lakehouse, url, max_files_per_batch=1), spark)

    lakehouse, url = runs["killed"]
    params = _params(lakehouse, url, max_files_per_batch=1)
    env = {**os.environ, "FASHIONREC_DRIVER_MEMORY": "1g", "PYTHONPATH": str(REPO_ROOT / "src")}
    args = [
        sys.executable,
        "-m",
        "fashionrec",
        "stream",
        "--lakehouse",
        params.lakehouse,
        "--online-store",
        url,
        "--checkpoint-dir",
        params.checkpoint_dir,
        "--available-now",
        "true",
        "--max-files-per-batch",
        "1",
    ]
    process = subprocess.Popen(
        args, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    try:
        while True:  # kill it once two batches are in the store: the third may be half written
            assert process.poll() is None, (
                f"the stream ended before it was killed: {process.stderr.read()[-2000:]}"
            )
            if Path(url.removeprefix("sqlite:///")).exists():
                with open_store(url) as store:
                    if store.applied_batch() >= 1:
                        break
            assert time.monotonic() < deadline, "the stream applied no batch in 240 s"
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with open_store(url) as store:
        assert store.applied_batch() < len(chunks) - 1  # killed before the end
    run_stream(params, spark)  # the restart, from the checkpoint
    assert _state(spark, *runs["killed"]) == _state(spark, *runs["straight"])


def test_a_batch_in_the_store_but_not_in_the_tables_is_written_at_restart(
    spark, tiny_ingest, day_of_events, tmp_path, monkeypatch
):
    """The store is the Delta writes' write-ahead log: a batch whose table writes failed after its store
    commit is written from the store when the stream starts again."""
    from fashionrec.streaming.tables import TablesWriter

    source, _ = tiny_ingest
    runs = {}
    for name in ("straight", "cut"):
        lakehouse = copy_folders(source, tmp_path / name / "lakehouse", BRONZE_TABLES)
        for start in range(0, len(day_of_events), 20):
            append_events(spark, TableLocator(str(lakehouse)), day_of_events.iloc[start : start + 20])
        runs[name] = (lakehouse, f"sqlite:///{tmp_path / name / 'online.db'}")
    run_stream(_params(*runs["straight"], max_files_per_batch=1), spark)

    original = TablesWriter.write

    def failing(self, batch_ids: list[int]) -> None:
        if 1 in batch_ids:
            raise OSError("the cluster went away")
        original(self, batch_ids)

    monkeypatch.setattr(TablesWriter, "write", failing)
    with pytest.raises(Exception, match=r"Delta writes failed|went away"):
        run_stream(_params(*runs["cut"], max_files_per_batch=1), spark)
    with open_store(runs["cut"][1]) as store:
        assert store.tables_batch() < 1 <= store.applied_batch()
    monkeypatch.setattr(TablesWriter, "write", original)
    restart = run_stream(_params(*runs["cut"], max_files_per_batch=1), spark)
    assert restart["batches_recovered"] >= 1
    assert _state(spark, *runs["cut"]) == _state(spark, *runs["straight"])


def test_the_table_writes_of_a_busy_stream_are_coalesced_and_a_stop_does_not_wait(
    spark, tiny_ingest, tmp_path, monkeypatch
):
    """Batches applied within `tables_every_seconds` of the last Delta write wait for the next one, which
    writes them together; a stop writes what is queued at once."""
    from fashionrec.streaming.tables import TablesWriter

    source, _ = tiny_ingest
    lakehouse = copy_folders(source, tmp_path / "lakehouse", BRONZE_TABLES)
    written: list[tuple[list[int], float]] = []
    monkeypatch.setattr(TablesWriter, "write", lambda self, ids: written.append((ids, time.monotonic())))
    with open_store(f"sqlite:///{tmp_path / 'online.db'}") as store:
        writer = TablesWriter(spark, TableLocator(str(lakehouse)), store, "app", every_seconds=1.5)
        started = time.monotonic()
        for batch_id in range(4):
            writer.submit(batch_id)
            time.sleep(0.2)
        while len(written) < 2:
            assert time.monotonic() - started < 10, f"the second write never came: {written}"
            time.sleep(0.05)
        writer.submit(4)
        stopping = time.monotonic()
        writer.close()
    assert [ids for ids, _ in written] == [[0], [1, 2, 3], [4]]
    assert written[1][1] - written[0][1] >= 1.4  # the second write waited for the interval
    assert written[2][1] - stopping < 1.0  # the stop did not
