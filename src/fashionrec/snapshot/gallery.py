"""The photo-search gallery of the serving snapshot: every catalogue article's embedding under the current
image model, read from the `image_embeddings` table (build side; `serving.photo` reads it)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from fashionrec.config import TableLocator, Tables
from fashionrec.lake.tables import current_version, read_table
from fashionrec.serving.photo import ENCODER_DIR, GALLERY_FILE
from fashionrec.similarity.task import model_version


def write_gallery(
    spark: SparkSession, tables: TableLocator, artifacts_dir: str | Path, snapshot_dir: str | Path
) -> int | None:
    """Write the current image model's catalogue embeddings to the snapshot; None when the image tasks
    have not run (no model or no embeddings), so the model is registered without photo search."""
    if not (Path(artifacts_dir) / ENCODER_DIR / "saved_model.pb").exists():
        return None
    if current_version(spark, tables, Tables.IMAGE_EMBEDDINGS) is None:
        return None
    version = model_version(artifacts_dir)
    rows = (
        read_table(spark, tables, Tables.IMAGE_EMBEDDINGS)
        .where(F.col("model_version") == version)
        .select("article_id", "embedding")
        # Photos of articles outside the catalogue (a stale images folder) must never be answered.
        .join(read_table(spark, tables, Tables.ARTICLES).select("article_id"), "article_id", "left_semi")
        .orderBy("article_id")
        .toPandas()
    )
    if rows.empty:
        return None
    vectors = np.stack(rows["embedding"].to_numpy()).astype(np.float32)
    target = Path(snapshot_dir) / GALLERY_FILE
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".npz", delete=False) as handle:
        np.savez(handle, article_ids=rows["article_id"].to_numpy(dtype=str), vectors=vectors)
    os.replace(handle.name, target)  # readers see the old gallery or the new one
    return len(rows)
