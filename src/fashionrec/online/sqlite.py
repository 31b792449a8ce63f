"""The embedded default: one SQLite file in WAL mode, so serving workers read while the stream writes
(https://www.sqlite.org/wal.html), and nothing to run beside the model."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fashionrec.online.sql import SqlStore, schema


class SqliteStore(SqlStore):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for statement in schema("REAL", "BLOB"):
            self.connection.execute(statement)

    def connect(self) -> Any:
        # isolation_level=None: no implicit transactions; a read sees the latest commit, and `apply` opens
        # its own.
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL keeps the file consistent after a crash
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")  # the write lock first: no other writer between read and write
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        else:
            cursor.execute("COMMIT")
        finally:
            cursor.close()
