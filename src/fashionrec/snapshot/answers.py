"""Batch scoring's answers into the serving snapshot (`recommender.stored`): the served model then answers
a customer's default request with a lookup instead of the whole pipeline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from fashionrec.config import TableLocator, Tables
from fashionrec.lake.tables import current_version, read_table
from fashionrec.ranking.score import model_version
from fashionrec.recommender.core import snapshot_fingerprint
from fashionrec.recommender.stored import ANSWERS_FILE, FINGERPRINT_KEY
from fashionrec.snapshot.build import scoring_snapshot


def write_answers(
    spark: SparkSession, tables: TableLocator, snapshot_dir: str | Path, artifacts_dir: str | Path
) -> int | None:
    """Store the `recommendations` rows of customers with purchases in the snapshot built for the same
    scoring state; returns how many, or None (nothing written) when batch scoring has not run or ran
    with another model than the one being registered."""
    if current_version(spark, tables, Tables.RECOMMENDATIONS) is None:
        return None
    if scoring_snapshot(spark, tables)["model_version"] != model_version(artifacts_dir):
        return None
    rows = (
        read_table(spark, tables, Tables.RECOMMENDATIONS)
        .where(~F.col("fallback"))
        .select("customer_id", "article_ids", "scores", "sources")
        .toArrow()
    )
    folder = Path(snapshot_dir)
    rows = rows.replace_schema_metadata({FINGERPRINT_KEY: snapshot_fingerprint(folder).encode()})
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".parquet", delete=False) as handle:
        pq.write_table(rows, handle)
    os.replace(handle.name, folder / ANSWERS_FILE)  # readers see the old file or the new one
    return rows.num_rows
