"""The landing folder: which CSV files are new or changed since the last ingest, found as Auto Loader would.

A landing folder holds the three Kaggle files (`articles.csv`, `customers.csv`, `transactions_train.csv`),
the optional `article_availability.csv`, and any number of later transaction files under
`transactions/` (a day's or a week's purchases each, with the same header). Each file is read once:

- New files are discovered by a streaming file source with a checkpoint, run with
  `trigger(availableNow=True)`: Spark's file source locally, Auto Loader (`cloudFiles`) on Databricks
  (`file_source`). Only file metadata flows through the stream (the binary file format reads no bytes
  unless asked); each micro-batch's files are ingested by the caller's handler before the batch commits,
  so a crash makes the next run deliver them again.
- The `landed_files` table records each file's (path, modification time, length) once its rows are
  committed. It is the authority on what was read: a file the stream delivers again with the same stamp is
  skipped, and a known path with another stamp has *changed*: it is reported and read again (the MERGEs
  are idempotent, so only rows that were not there before are added; rows it no longer holds stay).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from fashionrec.config import IngestParams, Tables
from fashionrec.data.schema import ARTICLE_AVAILABILITY, ARTICLES, CUSTOMERS, TRANSACTIONS
from fashionrec.lake.file_state import FILE_STAMP, list_files, local_folder
from fashionrec.lake.tables import read_table, table_exists

log = logging.getLogger(__name__)

CSV_GLOB = "*.csv"
TABLE_ORDER = (ARTICLES.table, CUSTOMERS.table, TRANSACTIONS.table, ARTICLE_AVAILABILITY.table)
STREAM_SCHEMA = "path string, modificationTime timestamp, length long, content binary"


@dataclass(frozen=True)
class LandedFile:
    """One source file: its path as Spark names it (a URI), the table it feeds, and its stamp."""

    path: str
    table: str
    modified: datetime
    length: int

    @property
    def stamp(self) -> tuple[str, datetime, int]:
        return (self.path, self.modified, self.length)

    @property
    def display_path(self) -> str:
        return display_path(self.path)


def display_path(uri: str) -> str:
    """A file as the user names it: a plain path for local files (quarantine rows and reports use it)."""
    return uri.removeprefix("file://").removeprefix("file:") if uri.startswith("file:") else uri


def kaggle_files(params: IngestParams) -> dict[str, str]:
    """Table → the name of its file at the top of the landing folder (Kaggle layout)."""
    return {
        ARTICLES.table: params.articles_file,
        CUSTOMERS.table: params.customers_file,
        TRANSACTIONS.table: params.transactions_file,
        ARTICLE_AVAILABILITY.table: params.availability_file,
    }


def table_of(path: str, params: IngestParams) -> str | None:
    """The table a landed CSV file feeds (by name and folder), or None for a file that is not ours."""
    if _same_folder(path, os.path.join(params.data_path, params.transactions_folder)):
        return TRANSACTIONS.table
    named = {name: table for table, name in kaggle_files(params).items()}
    return named.get(os.path.basename(path)) if _same_folder(path, params.data_path) else None


def _same_folder(path: str, folder: str) -> bool:
    """Whether `path` lies directly in `folder` (a top-level Kaggle file, not one in a sub-folder)."""
    parent = os.path.dirname(display_path(path))
    local = local_folder(folder)
    return os.path.abspath(parent) == local if local is not None else parent.rstrip("/") == folder.rstrip("/")


def in_table_order(files: list[LandedFile]) -> list[LandedFile]:
    """Referenced tables first (transactions check their articles and customers), then by path: a
    week of daily files lands in date order."""
    return sorted(files, key=lambda f: (TABLE_ORDER.index(f.table), f.path))


def landed(rows: list[Any], params: IngestParams) -> tuple[list[LandedFile], list[str]]:
    """FILE_STAMP rows as LandedFiles, and the paths of CSV files that feed no table (reported)."""
    files, ignored = [], []
    for row in rows:
        table = table_of(row["path"], params)
        if table is None:
            ignored.append(display_path(row["path"]))
        else:
            files.append(LandedFile(row["path"], table, row["modificationTime"], int(row["length"])))
    return in_table_order(files), sorted(ignored)


@dataclass(frozen=True)
class Pending:
    """The landing folder against `landed_files`: what this run must read, and what it found changed."""

    found: list[LandedFile]
    new: list[LandedFile]
    changed: list[LandedFile]
    ignored: list[str]
    recorded: dict[str, tuple[Any, ...]]  # path -> stamp recorded in landed_files before this run

    @property
    def to_read(self) -> list[LandedFile]:
        return in_table_order([*self.new, *self.changed])


def pending_files(spark: SparkSession, params: IngestParams) -> Pending:
    """List the landing folder (metadata only) and compare each file's stamp with `landed_files`.

    A table that does not exist (never ingested, or dropped) has all of its files read again."""
    tables = params.tables
    found, ignored = landed(list_files(spark, params.data_path, CSV_GLOB).collect(), params)
    recorded: dict[str, tuple[Any, ...]] = {}
    if table_exists(spark, tables, Tables.LANDED_FILES):
        recorded = {
            r["path"]: (r["path"], r["modificationTime"], r["length"])
            for r in read_table(spark, tables, Tables.LANDED_FILES).select(*FILE_STAMP).collect()
        }
    existing = {t for t in TABLE_ORDER if table_exists(spark, tables, t)}
    new, changed = [], []
    for file in found:
        before = recorded.get(file.path)
        if before is None or file.table not in existing:
            new.append(file)
        elif before != file.stamp:
            changed.append(file)
    return Pending(found, new, changed, ignored, recorded)


def checkpoint_location(params: IngestParams) -> str:
    """Where the stream keeps its progress: `checkpoint_dir`, or a folder beside the lakehouse's tables."""
    if params.checkpoint_dir:
        return os.path.join(params.checkpoint_dir, "landing")
    if params.catalog:
        raise ValueError(
            "checkpoint_dir is required with a catalog: set the bundle variable checkpoint_dir to a "
            "Volume folder (e.g. /Volumes/main/fashionrec/checkpoints)"
        )
    return os.path.join(os.path.abspath(params.lakehouse), "_checkpoints", "landing")


