"""Task `ingest`: the landing folder's CSV files into bronze Delta tables, idempotently and incrementally.

Only files not read before are read (`fashionrec.lake.landing`: a file stream with a checkpoint finds new
files, `landed_files` records what was read, a changed file is reported and read again), so a run with
nothing new reads nothing. Within a run, articles come first, then customers, then transactions (their
foreign keys are checked against the first two). Every file's header is checked before anything is
written. Articles and customers are upserted on their id (a changed row updates in place); transactions
have no id in the source, so each gets a stable `txn_id`: a hash of its values and its occurrence number
among identical rows of its file, so re-reading a file adds nothing while genuine repeat purchases on the
same day survive, and a week landed as seven daily files gives the same rows as one file.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from fashionrec.config import IngestParams, TableLocator, Tables
from fashionrec.data.readers import LINE, CsvSource, SourceFileError, check_columns, read_csv, read_header
from fashionrec.data.schema import ARTICLE_AVAILABILITY, ARTICLES, CUSTOMERS, TRANSACTIONS, TableSpec
from fashionrec.data.validation import BAD, Validated, flag_duplicates, flag_unknown_references, validate
from fashionrec.lake.file_state import folder_exists, record_files
from fashionrec.lake.landing import (
    LandedFile,
    Pending,
    in_table_order,
    kaggle_files,
    pending_files,
    reset_checkpoint,
    stamps,
    stream_new_files,
)
from fashionrec.lake.quarantine import quarantine_rows, write_quarantine
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, read_table, table_exists, upsert

log = logging.getLogger(__name__)

ROW_HASH = "_row_hash"
TXN_ID = "txn_id"
EVENT_ID = "event_id"  # transactions' column naming the stream event a purchase came from
ORDER = (ARTICLES, CUSTOMERS, TRANSACTIONS)


def row_hash(columns: list[str]) -> F.Column:
    """Hash of all values; nulls get a marker so (null, x) and (x, null) differ."""
    return F.xxhash64(*[F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in columns])


def with_transaction_ids(transactions: DataFrame) -> DataFrame:
    """Add `txn_id`: hash of the row's values plus its occurrence number among identical rows."""
    values = TRANSACTIONS.column_names
    occurrence = F.row_number().over(Window.partitionBy(*values).orderBy(LINE))
    return transactions.withColumn("_occurrence", occurrence).withColumn(
        TXN_ID, F.xxhash64(*[F.col(c) for c in values], F.col("_occurrence"))
    )


def ensure_event_id_column(spark: SparkSession, tables: TableLocator) -> None:
    """Give a transactions table written before the stream job existed its nullable `event_id` column."""
    table = TRANSACTIONS.table
    if table_exists(spark, tables, table) and EVENT_ID not in read_table(spark, tables, table).columns:
        spark.sql(f"ALTER TABLE {tables.name(TRANSACTIONS.table)} ADD COLUMNS ({EVENT_ID} STRING)")


def sample_by_customer(lines: DataFrame, fraction: float, seed: int) -> DataFrame:
    """Keep a stable `fraction` of customers: the same customers in customers.csv and transactions."""
    if fraction >= 1.0:
        return lines
    bucket = F.pmod(F.xxhash64(F.lit(seed), F.trim(F.col("customer_id"))), F.lit(1_000_000))
    return lines.where(bucket < F.lit(round(fraction * 1_000_000)))


@contextlib.contextmanager
def _uncompressed_cache(spark: SparkSession) -> Iterator[None]:
    """Cache the validated rows without column compression: they are read once or twice and dropped
    within the task, and encoding them was ~40% of the caching pass (31.5M rows, measured). Where the
    setting cannot be changed (e.g. serverless compute), the cache stays compressed."""
    key = "spark.sql.inMemoryColumnarStorage.compressed"
    try:
        before = spark.conf.get(key, "true")
        spark.conf.set(key, "false")
    except Exception:  # a configuration the platform does not let a job change
        yield
        return
    try:
        yield
    finally:
        spark.conf.set(key, before)


@dataclass(frozen=True)
class _Checked:
    """A file's validated rows, how many there are, and how many failed validation (None: not counted)."""

    validated: Validated
    rows: int
    invalid: int | None
    cached: DataFrame | None  # persisted rows (unpersist them), when they had to be counted


