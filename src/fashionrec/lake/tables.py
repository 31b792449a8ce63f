"""Delta table helpers: read (optionally at a version), create with Change Data Feed, upsert, changes.

All writes are single Delta transactions: a failed task leaves the previous version intact, and an
upsert that would change nothing writes no commit at all, so re-running a task leaves versions alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config.tables import TableLocator


@dataclass(frozen=True)
class UpsertResult:
    """What one upsert did; `version` is the table version after it (unchanged when nothing changed)."""

    table: str
    inserted: int
    updated: int
    version: int
    committed: bool


def table_exists(spark: SparkSession, tables: TableLocator, table: str) -> bool:
    if tables.uses_catalog:
        return spark.catalog.tableExists(tables.name(table).replace("`", ""))
    return DeltaTable.isDeltaTable(spark, tables.path(table))


def delta_table(spark: SparkSession, tables: TableLocator, table: str) -> DeltaTable:
    if tables.uses_catalog:
        return DeltaTable.forName(spark, tables.name(table))
    return DeltaTable.forPath(spark, tables.path(table))


def read_table(
    spark: SparkSession, tables: TableLocator, table: str, version: int | None = None
) -> DataFrame:
    """A table's current snapshot, or the snapshot at `version` (time travel) for reproducible reads."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    if tables.uses_catalog:
        return reader.table(tables.name(table))
    return reader.load(tables.path(table))


def current_version(spark: SparkSession, tables: TableLocator, table: str) -> int | None:
    """Latest committed version, or None when the table does not exist yet."""
    if not table_exists(spark, tables, table):
        return None
    return int(delta_table(spark, tables, table).history(1).select("version").first()[0])


def pin_tables(
    spark: SparkSession,
    tables: TableLocator,
    names: tuple[str, ...],
    optional: tuple[str, ...] = (),
    hint: str = "run the earlier tasks first",
) -> tuple[dict[str, DataFrame], dict[str, int]]:
    """The tables `names` (and those of `optional` that exist) read at their current versions, so one run
    reads one consistent state; and those versions (lineage). A missing required table is an error that
    names it and says what to run (`hint`)."""
    versions = {t: current_version(spark, tables, t) for t in names}
    missing = [t for t, v in versions.items() if v is None]
    if missing:
        raise ValueError(f"table(s) {', '.join(missing)} not found in {tables.describe()}: {hint}")
    for table in optional:
        version = current_version(spark, tables, table)
        if version is not None:
            versions[table] = version
    pinned = {t: read_table(spark, tables, t, version=v) for t, v in versions.items()}
    return pinned, versions  # type: ignore[return-value]


def table_id(spark: SparkSession, tables: TableLocator, table: str) -> str | None:
    """The table's Delta id, new each time the table is created (a rebuilt lakehouse restarts its versions
    at 0, its ids do not repeat), or None when it does not exist: with a version, what a cache of results
    computed from the table is keyed on."""
    if not table_exists(spark, tables, table):
        return None
    return str(delta_table(spark, tables, table).detail().select("id").first()[0])


def table_identity(spark: SparkSession, tables: TableLocator, table: str) -> str | None:
    """`table_id` and the latest version: the key of a table read at its latest."""
    found = table_id(spark, tables, table)
    return None if found is None else f"{found}@{current_version(spark, tables, table)}"


def read_changes(
    spark: SparkSession,
    tables: TableLocator,
    table: str,
    since_version: int,
    until_version: int | None = None,
) -> DataFrame:
    """Change Data Feed rows committed after `since_version` (exclusive), up to `until_version`."""
    reader = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", since_version + 1)
    )
    if until_version is not None:
        reader = reader.option("endingVersion", until_version)
    if tables.uses_catalog:
        return reader.table(tables.name(table))
    return reader.load(tables.path(table))


