"""The SQL both backends run (SQLite and PostgreSQL accept the same statements but for the placeholder and
two type names): five tables, each read by its primary key or an index.

- `events`: every accepted event id and the batch that accepted it (duplicates are found here);
- `purchases`: purchases since the snapshot, indexed by customer;
- `stock` and `new_articles`: catalogue-wide changes, indexed by the batch that made them;
- `progress`: the last applied batch (one row).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from fashionrec.online.store import (
    NO_BATCH,
    Changes,
    NewArticle,
    OnlineStore,
    Purchase,
    Rejected,
    StoreBatch,
    decode_embedding,
    encode_catalogue,
    encode_embedding,
)

PROGRESS_KEY = "stream"
TABLES_KEY = "tables"  # the progress row of the stream's Delta writes


def schema(real: str, blob: str) -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, batch_id BIGINT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS purchases (event_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL,
            article_id TEXT NOT NULL, day INTEGER NOT NULL, event_time {real} NOT NULL, price {real},
            sales_channel_id INTEGER)""",
        "CREATE INDEX IF NOT EXISTS purchases_by_customer ON purchases (customer_id, day)",
        """CREATE TABLE IF NOT EXISTS stock (article_id TEXT PRIMARY KEY, in_stock INTEGER NOT NULL,
            batch_id BIGINT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS stock_by_batch ON stock (batch_id)",
        f"""CREATE TABLE IF NOT EXISTS new_articles (article_id TEXT PRIMARY KEY, catalogue TEXT NOT NULL,
            embedding {blob}, event_time {real} NOT NULL, batch_id BIGINT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS new_articles_by_batch ON new_articles (batch_id)",
        """CREATE TABLE IF NOT EXISTS rejected (batch_id BIGINT NOT NULL, position INTEGER NOT NULL,
            source TEXT NOT NULL, field TEXT NOT NULL, reason TEXT NOT NULL, raw TEXT NOT NULL,
            PRIMARY KEY (batch_id, position))""",
        "CREATE TABLE IF NOT EXISTS progress (name TEXT PRIMARY KEY, batch_id BIGINT NOT NULL)",
    ]


