"""The quarantine table: every rejected source row with its file, line, column and reason.

Keyed by a hash of (file, line, column, reason, text), so re-ingesting the same file adds nothing.
`raw` is the line as valid UTF-8 text (invalid bytes replaced by U+FFFD) so that every reader, pandas
included, can read it; `raw_bytes` keeps the line's exact bytes.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config.tables import TableLocator, Tables
from fashionrec.data.readers import LINE, RAW
from fashionrec.lake.tables import UpsertResult, read_table, table_exists, upsert

QUARANTINE_COLUMNS = [
    "quarantine_id",
    "table",
    "source_file",
    "line",
    "column",
    "reason",
    "raw",
    "raw_bytes",
    "quarantined_at",
]


def quarantine_rows(problems: DataFrame, table: str, source_file: str | Column) -> DataFrame:
    """Shape `Validated.problems()` rows (`LINE`, column, reason, `RAW`) for the quarantine table;
    `source_file`: a file's name, or a column naming each row's source (the stream's events)."""
    source = F.lit(source_file) if isinstance(source_file, str) else source_file
    return problems.select(
        F.xxhash64(source, F.col(LINE), F.col("column"), F.col("reason"), F.col(RAW)).alias("quarantine_id"),
        F.lit(table).alias("table"),
        source.alias("source_file"),
        F.col(LINE).alias("line"),
        F.col("column"),
        F.col("reason"),
        F.make_valid_utf8(F.col(RAW)).alias("raw"),
        F.col(RAW).cast("binary").alias("raw_bytes"),
        F.current_timestamp().alias("quarantined_at"),
    )


def write_quarantine(spark: SparkSession, tables: TableLocator, rows: DataFrame) -> UpsertResult:
    if table_exists(spark, tables, Tables.QUARANTINE):
        existing = set(read_table(spark, tables, Tables.QUARANTINE).columns)
        if "raw_bytes" not in existing:  # a quarantine table written before raw bytes were kept
            spark.sql(f"ALTER TABLE {_delta_name(tables)} ADD COLUMNS (raw_bytes BINARY)")
    return upsert(spark, tables, Tables.QUARANTINE, rows.select(*QUARANTINE_COLUMNS), keys=["quarantine_id"])


def _delta_name(tables: TableLocator) -> str:
    if tables.uses_catalog:
        return tables.name(Tables.QUARANTINE)
    return f"delta.`{tables.path(Tables.QUARANTINE)}`"
