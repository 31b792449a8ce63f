"""The stream's Delta writes, behind the online store: a background thread takes each applied batch from
the store (its write-ahead log) and writes it to `transactions`, `articles`, `article_availability` and
`quarantine`, in batch order, then records it as done in the store. It writes every batch queued since
its last write in one go, at most once every `every_seconds` (`StreamParams.tables_every_seconds`), so
the tables trail the store by about one write, not by a growing queue, and a busy stream makes a few
large Delta commits instead of many small ones.

Each write is idempotent, so writing a batch twice (after a crash between its commits and the store's
record) changes nothing: purchases are appended with Delta's `txnAppId` / `txnVersion` (the last batch id
of the write: Delta skips an append whose version is not above the last one committed for the id), the
other tables are MERGEd by key, later batches winning. The four writes run as concurrent Spark jobs.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from fashionrec.config.tables import TableLocator, Tables
from fashionrec.data.readers import LINE, RAW
from fashionrec.data.schema import ARTICLE_AVAILABILITY, ARTICLES
from fashionrec.lake.ingest import EVENT_ID, ROW_HASH, TXN_ID, row_hash
from fashionrec.lake.quarantine import quarantine_rows, write_quarantine
from fashionrec.lake.tables import append_rows, read_table, table_exists, upsert
from fashionrec.online.store import NewArticle, OnlineStore, Purchase, Rejected
from fashionrec.weeks import EPOCH

log = logging.getLogger(__name__)
# Batches applied to the store but not yet to the tables before the stream waits for the tables: a
# bound on the work a crash leaves to `recover`, and on how far the tables trail the store.
MAX_BEHIND = 30
_STOP = -1
TABLES_POOL = "stream_tables"  # the fair scheduler's pool of the Delta writes (the stream's is the default)


class TablesWriter:
    """Writes applied batches to the Delta tables on one background thread (`submit`, `close`)."""

    def __init__(
        self,
        spark: SparkSession,
        tables: TableLocator,
        store: OnlineStore,
        app_id: str,
        on_articles: Callable[[], None] = lambda: None,
        every_seconds: float = 0.0,
    ) -> None:
        self.spark, self.tables, self.store, self.app_id = spark, tables, store, app_id
        self.every_seconds = every_seconds
        self.on_articles = on_articles
        self.schema = read_table(spark, tables, Tables.TRANSACTIONS).schema
        self._queue: queue.Queue[int] = queue.Queue(MAX_BEHIND)
        self._jobs = ThreadPoolExecutor(4, thread_name_prefix="stream-table")
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # --- the thread -------------------------------------------------------------------------------
    def submit(self, batch_id: int) -> None:
        """Queue an applied batch (waits while `MAX_BEHIND` are queued); raises a failed write's error."""
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stream-tables", daemon=True)
            self._thread.start()
        self._queue.put(batch_id)

    def behind(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Write what is queued, stop the thread; raises a failed write's error."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(
                "the stream's Delta writes failed (the store holds the batch)"
            ) from self._error

    def _run(self) -> None:
        stop, last_write = False, -math.inf
        while not stop:
            ids = [self._queue.get()]
            # everything queued until `every_seconds` after the last write: one write (not on a stop)
            while _STOP not in ids:
                wait = last_write + self.every_seconds - time.monotonic()
                try:
                    ids.append(self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait())
                except queue.Empty:
                    break
            last_write = time.monotonic()
            stop = _STOP in ids
            ids = [i for i in ids if i != _STOP]
            try:
                if ids:
                    self.write(ids)
            except BaseException as error:  # kept for the stream thread, which stops the query
                log.exception("writing batches %s to the tables failed", ids)
                self._error = error
                return

    # --- the writes -------------------------------------------------------------------------------
    def recover(self) -> int:
        """Write the batches the store holds beyond the last one written (a crash cut them short)."""
        done, applied = self.store.tables_batch(), self.store.applied_batch()
        missing = list(range(done + 1, applied + 1))
        for start in range(0, len(missing), MAX_BEHIND):
            self.write(missing[start : start + MAX_BEHIND])
        return len(missing)

    def write(self, batch_ids: list[int]) -> None:
        """These batches' four tables (consecutive ids, in order; later batches win), then the store's
        record that they are done."""
        purchases: list[Purchase] = []
        stock: dict[str, bool] = {}
        new: dict[str, NewArticle] = {}
        rejected: list[Rejected] = []
        for batch_id in batch_ids:
            batch = self.store.batch(batch_id)
            purchases += batch.purchases
            stock |= batch.stock
            new |= {n.article_id: n for n in batch.new_articles}
            rejected += batch.rejected
        writes = [
            (self._transactions, purchases, max(batch_ids)),
            (self._articles, list(new.values())),
            (self._stock, stock),
            (self._quarantine, rejected),
        ]
        started = time.perf_counter()
        for future in [self._jobs.submit(self._in_pool, *w) for w in writes if len(w[1])]:
            future.result()
        self.store.mark_tables_batch(max(batch_ids))
        print(
            f"{time.strftime('%H:%M:%S')} stream tables: batches {batch_ids[0]}-{batch_ids[-1]} written "
            f"({len(purchases)} purchases, {len(stock)} stock levels, {len(new)} new articles, "
            f"{len(rejected)} quarantined) in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

    def _in_pool(self, write: Callable[..., None], *args: object) -> None:
        """Run a write in the scheduler pool `TABLES_POOL`: with Spark's fair scheduler, a micro-batch's
        tasks take the next free core instead of queueing behind a MERGE's (Spark docs, "Scheduling Within
        an Application")."""
        self.spark.sparkContext.setLocalProperty("spark.scheduler.pool", TABLES_POOL)
        write(*args)

    def _transactions(self, purchases: list[Purchase], batch_id: int) -> None:
        frame = pd.DataFrame(
            {
                "t_dat": [EPOCH + timedelta(days=p.day) for p in purchases],
                "customer_id": [p.customer_id for p in purchases],
                "article_id": [p.article_id for p in purchases],
                "price": [p.price for p in purchases],
                "sales_channel_id": [p.sales_channel_id for p in purchases],
                EVENT_ID: [p.event_id for p in purchases],
            }
        )
        schema = "t_dat date, customer_id string, article_id string, price double, sales_channel_id int, event_id string"
        rows = self.spark.createDataFrame(frame, schema).select(
            F.xxhash64(F.lit("event"), F.col(EVENT_ID)).alias(TXN_ID), "*"
        )
        rows = rows.select(*[F.col(f.name).cast(f.dataType) for f in self.schema.fields])
        idempotent = {"txnAppId": self.app_id, "txnVersion": str(batch_id)}
        append_rows(rows, self.tables, Tables.TRANSACTIONS, idempotent)

    def _articles(self, new: list[NewArticle]) -> None:
        target = read_table(self.spark, self.tables, Tables.ARTICLES)
        records = [[n.catalogue.get(c) for c in ARTICLES.column_names] for n in new]
        schema = ", ".join(f"{c.name} {'int' if c.kind == 'int' else 'string'}" for c in ARTICLES.columns)
        rows = self.spark.createDataFrame(records, schema).withColumn(
            ROW_HASH, row_hash(ARTICLES.column_names)
        )
        rows = rows.select(*[F.col(c).cast(target.schema[c].dataType) for c in target.columns])
        upsert(self.spark, self.tables, Tables.ARTICLES, rows, keys=["article_id"], compare_column=ROW_HASH)
        self.on_articles()

    def _stock(self, stock: dict[str, bool]) -> None:
        """The latest stock levels into `article_availability` (regions and age limits kept); without that
        table the stock lives in the online store only."""
        if not table_exists(self.spark, self.tables, Tables.ARTICLE_AVAILABILITY):
            return
        levels = self.spark.createDataFrame(
            pd.DataFrame({"article_id": list(stock), "new_stock": [int(v) for v in stock.values()]})
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

    def _quarantine(self, rejected: list[Rejected]) -> None:
        frame = pd.DataFrame(
            {
                "source_file": [r.source for r in rejected],
                LINE: None,
                "column": [r.column for r in rejected],
                "reason": [r.reason for r in rejected],
                RAW: [r.raw for r in rejected],
            }
        )
        problems = self.spark.createDataFrame(
            frame, f"source_file string, {LINE} long, column string, reason string, {RAW} string"
        )
        write_quarantine(
            self.spark, self.tables, quarantine_rows(problems, Tables.EVENTS, F.col("source_file"))
        )
