"""`fashionrec stream` (bundle job `fashionrec_stream`, continuous): the shop's `events` table, read as a
Delta change feed by Structured Streaming in micro-batches of about a second, into the online store, then
`transactions`, `articles`, `article_availability` and `quarantine`, each exactly once.

Per micro-batch (`EventSink`):
1. validate (`streaming.events`): the bad events keep their field and reason;
2. the online store, in one database transaction that records the batch id and everything the batch
   decided (served answers change here);
3. the Delta writes of the batch (`streaming.tables.TablesWriter`) on a background thread, in batch order,
   so the next micro-batch does not wait for four Delta commits. The store is their write-ahead log: it
   records the last batch whose Delta writes are done, and a restarted stream first writes the batches
   after it again (each write is idempotent: purchases appended with `txnAppId` / `txnVersion` = the batch
   id, the rest MERGEd by key).
A crash before the store's commit replays the batch from the checkpoint with the same verdicts (a
function of the batch and of what earlier batches applied); a crash after it is finished from the store.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config import StreamParams
from fashionrec.config.tables import TableLocator, Tables
from fashionrec.lake.ingest import ensure_event_id_column
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, read_table, table_exists
from fashionrec.online.store import NewArticle, OnlineStore, Purchase, Rejected, StoreBatch, open_store
from fashionrec.streaming.events import (
    EVENT_COLUMNS,
    NEW_ARTICLE,
    PURCHASE,
    STOCK,
    event_json,
    validate_events,
)
from fashionrec.streaming.events_table import ensure_events_table
from fashionrec.streaming.tables import TablesWriter
from fashionrec.weeks import EPOCH

log = logging.getLogger(__name__)
DEFAULT_CHANNEL = 2  # an event without a sales channel: online (H&M's 2)


class KnownIds:
    """A table's ids, read once and again only when an unknown id shows up after the table changed: the
    table's version is looked up at most once a micro-batch (`new_batch`), however many unknown ids it
    holds."""

    def __init__(self, spark: SparkSession, tables: TableLocator, table: str, column: str) -> None:
        self.spark, self.tables, self.table, self.column = spark, tables, table, column
        self.version: int | None = None
        self.ids: set[str] = set()
        self.reload()

    def new_batch(self) -> None:
        self._looked = False

    def reload(self) -> None:
        self._looked = True
        version = current_version(self.spark, self.tables, self.table)
        if version is not None and version != self.version:
            frame = read_table(self.spark, self.tables, self.table, version).select(self.column).toPandas()
            self.ids, self.version = set(frame[self.column].astype(str)), version

    def __contains__(self, value: str) -> bool:
        if value not in self.ids and not self._looked:
            self.reload()
        return value in self.ids


@dataclass
class StreamFigures:
    batches: int = 0
    events: int = 0
    accepted: dict[str, int] = field(default_factory=lambda: {PURCHASE: 0, STOCK: 0, NEW_ARTICLE: 0})
    quarantined: int = 0
    seconds: float = 0.0


class EventSink:
    """The `foreachBatch` function: one micro-batch's verdicts, store and table writes."""

    def __init__(self, spark: SparkSession, params: StreamParams, store: OnlineStore) -> None:
        self.spark, self.params, self.store, self.tables = spark, params, store, params.tables
        self.customers = KnownIds(spark, self.tables, Tables.CUSTOMERS, "customer_id")
        self.catalogue = KnownIds(spark, self.tables, Tables.ARTICLES, "article_id")
        # Idempotent appends are keyed by the application id: one per checkpoint (one per stream).
        app_id = "fashionrec-events-" + hashlib.sha256(params.checkpoint().encode()).hexdigest()[:16]
        self.figures = StreamFigures()
        self._encoder: Any = None
        self.writer = TablesWriter(
            spark,
            self.tables,
            store,
            app_id,
            on_articles=self.catalogue.reload,
            every_seconds=0.0 if params.available_now else params.tables_every_seconds,
        )

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.perf_counter()
        rows = (
            batch.where(F.col("_change_type") == "insert")
            .select(
                *EVENT_COLUMNS,
                F.col("_commit_timestamp").alias("appended_at"),
                F.col("_commit_version").alias("events_version"),
            )
            .toPandas()
        )
        if rows.empty:
            return
        self.customers.new_batch()
        self.catalogue.new_batch()
        added = self.store.article_batches()
        earlier = {a for a, b in added.items() if b < batch_id}
        this_batch = {a for a, b in added.items() if b >= batch_id}  # a replay's own new articles

        def known_article(article: str) -> bool:
            return article in earlier or (article not in this_batch and article in self.catalogue)

        verdicts = validate_events(
            rows,
            known_customer=self.customers.__contains__,
            known_article=known_article,
            seen_before=self.store.seen_before(rows["event_id"].dropna().astype(str), batch_id),
            photo_exists=os.path.isfile,
        )
        accepted = verdicts.accepted
        read = time.perf_counter()
        store_batch = self._store_batch(batch_id, accepted, verdicts.rejected)
        self.store.apply(store_batch)
        stored = time.perf_counter()
        self.writer.submit(batch_id)
        figures = self.figures
        figures.batches += 1
        figures.events += len(rows)
        for kind, count in accepted["type"].value_counts().items():
            figures.accepted[str(kind)] += int(count)
        figures.quarantined += len(verdicts.rejected)
        seconds = time.perf_counter() - started
        figures.seconds += seconds
        print(
            f"{_clock()} stream batch {batch_id}: {len(rows)} events, {len(accepted)} applied, "
            f"{len(verdicts.rejected)} quarantined, {seconds:.2f} s (read and validate "
            f"{read - started:.2f}, online store {stored - read:.2f}; tables behind by "
            f"{self.writer.behind()} batch(es))",
            flush=True,
        )

    # --- the online store -------------------------------------------------------------------------
    def _store_batch(self, batch_id: int, accepted: pd.DataFrame, rejected: pd.DataFrame) -> StoreBatch:
        purchases = accepted[accepted["type"] == PURCHASE]
        stock = accepted[accepted["type"] == STOCK]
        new = accepted[accepted["type"] == NEW_ARTICLE]
        return StoreBatch(
            batch_id,
            accepted["event_id"].tolist(),
            [
                Purchase(e, c, a, _day(t), _seconds(t), float(p), DEFAULT_CHANNEL if pd.isna(ch) else int(ch))
                for e, c, a, t, p, ch in zip(
                    purchases["event_id"],
                    purchases["customer_id"],
                    purchases["article_id"],
                    purchases["event_time"],
                    purchases["price"],
                    purchases["sales_channel_id"],
                    strict=True,
                )
            ],
            {a: bool(int(v)) for a, v in zip(stock["article_id"], stock["in_stock"], strict=True)},
            [
                NewArticle(a, row, self._embed(photo), _seconds(t))
                for a, row, photo, t in zip(
                    new["article_id"], new["catalogue"], new["photo_path"], new["event_time"], strict=True
                )
            ],
            [
                Rejected(
                    f"{Tables.EVENTS} version {int(row['events_version'])}",
                    row["column"],
                    row["reason"],
                    event_json(row),
                )
                for _, row in rejected.iterrows()
            ],
        )

    def load_encoder(self) -> None:
        """Load the image encoder and run it once now (a continuous stream: its first new article does not
        hold a micro-batch for the load and TensorFlow's first call, seconds on a busy machine)."""
        self._embed("")
        if self._encoder:
            from fashionrec.similarity.encoder import embed_photo

            embed_photo(self._encoder, np.zeros((64, 64, 3), np.uint8))

    def _embed(self, photo: Any) -> np.ndarray | None:
        """The image encoder's unit vector of a new article's photo (None without a photo or a model)."""
        if self._encoder is None:
            from fashionrec.similarity.encoder import ENCODER_DIR, load

            folder = os.path.join(self.params.artifacts_dir, str(ENCODER_DIR))
            self._encoder = load(folder) if os.path.isfile(os.path.join(folder, "saved_model.pb")) else False
        if self._encoder is False or not isinstance(photo, str) or not photo:
            return None
        from fashionrec.serving.requests import decode_photo
        from fashionrec.similarity.encoder import embed_photo

        with open(photo, "rb") as handle:  # decoded and embedded as a photo request is (search by photo)
            pixels = decode_photo(base64.b64encode(handle.read()).decode(), 0)
        return embed_photo(self._encoder, pixels).astype(np.float32)


