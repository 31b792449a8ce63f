"""PostgreSQL: the protocol of Databricks' online stores (Lakebase), used by the dev and prod targets.
Reads run in autocommit (each sees the latest committed batch); `apply` is one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fashionrec.online.sql import SqlStore, schema

_SCHEMA_LOCK = 872301  # an advisory lock id: two processes creating the tables at once


class PostgresStore(SqlStore):
    mark = "%s"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
            try:
                for statement in schema("DOUBLE PRECISION", "BYTEA"):
                    cursor.execute(statement)
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self.connection.transaction(), self.connection.cursor() as cursor:
            cursor.execute("LOCK TABLE progress IN EXCLUSIVE MODE")  # one writer at a time
            yield cursor
