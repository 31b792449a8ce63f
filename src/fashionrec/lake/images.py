"""Task `ingest_images`: a folder of product photos (Kaggle layout `images/<3 digits>/<id>.jpg`) into
the Delta table `article_images` (article_id, content, width, height, source_path, content_hash).

Spark's binary file reader lists and reads the files; each Spark task decodes its images' headers with
Pillow to check them. Incremental twice over: files whose (path, modification time, length) were
ingested before (`image_file_state`) are not read again, and the MERGE keys on article_id and compares a
SHA-256 of the bytes, so a re-run commits nothing and a changed or new photo updates only its row. Empty,
unreadable or misnamed files go to the quarantine table with a reason; the job goes on.
"""

from __future__ import annotations

import functools
import io
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from fashionrec.config import ImageIngestParams, Tables
from fashionrec.config.tables import TableLocator
from fashionrec.lake.file_state import FILE_STAMP, binary_files, local_folder, record_files, unrecorded_files
from fashionrec.lake.quarantine import QUARANTINE_COLUMNS, write_quarantine
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, read_table, upsert

ARTICLE_FILE = r"(?:^|/)([0-9]{10})\.jpe?g$"
CHECKED_SCHEMA = "path string, content binary, width int, height int, reason string"


def read_image_files(spark: SparkSession, folder: str) -> DataFrame:
    """(path, modificationTime, length, content) of every .jpg under `folder`, recursively."""
    return binary_files(spark, folder, "*.jp*g")


READ_WHOLE_FOLDER = 20_000  # changed files above which one folder scan beats a list of paths


def read_changed(spark: SparkSession, folder: str, paths: list[str], files: int) -> DataFrame:
    """(path, content) of `paths`: one folder scan when they are all of its `files` or very many."""
    everything = read_image_files(spark, folder).select("path", "content")
    if len(paths) == files:
        return everything
    if len(paths) > READ_WHOLE_FOLDER:
        return everything.join(
            spark.createDataFrame([(p,) for p in paths], "path string"), "path", "left_semi"
        )
    if not paths:
        return spark.createDataFrame([], "path string, content binary")
    return spark.read.format("binaryFile").load(paths).select("path", "content")


def empty_image_files(spark: SparkSession, folder: str) -> list[str]:
    """Zero-byte .jpg files under `folder`: Spark's file sources skip them, the quarantine must not."""
    local = local_folder(folder)
    if local is not None:  # a local or FUSE-mounted folder (/Volumes): os.walk, not a Java call per file
        return [
            f"file:{os.path.join(root, name)}"
            for root, _, names in os.walk(local)
            for name in sorted(names)
            if name.lower().endswith((".jpg", ".jpeg")) and os.path.getsize(os.path.join(root, name)) == 0
        ]
    jvm = spark.sparkContext._jvm  # Hadoop's FileSystem: DBFS, cloud storage
    root = jvm.org.apache.hadoop.fs.Path(folder)
    files = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).listFiles(root, True)
    empty = []
    while files.hasNext():
        status = files.next()
        name = status.getPath().getName().lower()
        if status.getLen() == 0 and (name.endswith(".jpg") or name.endswith(".jpeg")):
            empty.append(str(status.getPath()))
    return empty


