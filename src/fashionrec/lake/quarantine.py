"""The quarantine table: every rejected source row with its file, line, column and reason.

Keyed by a hash of (file, line, column, reason, text), so re-ingesting the same file adds nothing.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config.tables import TableLocator, Tables
from fashionrec.data.readers import LINE, RAW
from fashionrec.lake.tables import UpsertResult, upsert

QUARANTINE_COLUMNS = [
    "quarantine_id",
    "table",
    "source_file",
    "line",
    "column",
    "reason",
    "raw",
    "quarantined_at",
]


def quarantine_rows(problems: DataFrame, table: str, source_file: str) -> DataFrame:
    """Shape `Validated.problems()` rows for the quarantine table."""
    return problems.select(
        F.xxhash64(F.lit(source_file), F.col(LINE), F.col("column"), F.col("reason"), F.col(RAW)).alias(
            "quarantine_id"
        ),
        F.lit(table).alias("table"),
        F.lit(source_file).alias("source_file"),
        F.col(LINE).alias("line"),
        F.col("column"),
        F.col("reason"),
        F.col(RAW).alias("raw"),
        F.current_timestamp().alias("quarantined_at"),
    )


def write_quarantine(spark: SparkSession, tables: TableLocator, rows: DataFrame) -> UpsertResult:
    return upsert(spark, tables, Tables.QUARANTINE, rows.select(*QUARANTINE_COLUMNS), keys=["quarantine_id"])