def _validated(
    spark: SparkSession, tables: TableLocator, spec: TableSpec, source: CsvSource, params: IngestParams
) -> _Checked:
    """Validated rows with key checks applied.

    Without sampling, every record of the file is a validated row, so the rows are not counted or cached:
    the write is the only pass over the file, and its counts tell whether any row failed (`_ingest_table`).
    Caching 31.5M validated transactions cost more than validating them (~7.6 s against ~1.8 s per 3M
    rows, measured). A sample's rows are counted first, over a cache that the write then reads.
    """
    lines = source.lines
    sampled = "customer_id" in spec.column_names and params.sample_fraction < 1.0
    if sampled:
        lines = sample_by_customer(lines, params.sample_fraction, params.sample_seed)
    checked = validate(lines, spec)
    rows, invalid, cached = source.records, None, None
    if sampled:
        cached = checked.rows.persist()
        with _uncompressed_cache(spark):
            rows, invalid = cached.agg(F.count(F.lit(1)), F.count_if(F.col(BAD))).first()
        checked = Validated(cached, spec, checked.lines)
    if spec.foreign_keys:
        references = {
            column: read_table(spark, tables, table).select(column)
            for column, table in spec.foreign_keys.items()
        }
        return _Checked(flag_unknown_references(checked, references), rows, invalid, cached)
    return _Checked(flag_duplicates(checked, list(spec.keys)), rows, invalid, cached)


def _bronze_rows(spec: TableSpec, validated: Validated) -> DataFrame:
    if spec is TRANSACTIONS:
        good = validated.rows.where(~F.col(BAD))
        # `event_id`: null for a landing file's rows; the stream job's purchases name their event
        no_event = (
            F.lit(None).cast("string").alias(EVENT_ID)
        )  # a landing file's row; the stream names its event
        return with_transaction_ids(good).select(TXN_ID, *spec.column_names, no_event)
    good = validated.good()
    return good.withColumn(ROW_HASH, row_hash(spec.column_names))


