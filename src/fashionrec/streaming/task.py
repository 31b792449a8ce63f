"""`fashionrec stream` (bundle job `fashionrec_stream`, continuous): the shop's `events` table, read as a
Delta change feed by Structured Streaming in micro-batches of about a second, into `transactions`, the
catalogue tables and the online store, each exactly once.

Per micro-batch (`EventSink`), in this order:
1. validate (`streaming.events`): bad events to `quarantine` with the field and the reason;
2. the online store, in one database transaction that also records the batch id (served answers change
   here, before the slower Delta commits);
3. purchases appended to `transactions` with Delta's idempotent-write options (`txnAppId`, `txnVersion` =
   the batch id: a replayed batch is skipped), new articles and stock levels MERGEd by key, quarantine
   rows MERGEd by a hash of the row and its reason.
A crash anywhere replays the batch from the checkpoint: every write above is idempotent and the verdicts
are a function of the batch and of what earlier batches applied, so the tables and the store end as if
the batch had run once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config import StreamParams
from fashionrec.config.tables import TableLocator, Tables
from fashionrec.data.schema import ARTICLE_AVAILABILITY, ARTICLES
from fashionrec.lake.ingest import EVENT_ID, ROW_HASH, TXN_ID, ensure_event_id_column, row_hash
from fashionrec.lake.quarantine import QUARANTINE_COLUMNS, write_quarantine
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, read_table, table_exists, upsert
from fashionrec.online.store import NewArticle, OnlineStore, Purchase, StoreBatch, open_store
from fashionrec.streaming.events import (
    EVENT_COLUMNS,
    NEW_ARTICLE,
    PURCHASE,
    STOCK,
    event_json,
    validate_events,
)
from fashionrec.streaming.table import ensure_events_table
from fashionrec.weeks import EPOCH

log = logging.getLogger(__name__)
DEFAULT_CHANNEL = 2  # an event without a sales channel: online (H&M's 2)
QUARANTINE_SCHEMA = (
    "quarantine_id long, table string, source_file string, line long, column string, reason string, "
    "raw string, raw_bytes binary, quarantined_at timestamp"
)


class KnownIds:
    """A table's ids, read once and again only when an unknown id shows up after the table changed."""

    def __init__(self, spark: SparkSession, tables: TableLocator, table: str, column: str) -> None:
        self.spark, self.tables, self.table, self.column = spark, tables, table, column
        self.version: int | None = None
        self.ids: set[str] = set()
        self.reload()

    def reload(self) -> None:
        version = current_version(self.spark, self.tables, self.table)
        if version is not None and version != self.version:
            frame = read_table(self.spark, self.tables, self.table, version).select(self.column).toPandas()
            self.ids, self.version = set(frame[self.column].astype(str)), version

    def __contains__(self, value: str) -> bool:
        if value in self.ids:
            return True
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
        self.app_id = "fashionrec-events-" + hashlib.sha256(params.checkpoint().encode()).hexdigest()[:16]
        self.figures = StreamFigures()
        self._encoder: Any = None
        self._writers = ThreadPoolExecutor(4, thread_name_prefix="stream-write")
        self._transactions_schema = read_table(spark, self.tables, Tables.TRANSACTIONS).schema

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
        self.store.apply(self._store_batch(batch_id, accepted))
        stored = time.perf_counter()
        # Four tables, four independent idempotent writes: run as concurrent Spark jobs (the batch takes
        # the longest one, not their sum); any failure fails the batch, which is then replayed.
        writes = [
            (self._write_transactions, accepted[accepted["type"] == PURCHASE], batch_id),
            (self._write_articles, accepted[accepted["type"] == NEW_ARTICLE]),
            (self._write_stock, accepted[accepted["type"] == STOCK]),
            (self._write_quarantine, verdicts.rejected),
        ]
        pending = [self._writers.submit(*w) for w in writes if len(w[1])]
        for future in pending:
            future.result()
        figures = self.figures
        figures.batches += 1
        figures.events += len(rows)
        for kind, count in accepted["type"].value_counts().items():
            figures.accepted[str(kind)] += int(count)
        figures.quarantined += len(verdicts.rejected)
        seconds = time.perf_counter() - started
        figures.seconds += seconds
        print(
            f"stream batch {batch_id}: {len(rows)} events, {len(accepted)} applied, "
            f"{len(verdicts.rejected)} quarantined, {seconds:.2f} s (read and validate "
            f"{read - started:.2f}, online store {stored - read:.2f}, tables {time.perf_counter() - stored:.2f})",
            flush=True,
        )

    # --- the online store -------------------------------------------------------------------------
    def _store_batch(self, batch_id: int, accepted: pd.DataFrame) -> StoreBatch:
        purchases = accepted[accepted["type"] == PURCHASE]
        stock = accepted[accepted["type"] == STOCK]
        new = accepted[accepted["type"] == NEW_ARTICLE]
        return StoreBatch(
            batch_id,
            accepted["event_id"].tolist(),
            [
                Purchase(e, c, a, _day(t), _seconds(t))
                for e, c, a, t in zip(
                    purchases["event_id"],
                    purchases["customer_id"],
                    purchases["article_id"],
                    purchases["event_time"],
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
        )

    def load_encoder(self) -> None:
        """Load the image encoder now (a continuous stream: its first new article does not wait for it)."""
        self._embed("")

    def _embed(self, photo: Any) -> np.ndarray | None:
        """The image encoder's unit vector of a new article's photo (None without a photo or a model)."""
        if self._encoder is None:
            from fashionrec.similarity.encoder import ENCODER_DIR, load

            folder = os.path.join(self.params.artifacts_dir, str(ENCODER_DIR))
            self._encoder = load(folder) if os.path.isfile(os.path.join(folder, "saved_model.pb")) else False
        if self._encoder is False or not isinstance(photo, str) or not photo:
            return None
        from fashionrec.similarity.encoder import embed_saved
        from fashionrec.similarity.images import decode

        with open(photo, "rb") as handle:
            pixels = decode([handle.read()])
        return embed_saved(self._encoder, pixels)[0].astype(np.float32)

    # --- the Delta tables -------------------------------------------------------------------------
    def _write_transactions(self, purchases: pd.DataFrame, batch_id: int) -> None:
        if purchases.empty:
            return
        frame = pd.DataFrame(
            {
                "t_dat": pd.to_datetime(purchases["event_time"]).dt.date,
                "customer_id": purchases["customer_id"].astype(str),
                "article_id": purchases["article_id"].astype(str),
                "price": purchases["price"].astype(float),
                "sales_channel_id": purchases["sales_channel_id"].fillna(DEFAULT_CHANNEL).astype(int),
                EVENT_ID: purchases["event_id"].astype(str),
            }
        )
        schema = "t_dat date, customer_id string, article_id string, price double, sales_channel_id int, event_id string"
        rows = self.spark.createDataFrame(frame, schema).select(
            F.xxhash64(F.lit("event"), F.col(EVENT_ID)).alias(TXN_ID), "*"
        )
        target = self._transactions_schema
        rows = rows.select(*[F.col(f.name).cast(f.dataType) for f in target.fields])
        writer = (
            rows.write.format("delta")
            .mode("append")
            .option("txnAppId", self.app_id)
            .option("txnVersion", batch_id)
        )
        if self.tables.uses_catalog:
            writer.saveAsTable(self.tables.name(Tables.TRANSACTIONS))
        else:
            writer.save(self.tables.path(Tables.TRANSACTIONS))

    def _write_articles(self, new: pd.DataFrame) -> None:
        if new.empty:
            return
        target = read_table(self.spark, self.tables, Tables.ARTICLES)
        records = [[row.get(c) for c in ARTICLES.column_names] for row in new["catalogue"]]
        schema = ", ".join(
            f"{c} {'int' if k.kind == 'int' else 'string'}"
            for c, k in zip(ARTICLES.column_names, ARTICLES.columns, strict=True)
        )
        rows = self.spark.createDataFrame(records, schema).withColumn(
            ROW_HASH, row_hash(ARTICLES.column_names)
        )
        rows = rows.select(*[F.col(c).cast(target.schema[c].dataType) for c in target.columns])
        upsert(self.spark, self.tables, Tables.ARTICLES, rows, keys=["article_id"], compare_column=ROW_HASH)
        self.catalogue.reload()

    def _write_stock(self, stock: pd.DataFrame) -> None:
        """The latest stock level per article into `article_availability` (its regions and age limit
        kept); without that table the stock lives in the online store only."""
        if stock.empty or not table_exists(self.spark, self.tables, Tables.ARTICLE_AVAILABILITY):
            return
        latest = stock.drop_duplicates("article_id", keep="last")
        levels = self.spark.createDataFrame(
            pd.DataFrame(
                {"article_id": latest["article_id"].astype(str), "new_stock": latest["in_stock"].astype(int)}
            )
        )
        target = read_table(self.spark, self.tables, Tables.ARTICLE_AVAILABILITY)
        rows = (
            levels.join(target, "article_id", "left")
            .withColumn("in_stock", F.col("new_stock").cast(target.schema["in_stock"].dataType))
            .drop("new_stock", ROW_HASH)
            .withColumn(ROW_HASH, row_hash(ARTICLE_AVAILABILITY.column_names))
            .select(*target.columns)
        )
        upsert(
            self.spark,
            self.tables,
            Tables.ARTICLE_AVAILABILITY,
            rows,
            keys=["article_id"],
            compare_column=ROW_HASH,
        )

    def _write_quarantine(self, rejected: pd.DataFrame) -> None:
        if rejected.empty:
            return
        raw = [event_json(row) for _, row in rejected.iterrows()]
        frame = pd.DataFrame(
            {
                "table": Tables.EVENTS,
                "source_file": [f"{Tables.EVENTS} version {int(v)}" for v in rejected["events_version"]],
                "column": rejected["column"].tolist(),
                "reason": rejected["reason"].tolist(),
                "raw": raw,
            }
        )
        rows = self.spark.createDataFrame(
            frame, "table string, source_file string, column string, reason string, raw string"
        )
        rows = rows.select(
            F.xxhash64("source_file", "column", "reason", "raw").alias("quarantine_id"),
            "table",
            "source_file",
            F.lit(None).cast("long").alias("line"),
            "column",
            "reason",
            "raw",
            F.col("raw").cast("binary").alias("raw_bytes"),
            F.current_timestamp().alias("quarantined_at"),
        ).select(*QUARANTINE_COLUMNS)
        write_quarantine(self.spark, self.tables, rows)


def _day(when: Any) -> int:
    return (pd.Timestamp(when).date() - EPOCH).days


def _seconds(when: Any) -> float:
    stamp = pd.Timestamp(when)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return float(stamp.timestamp())


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
        if not params.available_now:
            sink.load_encoder()
        query = start_stream(spark, params, sink)
        try:
            query.awaitTermination()
        finally:
            if query.isActive:
                query.stop()
        figures = sink.figures
        return {
            "batches": figures.batches,
            "events": figures.events,
            **{f"applied_{kind}": count for kind, count in figures.accepted.items()},
            "quarantined": figures.quarantined,
            "online_store_batch": store.applied_batch(),
            "seconds": round(figures.seconds, 1),
        }