def _clock() -> str:
    return time.strftime("%H:%M:%S")


def _day(when: Any) -> int:
    return (pd.Timestamp(when).date() - EPOCH).days


def _seconds(when: Any) -> float:
    stamp = pd.Timestamp(when)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return float(stamp.timestamp())


def _stop_signal() -> threading.Event:
    """Set on SIGTERM (a cancelled job run, `kill`): the stream stops after its batch, and the Delta writes of
    every batch in the store are finished before the process ends."""
    stopping = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    return stopping


def _report_progress(progress: dict[str, Any] | None, reported: int) -> int:
    """Print where the last micro-batch's time went (Structured Streaming's `durationMs`), once a batch:
    the planning around `addBatch` (the sink) is where a busy machine shows."""
    if not progress:
        return reported
    batch = progress.get("batchId", -1)
    if batch <= reported or not progress.get("numInputRows"):
        return max(reported, batch)
    durations = progress.get("durationMs", {})
    parts = ", ".join(f"{k} {v}" for k, v in durations.items() if k != "triggerExecution")
    print(
        f"{_clock()} stream trigger {batch}: {durations.get('triggerExecution')} ms ({parts})",
        flush=True,
    )
    return batch


def start_stream(spark: SparkSession, params: StreamParams, sink: EventSink) -> Any:
    """The streaming query over the events table's change feed (not awaited)."""
    tables = params.tables
    reader = spark.readStream.format("delta").option("readChangeFeed", "true").option("startingVersion", 0)
    if params.max_files_per_batch > 0:
        reader = reader.option("maxFilesPerTrigger", params.max_files_per_batch)
    source = (
        reader.table(tables.name(Tables.EVENTS))
        if tables.uses_catalog
        else reader.load(tables.path(Tables.EVENTS))
    )
    writer = (
        source.writeStream.foreachBatch(sink)
        .option("checkpointLocation", params.checkpoint())
        .queryName("fashionrec_events")
    )
    if params.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{params.trigger_seconds} seconds")
    return writer.start()