class SqlStore(OnlineStore):
    """The store over a DB-API connection per thread (`connect`); `mark` is the driver's placeholder."""

    mark = "?"

    def __init__(self) -> None:
        self._local = threading.local()

    def connect(self) -> Any:  # pragma: no cover - each backend
        raise NotImplementedError

    @property
    def connection(self) -> Any:
        """This thread's connection; a new one in a forked serving worker (a connection is never shared
        across a fork)."""
        held = getattr(self._local, "held", None)
        if held is None or held[0] != os.getpid():
            self._local.held = held = (os.getpid(), self.connect())
        return held[1]

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.mark)

    def _read(self, statement: str, values: Sequence[Any] = ()) -> list[tuple]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(self._sql(statement), tuple(values))
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def applied_batch(self) -> int:
        rows = self._read("SELECT batch_id FROM progress WHERE name = ?", (PROGRESS_KEY,))
        return int(rows[0][0]) if rows else NO_BATCH

    def seen_before(self, event_ids: Iterable[str], batch_id: int) -> dict[str, int]:
        ids = list(dict.fromkeys(event_ids))
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for event_id, batch in self._read(
                f"SELECT event_id, batch_id FROM events WHERE event_id IN ({marks}) AND batch_id < ?",
                (*chunk, batch_id),
            ):
                found[event_id] = int(batch)
        return found

    def apply(self, batch: StoreBatch) -> bool:
        with self._transaction() as cursor:
            cursor.execute(self._sql("SELECT batch_id FROM progress WHERE name = ?"), (PROGRESS_KEY,))
            row = cursor.fetchone()
            if row is not None and int(row[0]) >= batch.batch_id:
                return False
            id_, sql = batch.batch_id, self._sql
            cursor.executemany(
                sql("INSERT INTO events VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING"),
                [(e, id_) for e in batch.event_ids],
            )
            cursor.executemany(
                sql("INSERT INTO purchases VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"),
                [
                    (
                        p.event_id,
                        p.customer_id,
                        p.article_id,
                        p.day,
                        p.event_time,
                        p.price,
                        p.sales_channel_id,
                    )
                    for p in batch.purchases
                ],
            )
            cursor.executemany(
                sql(
                    "INSERT INTO rejected VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (batch_id, position) DO NOTHING"
                ),
                [(id_, i, r.source, r.column, r.reason, r.raw) for i, r in enumerate(batch.rejected)],
            )
            cursor.executemany(
                sql(
                    "INSERT INTO stock VALUES (?, ?, ?) ON CONFLICT (article_id) DO UPDATE SET "
                    "in_stock = excluded.in_stock, batch_id = excluded.batch_id"
                ),
                [(a, int(bool(v)), id_) for a, v in sorted(batch.stock.items())],
            )
            cursor.executemany(
                sql(
                    "INSERT INTO new_articles VALUES (?, ?, ?, ?, ?) ON CONFLICT (article_id) DO UPDATE SET "
                    "catalogue = excluded.catalogue, embedding = excluded.embedding, "
                    "event_time = excluded.event_time, batch_id = excluded.batch_id"
                ),
                [
                    (
                        n.article_id,
                        encode_catalogue(n.catalogue),
                        encode_embedding(n.embedding),
                        n.event_time,
                        id_,
                    )
                    for n in batch.new_articles
                ],
            )
            cursor.execute(
                sql(
                    "INSERT INTO progress VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET batch_id = "
                    "excluded.batch_id"
                ),
                (PROGRESS_KEY, id_),
            )
            return True

    def _transaction(self) -> AbstractContextManager[Any]:  # pragma: no cover - each backend
        """A cursor inside one write transaction, holding the write lock before the progress row is read;
        committed when the block ends, rolled back on an error."""
        raise NotImplementedError

    def batch(self, batch_id: int) -> StoreBatch:
        ids = [
            e
            for (e,) in self._read(
                "SELECT event_id FROM events WHERE batch_id = ? ORDER BY event_id", (batch_id,)
            )
        ]
        purchases = self._read(
            "SELECT p.event_id, customer_id, article_id, day, event_time, price, sales_channel_id FROM purchases p "
            "JOIN events e ON e.event_id = p.event_id WHERE e.batch_id = ? ORDER BY p.event_id",
            (batch_id,),
        )
        stock = self._read("SELECT article_id, in_stock FROM stock WHERE batch_id = ?", (batch_id,))
        new = self._read(
            "SELECT article_id, catalogue, embedding, event_time FROM new_articles WHERE batch_id = ? "
            "ORDER BY article_id",
            (batch_id,),
        )
        rejected = self._read(
            "SELECT source, field, reason, raw FROM rejected WHERE batch_id = ? ORDER BY position",
            (batch_id,),
        )
        return StoreBatch(
            batch_id,
            ids,
            [
                Purchase(e, c, a, int(d), float(t), p, None if ch is None else int(ch))
                for e, c, a, d, t, p, ch in purchases
            ],
            {a: bool(v) for a, v in stock},
            [NewArticle(a, json.loads(c), decode_embedding(e), float(t)) for a, c, e, t in new],
            [Rejected(*row) for row in rejected],
        )

    def tables_batch(self) -> int:
        rows = self._read("SELECT batch_id FROM progress WHERE name = ?", (TABLES_KEY,))
        return int(rows[0][0]) if rows else NO_BATCH

    def mark_tables_batch(self, batch_id: int) -> None:
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "INSERT INTO progress VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET batch_id = excluded.batch_id"
                ),
                (TABLES_KEY, batch_id),
            )

    def purchases_of(self, customer_ids: Sequence[str], since_day: int) -> list[Purchase]:
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self._read(
            "SELECT event_id, customer_id, article_id, day, event_time FROM purchases "
            f"WHERE customer_id IN ({marks}) AND day >= ? ORDER BY event_time, event_id",
            (*ids, since_day),
        )
        return [Purchase(e, c, a, int(d), float(t)) for e, c, a, d, t in rows]

    def changes_since(self, batch_id: int) -> Changes:
        now = self.applied_batch()
        if now <= batch_id:
            return Changes(max(now, batch_id), {}, [])
        stock = self._read(
            "SELECT article_id, in_stock FROM stock WHERE batch_id > ? AND batch_id <= ?", (batch_id, now)
        )
        new = self._read(
            "SELECT article_id, catalogue, embedding, event_time FROM new_articles "
            "WHERE batch_id > ? AND batch_id <= ? ORDER BY batch_id, article_id",
            (batch_id, now),
        )
        return Changes(
            now,
            {a: bool(v) for a, v in stock},
            [NewArticle(a, json.loads(c), decode_embedding(e), float(t)) for a, c, e, t in new],
        )

    def article_batches(self) -> dict[str, int]:
        return {a: int(b) for a, b in self._read("SELECT article_id, batch_id FROM new_articles")}

    def dump(self) -> dict[str, list[tuple]]:
        out = {}
        for table in ("events", "purchases", "stock", "new_articles", "rejected", "progress"):
            rows = self._read(f"SELECT * FROM {table}")
            out[table] = sorted(tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows)
        return out

    def close(self) -> None:
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == os.getpid():
            held[1].close()
        self._local.held = None