def reset_checkpoint(params: IngestParams) -> None:
    """Forget the stream's progress (local folders only): used when `landed_files` does not exist, so a
    fresh lakehouse reads every file whatever an old checkpoint says."""
    location = local_folder(checkpoint_location(params))
    if location is not None and os.path.isdir(location):
        shutil.rmtree(location)


def _stream(spark: SparkSession, params: IngestParams) -> DataFrame:
    if params.file_source == "autoloader":
        reader = (
            spark.readStream.format("cloudFiles")
            .option("cloudFiles.format", "binaryFile")
            .option("cloudFiles.includeExistingFiles", "true")
        )
    else:
        reader = spark.readStream.format("binaryFile").schema(STREAM_SCHEMA)
    return (
        reader.option("recursiveFileLookup", "true")
        .option("pathGlobFilter", CSV_GLOB)
        .load(params.data_path)
        .select(*FILE_STAMP)
    )


def stream_new_files(
    spark: SparkSession, params: IngestParams, handle: Callable[[list[LandedFile]], None]
) -> int:
    """Run the file stream once over everything available (`availableNow`); `handle` gets each
    micro-batch's files (those that feed a table, in table order) before the batch commits. Returns the
    number of micro-batches. An error in `handle` stops the stream and is raised as it was."""
    failure: list[BaseException] = []
    batches = 0

    def on_batch(batch: DataFrame, batch_id: int) -> None:
        nonlocal batches
        batches += 1
        files, _ = landed(batch.collect(), params)
        log.info("landing micro-batch %d: %d file(s)", batch_id, len(files))
        try:
            handle(files)
        except BaseException as error:  # kept: Spark wraps it in a StreamingQueryException
            failure.append(error)
            raise

    query = (
        _stream(spark, params)
        .writeStream.foreachBatch(on_batch)
        .option("checkpointLocation", checkpoint_location(params))
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination()
    except Exception:
        if failure:
            raise failure[0] from None
        raise
    return batches


def stamps(spark: SparkSession, files: list[LandedFile]) -> DataFrame:
    """FILE_STAMP rows of `files` with the table each feeds, to record them in `landed_files`."""
    return spark.createDataFrame(
        [(*f.stamp, f.table) for f in files],
        "path string, modificationTime timestamp, length long, table string",
    )