def run_stream(params: StreamParams, spark: SparkSession | None = None) -> dict[str, Any]:
    """Run the stream: until the events table is drained (`available_now`), or until stopped."""
    spark = spark or get_spark("fashionrec-stream")
    tables = params.tables
    for table in (Tables.ARTICLES, Tables.CUSTOMERS, Tables.TRANSACTIONS):
        if not table_exists(spark, tables, table):
            raise ValueError(f"table {table} not found in {tables.describe()}: run ingest first")
    ensure_events_table(spark, tables)
    ensure_event_id_column(spark, tables)
    with open_store(params.store_url()) as store:
        sink = EventSink(spark, params, store)
        recovered = sink.writer.recover()  # batches in the store whose Delta writes a crash cut short
        if not params.available_now:
            sink.load_encoder()
        query = start_stream(spark, params, sink)
        stopping = _stop_signal()
        try:
            reported = -1
            while query.isActive and not stopping.is_set():
                query.awaitTermination(1)  # raises the query's error, if it failed
                reported = _report_progress(query.lastProgress, reported)
        finally:
            if query.isActive:
                query.stop()
            sink.writer.close()  # the Delta writes of every applied batch, then the thread ends
        figures = sink.figures
        return {
            "batches": figures.batches,
            "events": figures.events,
            **{f"applied_{kind}": count for kind, count in figures.accepted.items()},
            "quarantined": figures.quarantined,
            "online_store_batch": store.applied_batch(),
            "tables_batch": store.tables_batch(),
            "batches_recovered": recovered,
            "seconds": round(figures.seconds, 1),
        }