def _ingest_table(
    spark: SparkSession, tables: TableLocator, spec: TableSpec, source: CsvSource, params: IngestParams
) -> tuple[dict[str, Any], DataFrame]:
    started = time.perf_counter()
    checked = _validated(spark, tables, spec, source, params)
    validated = checked.validated
    try:
        bronze = _bronze_rows(spec, validated)
        if spec is TRANSACTIONS:
            ensure_event_id_column(spark, tables)
            result = upsert(spark, tables, spec.table, bronze, keys=[TXN_ID], prune_column="t_dat")
        else:
            result = upsert(spark, tables, spec.table, bronze, keys=list(spec.keys), compare_column=ROW_HASH)
        problems = quarantine_rows(validated.problems(), spec.table, source.path)
        if checked.invalid in (0, None) and result.inserted + result.updated == checked.rows:
            # Every row was written, so none failed validation or was flagged late (unknown key,
            # duplicate): no pass over the rows to find no problems (it cost as much as the write).
            problems, bad_lines = problems.where(F.lit(False)), 0
        else:
            problems = problems.persist()
            bad_lines = problems.select("line").distinct().count()
    finally:
        if checked.cached is not None:
            checked.cached.unpersist()
    figures = {
        "table": spec.table,
        "source_file": source.path,
        "lines_read": source.data_lines,
        "blank_lines": source.blank_lines,
        "continuation_lines": source.continuation_lines,
        "rows_read": source.records,
        "sampled_out": source.records - checked.rows,
        "quarantined": bad_lines,
        "inserted": result.inserted,
        "updated": result.updated,
        "version": result.version,
        "committed": result.committed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    log.info("ingested %s: %s", spec.table, figures)
    return figures, problems


REQUIRED = (ARTICLES, CUSTOMERS, TRANSACTIONS)
SPECS = {spec.table: spec for spec in (*ORDER, ARTICLE_AVAILABILITY)}


def _check_landing(spark: SparkSession, params: IngestParams, pending: Pending) -> None:
    """Fail before any write: every table has a file (or was ingested before), and every file to read has
    the columns its table needs."""
    landed_tables = {f.table for f in pending.found}
    for spec in REQUIRED:
        if spec.table not in landed_tables and not table_exists(spark, params.tables, spec.table):
            named = kaggle_files(params)[spec.table]
            read_header(spark, os.path.join(params.data_path, named))  # says "missing" or "empty"
            raise SourceFileError(f"{params.data_path}: no {named} (or {params.transactions_folder}/*.csv)")
    for file in pending.to_read:
        header, _ = read_header(spark, file.display_path)
        check_columns(file.display_path, header, SPECS[file.table].column_names)


class _Run:
    """What one ingest run read and wrote, file by file (the handler of the landing stream)."""

    def __init__(self, spark: SparkSession, params: IngestParams, pending: Pending) -> None:
        self.spark, self.params, self.pending = spark, params, pending
        self.done: set[tuple[Any, ...]] = set(pending.recorded.values())
        self.files: list[dict[str, Any]] = []
        self.reasons: Counter[tuple[str, str, str]] = Counter()
        self.quarantine_inserted = 0
        self.calls = 0

    def read(self, delivered: list[LandedFile]) -> None:
        """Ingest the files not read before (the first call also takes every pending file: changed
        dimension files must be read before new transactions that reference them)."""
        self.calls += 1
        extra = self.pending.to_read if self.calls == 1 else []
        todo = [f for f in in_table_order([*delivered, *extra]) if f.stamp not in self.done]
        todo = list({f.stamp: f for f in todo}.values())
        if not todo:
            return
        problems, quarantined_lines = [], 0
        try:
            for file in todo:
                source = read_csv(self.spark, file.display_path, SPECS[file.table].column_names)
                figures, bad = _ingest_table(
                    self.spark, self.params.tables, SPECS[file.table], source, self.params
                )
                self.files.append(figures | {"changed": file in self.pending.changed})
                problems.append(bad)
                quarantined_lines += figures["quarantined"]
            if quarantined_lines or not table_exists(self.spark, self.params.tables, Tables.QUARANTINE):
                quarantined = functools.reduce(DataFrame.unionByName, problems)
                for row in quarantined.groupBy("table", "column", "reason").count().collect():
                    self.reasons[(row["table"], row["column"], row["reason"])] += row["count"]
                tables = self.params.tables
                self.quarantine_inserted += write_quarantine(self.spark, tables, quarantined).inserted
        finally:
            for frame in problems:
                frame.unpersist()
        record_files(self.spark, self.params.tables, stamps(self.spark, todo), Tables.LANDED_FILES)
        self.done.update(f.stamp for f in todo)


def run_ingest(params: IngestParams, spark: SparkSession | None = None) -> dict[str, Any]:
    """Ingest the landing folder's new and changed files; returns per-file figures, the files found
    changed, quarantine reasons and table versions. A run that finds nothing new reads and writes nothing."""
    spark = spark or get_spark("fashionrec-ingest")
    tables = params.tables
    started = time.perf_counter()
    if not folder_exists(spark, params.data_path):
        raise SourceFileError(f"{params.data_path}: landing folder not found")
    if not table_exists(spark, tables, Tables.LANDED_FILES):
        reset_checkpoint(params)  # a fresh lakehouse reads every file, whatever an old checkpoint says
    pending = pending_files(spark, params)
    _check_landing(spark, params, pending)
    changed = [
        {
            "path": f.display_path,
            "table": f.table,
            "recorded": {"length": pending.recorded[f.path][2], "modified": str(pending.recorded[f.path][1])},
            "now": {"length": f.length, "modified": str(f.modified)},
        }
        for f in pending.changed
    ]
    for file in changed:
        log.warning("%s changed after it was ingested (%s): reading it again", file["path"], file)
    run = _Run(spark, params, pending)
    batches = stream_new_files(spark, params, run.read) if pending.to_read else 0
    run.read([])  # pending files the stream did not deliver (changed files; a checkpoint ahead of the table)

    versions = {
        name: current_version(spark, tables, name)
        for name in (
            Tables.ARTICLES,
            Tables.CUSTOMERS,
            Tables.TRANSACTIONS,
            Tables.ARTICLE_AVAILABILITY,
            Tables.QUARANTINE,
        )
    }
    row_counts = {
        name: read_table(spark, tables, name).count() for name in versions if versions[name] is not None
    }
    return {
        "lakehouse": tables.describe(),
        "landing": params.data_path,
        "file_source": params.file_source,
        "files_found": len(pending.found),
        "files_read": len(run.files),
        "micro_batches": batches,
        "changed_files": changed,
        "ignored_files": pending.ignored,
        "ingest": run.files,
        "quarantine_reasons": [
            {"table": t, "column": c, "reason": r, "rows": n} for (t, c, r), n in sorted(run.reasons.items())
        ],
        "quarantine_inserted": run.quarantine_inserted,
        "table_rows": row_counts,
        "versions": versions,
        "seconds": round(time.perf_counter() - started, 1),
    }
