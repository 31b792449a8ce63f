"""Which source files were read before: a Delta table of (path, modificationTime, length) stamps.

Shared by the photo ingest (`image_file_state`) and the CSV landing folder (`landed_files`): a file whose
stamp is recorded is not read again, a new path is read, and a known path with another stamp has changed.
A file is recorded only after the rows read from it are committed, so a crash in between makes the next
run read it again, which the idempotent MERGEs absorb.
"""

from __future__ import annotations

import os
import re

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config.tables import TableLocator
from fashionrec.lake.tables import create_table, delta_table, read_table, table_exists

FILE_STAMP = ["path", "modificationTime", "length"]


def binary_files(spark: SparkSession, folder: str, glob: str) -> DataFrame:
    """(path, modificationTime, length, content) of every file under `folder` (recursively) matching
    `glob`. Spark's binary file source reads a file's bytes only when `content` is selected."""
    return (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .option("pathGlobFilter", glob)
        .load(folder)
    )


def list_files(spark: SparkSession, folder: str, glob: str) -> DataFrame:
    """FILE_STAMP of every file under `folder` matching `glob`, without reading any file's bytes."""
    return binary_files(spark, folder, glob).select(*FILE_STAMP)


def unrecorded_files(
    spark: SparkSession, tables: TableLocator, listing: DataFrame, state_table: str, *required: str
) -> DataFrame:
    """Rows of `listing` whose stamp is not recorded in `state_table`: all of them while the state or any
    of the `required` tables does not exist (a lost table is rebuilt from its files)."""
    if not all(table_exists(spark, tables, t) for t in (state_table, *required)):
        return listing
    return listing.join(read_table(spark, tables, state_table).select(*FILE_STAMP), FILE_STAMP, "left_anti")


def record_files(spark: SparkSession, tables: TableLocator, listing: DataFrame, state_table: str) -> None:
    """Remember these files (once their rows are committed): the next run does not read them again.

    Only files just read are recorded, so every call changes the state: one MERGE on the path, without
    the changed-rows check of `upsert` (a few seconds saved on every ingest)."""
    stamped = listing.withColumn("stamp", F.concat_ws("/", "modificationTime", "length"))
    if not table_exists(spark, tables, state_table):
        create_table(stamped, tables, state_table)
        return
    (
        delta_table(spark, tables, state_table)
        .alias("t")
        .merge(stamped.alias("s"), "t.path = s.path")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .execute()
    )


def local_folder(folder: str) -> str | None:
    """The local (or FUSE-mounted, e.g. /Volumes) path of `folder`; None for a remote URI."""
    if folder.startswith("file:"):
        return os.path.abspath(folder.removeprefix("file:").removeprefix("//"))
    return None if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+:", folder) else os.path.abspath(folder)


def folder_exists(spark: SparkSession, folder: str) -> bool:
    """Whether `folder` exists: a local (or FUSE) check, else Hadoop's FileSystem (DBFS, cloud storage)."""
    local = local_folder(folder)
    if local is not None:
        return os.path.isdir(local)
    path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(folder)
    return bool(path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(path))