def create_table(
    df: DataFrame, tables: TableLocator, table: str, partition_by: list[str] | None = None
) -> None:
    """Write `df` as a new Delta table with Change Data Feed on; fails if the table already exists."""
    writer = df.write.format("delta").mode("errorifexists").option("delta.enableChangeDataFeed", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if tables.uses_catalog:
        writer.saveAsTable(tables.name(table))
    else:
        writer.save(tables.path(table))


def append_rows(
    df: DataFrame, tables: TableLocator, table: str, options: dict[str, str] | None = None
) -> None:
    """Append `df` to an existing table in one Delta commit. `options`: Delta writer options, e.g.
    `txnAppId` and `txnVersion`, with which Delta skips an append it has already committed (an idempotent
    write from a stream's batch)."""
    writer = df.write.format("delta").mode("append").options(**(options or {}))
    if tables.uses_catalog:
        writer.saveAsTable(tables.name(table))
    else:
        writer.save(tables.path(table))


def upsert(
    spark: SparkSession,
    tables: TableLocator,
    table: str,
    source: DataFrame,
    keys: list[str],
    compare_column: str | None = None,
    prune_column: str | None = None,
) -> UpsertResult:
    """Insert new keys and update rows whose `compare_column` (a row hash) changed, in one MERGE.

    Rows already present and unchanged are filtered out first, so a re-run commits nothing.
    `prune_column` restricts the target to the source's min/max of that column, in the check for
    existing keys and as literals in the merge condition, which lets Delta skip target files by their
    statistics (a new day only reads the files of recent days).
    `source` must be unique on `keys`.
    """
    if not table_exists(spark, tables, table):
        create_table(source, tables, table)
        rows = read_table(spark, tables, table).count()
        return UpsertResult(table, rows, 0, current_version(spark, tables, table) or 0, True)

    target = read_table(spark, tables, table)
    bounds = ""
    if prune_column:  # only target rows in the source's range can match: Delta skips the other files
        lo, hi = source.agg(F.min(prune_column), F.max(prune_column)).first()
        if lo is None:
            return UpsertResult(table, 0, 0, current_version(spark, tables, table) or 0, False)
        target = target.where(F.col(prune_column).between(lo, hi))
        bounds = f" AND t.`{prune_column}` BETWEEN '{lo}' AND '{hi}'"
    target_keys = target.select(*keys, *([F.col(compare_column).alias("_t_cmp")] if compare_column else []))
    if compare_column:
        joined = source.join(target_keys, on=keys, how="left")
        changes = joined.where(F.col("_t_cmp").isNull() | (F.col("_t_cmp") != F.col(compare_column))).drop(
            "_t_cmp"
        )
    else:
        changes = source.join(target_keys, on=keys, how="left_anti")
    changes = changes.persist()
    try:
        if changes.isEmpty():
            return UpsertResult(table, 0, 0, current_version(spark, tables, table) or 0, False)
        condition = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys) + bounds
        (
            delta_table(spark, tables, table)
            .alias("t")
            .merge(changes.alias("s"), condition)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )
    finally:
        changes.unpersist()
    last = delta_table(spark, tables, table).history(1).select("version", "operationMetrics").first()
    metrics = last["operationMetrics"] or {}
    return UpsertResult(
        table,
        int(metrics.get("numTargetRowsInserted", 0)),
        int(metrics.get("numTargetRowsUpdated", 0)),
        int(last["version"]),
        True,
    )


def overwrite_table(df: DataFrame, tables: TableLocator, table: str, deletion_vectors: bool = False) -> int:
    """Replace a table's contents in one Delta commit (readers see the old or the new snapshot, never
    half of it); creates the table with Change Data Feed on if needed. Returns the new version.
    `deletion_vectors`: for a table later MERGEd a few rows at a time, a MERGE marks the replaced rows
    deleted instead of rewriting every file that holds one (recommendations: 8.5 s against 13 s for a
    day's 13.7k customers in 1.37M rows, measured)."""
    writer = (
        df.write.format("delta")
        .mode("overwrite")
        .option("overwriteSchema", "true")
        .option("delta.enableChangeDataFeed", "true")
    )
    if deletion_vectors:
        writer = writer.option("delta.enableDeletionVectors", "true")
    if tables.uses_catalog:
        writer.saveAsTable(tables.name(table))
    else:
        writer.save(tables.path(table))
    return current_version(df.sparkSession, tables, table) or 0
