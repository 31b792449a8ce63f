"""The `events` Delta table (Change Data Feed on: the stream reads each row's commit time)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from fashionrec.config.tables import TableLocator, Tables
from fashionrec.lake.tables import append_rows, create_table, current_version, table_exists
from fashionrec.streaming.events import EVENT_COLUMNS

EVENTS_SCHEMA = ", ".join(f"{name} {kind}" for name, kind in EVENT_COLUMNS.items())


def ensure_events_table(spark: SparkSession, tables: TableLocator) -> None:
    """Create the empty events table (idempotent)."""
    if not table_exists(spark, tables, Tables.EVENTS):
        try:
            create_table(spark.createDataFrame([], EVENTS_SCHEMA), tables, Tables.EVENTS)
        except Exception:
            if not table_exists(spark, tables, Tables.EVENTS):  # another process created it meanwhile
                raise


def events_frame(spark: SparkSession, rows: pd.DataFrame) -> DataFrame:
    """Event rows (pandas, any subset of the columns) as a DataFrame of the events table's schema; times
    are taken as UTC."""
    convert = {"timestamp": _utc_datetime, "double": float, "int": int, "string": str}
    frame = rows.reindex(columns=list(EVENT_COLUMNS))
    records = [
        tuple(
            None if _missing(value) else convert[kind](value)
            for value, kind in zip(row, EVENT_COLUMNS.values(), strict=True)
        )
        for row in frame.itertuples(index=False)
    ]
    return spark.createDataFrame(records, EVENTS_SCHEMA)


def _missing(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _utc_datetime(value: object) -> datetime:
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    return (stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp).to_pydatetime()


def append_events(spark: SparkSession, tables: TableLocator, rows: pd.DataFrame) -> int:
    """Append events in one commit (what the shop does); returns the table version."""
    ensure_events_table(spark, tables)
    append_rows(events_frame(spark, rows).coalesce(1), tables, Tables.EVENTS)  # one file a commit
    return int(current_version(spark, tables, Tables.EVENTS) or 0)
