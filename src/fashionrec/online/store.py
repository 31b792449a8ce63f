"""One small interface over the online store, two backends: SQLite in WAL mode (the embedded default: a file
every serving worker can read while the stream writes) and PostgreSQL (the protocol of Databricks' online
stores, Lakebase). `open_store(url)` picks one by the URL's scheme.

The stream applies one micro-batch in one database transaction (`apply`), and skips a batch it has already
applied: after a crash Spark replays the last batch, and the store ends as if it had run once.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

ENVIRONMENT_VARIABLE = "FASHIONREC_ONLINE_STORE"  # the served model's store URL (see README, Real time)
NO_BATCH = -1


@dataclass(frozen=True)
class Purchase:
    event_id: str
    customer_id: str
    article_id: str
    day: int  # days since the week epoch (`fashionrec.weeks.EPOCH`), as the snapshot's purchases
    event_time: float  # seconds since 1970-01-01 UTC
    price: float | None = None
    sales_channel_id: int | None = None


@dataclass(frozen=True)
class Rejected:
    """A quarantined event: where it came from, the field, the reason and the event as JSON."""

    source: str
    column: str
    reason: str
    raw: str


@dataclass(frozen=True)
class NewArticle:
    article_id: str
    catalogue: dict[str, object]  # the article's catalogue row (articles.csv columns)
    embedding: np.ndarray | None  # the image encoder's unit vector of its photo; None without one
    event_time: float


@dataclass(frozen=True)
class StoreBatch:
    """What one micro-batch changes: its accepted events' ids, purchases, stock levels and new articles."""

    batch_id: int
    event_ids: Sequence[str]
    purchases: Sequence[Purchase] = ()
    stock: dict[str, bool] = field(default_factory=dict)  # article id → in stock
    new_articles: Sequence[NewArticle] = ()
    rejected: Sequence[Rejected] = ()


@dataclass(frozen=True)
class Changes:
    """The catalogue-wide changes after a batch id: stock levels and new articles, up to `batch_id`."""

    batch_id: int
    stock: dict[str, bool]
    new_articles: list[NewArticle]


class OnlineStore(ABC):
    """The operations the stream and the served model need; each backend implements the SQL."""

    @abstractmethod
    def applied_batch(self) -> int:
        """The last micro-batch applied (`NO_BATCH` before the first)."""

    @abstractmethod
    def seen_before(self, event_ids: Iterable[str], batch_id: int) -> dict[str, int]:
        """Of `event_ids`, those accepted by a batch before `batch_id`, with that batch: a replayed batch
        finds its own events, which are not duplicates of themselves."""

    @abstractmethod
    def apply(self, batch: StoreBatch) -> bool:
        """Apply a micro-batch atomically; False (nothing written) when it was applied before."""

    @abstractmethod
    def batch(self, batch_id: int) -> StoreBatch:
        """What an applied batch wrote (stock: the articles whose latest level it set): the store is the
        stream's write-ahead log for the Delta tables (`streaming.tables`)."""

    @abstractmethod
    def tables_batch(self) -> int:
        """The last batch whose Delta writes are done (`NO_BATCH` before the first)."""

    @abstractmethod
    def mark_tables_batch(self, batch_id: int) -> None:
        """Record that the Delta writes of every batch up to `batch_id` are done."""

    @abstractmethod
    def purchases_of(self, customer_ids: Sequence[str], since_day: int) -> list[Purchase]:
        """The customers' purchases on or after `since_day` (one indexed lookup)."""

    @abstractmethod
    def changes_since(self, batch_id: int) -> Changes:
        """Stock levels and new articles changed by batches after `batch_id` (an indexed range read; a
        primary-key read when nothing changed)."""

    @abstractmethod
    def article_batches(self) -> dict[str, int]:
        """Every new article the store holds, with the batch that added it."""

    @abstractmethod
    def dump(self) -> dict[str, list[tuple]]:
        """Every table's rows, sorted (tests compare two stores)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_embedding(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, dtype="<f4").tobytes()


def decode_embedding(blob: bytes | memoryview | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(bytes(blob), dtype="<f4").copy()


def encode_catalogue(row: dict[str, object]) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def open_store(url: str) -> OnlineStore:
    """`sqlite:///path/to/file.db` (or a bare path) or `postgresql://user@host:port/db`."""
    if url.startswith(("postgresql://", "postgres://")):
        from fashionrec.online.postgres import PostgresStore

        return PostgresStore(url)
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    if "://" in path:
        raise ValueError(f"online store URL {url!r}: expected sqlite:///<file> or postgresql://...")
    from fashionrec.online.sqlite import SqliteStore

    return SqliteStore(path)