def _check(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    from PIL import Image

    for batch in batches:
        widths, heights, reasons = [], [], []
        for content in batch["content"]:
            width = height = None
            reason = None
            if content is None or len(content) == 0:
                reason = "empty file"
            else:
                try:
                    with Image.open(io.BytesIO(content)) as image:
                        image.verify()
                    with Image.open(io.BytesIO(content)) as image:
                        image.load()
                        width, height = image.size
                except Exception as error:  # any decoder error means "unreadable"
                    message = re.sub(r"\s*<[^>]*>", "", str(error))  # no object addresses: stable ids
                    reason = f"unreadable image: {type(error).__name__}: {message}"[:300]
            widths.append(width)
            heights.append(height)
            reasons.append(reason)
        yield pd.DataFrame(
            {
                "path": batch["path"],
                "content": batch["content"],
                "width": pd.array(widths, dtype="Int32"),
                "height": pd.array(heights, dtype="Int32"),
                "reason": reasons,
            }
        )


def checked_images(files: DataFrame) -> DataFrame:
    """(path, content) rows with article_id, width, height and `reason` (null for good images)."""
    checked = files.mapInPandas(_check, CHECKED_SCHEMA)
    article_id = F.regexp_extract("path", ARTICLE_FILE, 1)
    first = Window.partitionBy("article_id").orderBy("path")
    out = checked.withColumn("article_id", F.when(article_id != "", article_id)).withColumn(
        "reason",
        F.coalesce(
            F.when(F.col("article_id").isNull(), F.lit("file name is not <10-digit article id>.jpg")),
            F.col("reason"),
        ),
    )
    duplicate = F.row_number().over(first) > 1
    return out.withColumn(
        "reason",
        F.coalesce(
            "reason",
            F.when(
                F.col("article_id").isNotNull() & duplicate, F.lit("another file has the same article id")
            ),
        ),
    )


def _quarantine(bad: DataFrame) -> DataFrame:
    return bad.select(
        F.xxhash64("path", "reason", F.sha2("content", 256)).alias("quarantine_id"),
        F.lit(Tables.ARTICLE_IMAGES).alias("table"),
        F.col("path").alias("source_file"),
        F.lit(None).cast("long").alias("line"),
        F.lit("content").alias("column"),
        F.col("reason"),
        F.concat(F.lit("bytes="), F.coalesce(F.length("content"), F.lit(0)).cast("string")).alias("raw"),
        F.lit(None).cast("binary").alias("raw_bytes"),  # the image itself stays where it is
        F.current_timestamp().alias("quarantined_at"),
    ).select(*QUARANTINE_COLUMNS)


def run_ingest_images(params: ImageIngestParams, spark: SparkSession | None = None) -> dict[str, Any]:
    spark = spark or get_spark("fashionrec-ingest-images")
    started = time.perf_counter()
    tables = params.tables
    listing = read_image_files(spark, params.images_path).select(*FILE_STAMP).persist()  # no bytes read
    try:
        found = listing.count()
        # Collected once: what this run reads is exactly what it records, whatever the state says later.
        todo = unrecorded_files(
            spark, tables, listing, Tables.IMAGE_FILE_STATE, Tables.ARTICLE_IMAGES
        ).collect()
    finally:
        listing.unpersist()
    paths = [row["path"] for row in todo]
    files_read = read_changed(spark, params.images_path, paths, found) if paths else None
    result = _ingest(spark, params, files_read, found)
    if todo:
        record_files(spark, tables, spark.createDataFrame(todo, listing.schema), Tables.IMAGE_FILE_STATE)
    result["files_read"] = len(paths)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _ingest(
    spark: SparkSession, params: ImageIngestParams, files_read: DataFrame | None, found: int
) -> dict[str, Any]:
    """Check, MERGE and quarantine `files_read` (None: no file changed) and the folder's empty files."""
    tables = params.tables
    empty = empty_image_files(spark, params.images_path)
    files = found + len(empty)
    if files == 0:
        raise ValueError(f"no .jpg files under {params.images_path}")
    if files_read is None and not empty:
        return _unchanged(spark, params, files)
    pending = [spark.createDataFrame([(p, b"") for p in empty], "path string, content binary")]
    if files_read is not None:
        pending.append(files_read)
    checked = checked_images(functools.reduce(DataFrame.unionByName, pending)).persist()
    try:
        good = checked.where(F.col("reason").isNull()).select(
            "article_id",
            "content",
            "width",
            "height",
            F.col("path").alias("source_path"),
            F.sha2("content", 256).alias("content_hash"),
        )
        result = upsert(
            spark, tables, Tables.ARTICLE_IMAGES, good, keys=["article_id"], compare_column="content_hash"
        )
        bad = checked.where(F.col("reason").isNotNull())
        reasons = [
            {"reason": r["reason"], "files": r["count"]}
            for r in bad.groupBy("reason").count().orderBy("reason").collect()
        ]
        quarantine = write_quarantine(spark, tables, _quarantine(bad))
    finally:
        checked.unpersist()
    return {
        "images_path": params.images_path,
        "files": files,
        "inserted": result.inserted,
        "updated": result.updated,
        "quarantined": sum(r["files"] for r in reasons),
        "quarantine_reasons": reasons,
        "quarantine_inserted": quarantine.inserted,
        "images_of_known_articles": _known_articles(spark, tables),
        "version": result.version,
        "committed": result.committed,
    }


def _unchanged(spark: SparkSession, params: ImageIngestParams, files: int) -> dict[str, Any]:
    """The figures of a run that found every file as it was ingested before (nothing read or written)."""
    return {
        "images_path": params.images_path,
        "files": files,
        "inserted": 0,
        "updated": 0,
        "quarantined": 0,
        "quarantine_reasons": [],
        "quarantine_inserted": 0,
        "images_of_known_articles": _known_articles(spark, params.tables),
        "version": current_version(spark, params.tables, Tables.ARTICLE_IMAGES),
        "committed": False,
    }


def _known_articles(spark: SparkSession, tables: TableLocator) -> int | None:
    """Images whose article is in `articles` (None before articles are ingested)."""
    if current_version(spark, tables, Tables.ARTICLES) is None:
        return None
    images = read_table(spark, tables, Tables.ARTICLE_IMAGES)
    return images.join(read_table(spark, tables, Tables.ARTICLES), "article_id", "left_semi").count()
