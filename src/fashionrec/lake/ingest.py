"""Task `ingest`: the retailer's CSV files into bronze Delta tables, idempotently and incrementally.

Order: articles, customers, then transactions (their foreign keys are checked against the first two).
Every file's header is checked before anything is written. Articles and customers are upserted on their
id (a changed row updates in place); transactions have no id in the source, so each gets a stable
`txn_id`: a hash of its values and its occurrence number among identical rows, so re-reading a file
adds nothing while genuine repeat purchases on the same day survive.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from fashionrec.config import IngestParams, TableLocator, Tables
from fashionrec.data.readers import LINE, CsvSource, read_csv
from fashionrec.data.schema import ARTICLE_AVAILABILITY, ARTICLES, CUSTOMERS, TRANSACTIONS, TableSpec
from fashionrec.data.validation import BAD, Validated, flag_duplicates, flag_unknown_references, validate
from fashionrec.lake.quarantine import quarantine_rows, write_quarantine
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, read_table, upsert

log = logging.getLogger(__name__)

ROW_HASH = "_row_hash"
TXN_ID = "txn_id"
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


def sample_by_customer(lines: DataFrame, fraction: float, seed: int) -> DataFrame:
    """Keep a stable `fraction` of customers: the same customers in customers.csv and transactions."""
    if fraction >= 1.0:
        return lines
    bucket = F.pmod(F.xxhash64(F.lit(seed), F.trim(F.col("customer_id"))), F.lit(1_000_000))
    return lines.where(bucket < F.lit(round(fraction * 1_000_000)))


def _source_paths(params: IngestParams) -> dict[str, str]:
    files = {
        ARTICLES.table: params.articles_file,
        CUSTOMERS.table: params.customers_file,
        TRANSACTIONS.table: params.transactions_file,
    }
    paths = {table: os.path.join(params.data_path, name) for table, name in files.items()}
    availability = os.path.join(params.data_path, params.availability_file)
    if os.path.exists(availability):
        paths[ARTICLE_AVAILABILITY.table] = availability
    return paths


def _validated(
    spark: SparkSession, tables: TableLocator, spec: TableSpec, source: CsvSource, params: IngestParams
) -> tuple[Validated, DataFrame]:
    """Validated rows (persisted: the caller unpersists the returned frame) with key checks applied."""
    lines = source.lines
    if "customer_id" in spec.column_names:
        lines = sample_by_customer(lines, params.sample_fraction, params.sample_seed)
    checked = validate(lines, spec)
    cached = checked.rows.persist()
    checked = Validated(cached, spec, checked.lines)
    if spec.foreign_keys:
        references = {
            column: read_table(spark, tables, table).select(column)
            for column, table in spec.foreign_keys.items()
        }
        return flag_unknown_references(checked, references), cached
    return flag_duplicates(checked, list(spec.keys)), cached


def _bronze_rows(spec: TableSpec, validated: Validated) -> DataFrame:
    if spec is TRANSACTIONS:
        good = validated.rows.where(~F.col(BAD))
        return with_transaction_ids(good).select(TXN_ID, *spec.column_names)
    good = validated.good()
    return good.withColumn(ROW_HASH, row_hash(spec.column_names))


def _ingest_table(
    spark: SparkSession, tables: TableLocator, spec: TableSpec, source: CsvSource, params: IngestParams
) -> tuple[dict[str, Any], DataFrame]:
    started = time.perf_counter()
    validated, cached = _validated(spark, tables, spec, source, params)
    try:
        considered = cached.count()
        bronze = _bronze_rows(spec, validated)
        if spec is TRANSACTIONS:
            result = upsert(spark, tables, spec.table, bronze, keys=[TXN_ID], prune_column="t_dat")
        else:
            result = upsert(spark, tables, spec.table, bronze, keys=list(spec.keys), compare_column=ROW_HASH)
        problems = quarantine_rows(validated.problems(), spec.table, source.path).persist()
        bad_lines = problems.select("line").distinct().count()
    finally:
        cached.unpersist()
    figures = {
        "table": spec.table,
        "source_file": source.path,
        "lines_read": source.data_lines,
        "blank_lines": source.blank_lines,
        "continuation_lines": source.continuation_lines,
        "rows_read": source.records,
        "sampled_out": source.records - considered,
        "quarantined": bad_lines,
        "inserted": result.inserted,
        "updated": result.updated,
        "version": result.version,
        "committed": result.committed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    log.info("ingested %s: %s", spec.table, figures)
    return figures, problems


def run_ingest(params: IngestParams, spark: SparkSession | None = None) -> dict[str, Any]:
    """Ingest the three files; returns per-table figures, quarantine reasons and table versions."""
    spark = spark or get_spark("fashionrec-ingest")
    tables = params.tables
    started = time.perf_counter()
    paths = _source_paths(params)
    # Fail before writing anything when any file is missing or lacks required columns.
    specs = [spec for spec in (*ORDER, ARTICLE_AVAILABILITY) if spec.table in paths]
    sources = {spec.table: read_csv(spark, paths[spec.table], spec.column_names) for spec in specs}

    per_table, problem_frames = [], []
    for spec in specs:
        figures, problems = _ingest_table(spark, tables, spec, sources[spec.table], params)
        per_table.append(figures)
        problem_frames.append(problems)

    all_problems = problem_frames[0]
    for frame in problem_frames[1:]:
        all_problems = all_problems.unionByName(frame)
    reasons = [
        {"table": r["table"], "column": r["column"], "reason": r["reason"], "rows": r["count"]}
        for r in all_problems.groupBy("table", "column", "reason")
        .count()
        .orderBy("table", "column", "reason")
        .collect()
    ]
    quarantine = write_quarantine(spark, tables, all_problems)
    for frame in problem_frames:
        frame.unpersist()

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
        "ingest": per_table,
        "quarantine_reasons": reasons,
        "quarantine_inserted": quarantine.inserted,
        "table_rows": row_counts,
        "versions": versions,
        "seconds": round(time.perf_counter() - started, 1),
    }
