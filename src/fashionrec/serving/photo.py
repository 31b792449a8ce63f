"""Search by photo: the image encoder embeds a shopper's photo, an exact inner-product index over the
catalogue's image embeddings returns the closest articles.

`register` writes the gallery (every article's embedding under the current image model, from the
`image_embeddings` table) into the serving snapshot and stages the encoder beside the other models, so
the registered recommender answers a photo without the lakehouse.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fashionrec.config import Tables
from fashionrec.config.tables import TableLocator

if TYPE_CHECKING:  # the served model imports this module and needs no Spark
    from pyspark.sql import SparkSession

GALLERY_FILE = "photo_gallery.npz"
# Under the artifacts folder: `similarity.task.MODEL_DIR`, named again here so that the served model does not
# import the training task (Spark, MLflow) to find its encoder.
ENCODER_DIR = Path("similarity") / "model"


def write_gallery(
    spark: SparkSession, tables: TableLocator, artifacts_dir: str | Path, snapshot_dir: str | Path
) -> int | None:
    """Write the current image model's catalogue embeddings to the snapshot; None when the image tasks
    have not run (no model or no embeddings), so the model is registered without photo search."""
    from pyspark.sql import functions as F

    from fashionrec.lake.tables import current_version, read_table
    from fashionrec.similarity.task import model_version

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


class PhotoSearch:
    """The encoder and the gallery, loaded once; `search` embeds one photo and ranks the catalogue."""

    def __init__(self, encoder_dir: str | Path, gallery_file: str | Path) -> None:
        from fashionrec.retrieval.index import ArticleIndex
        from fashionrec.similarity import encoder

        self.encoder = encoder.load(encoder_dir)
        with np.load(gallery_file, allow_pickle=False) as data:
            ids, vectors = data["article_ids"].astype(str).tolist(), data["vectors"]
        self.index = ArticleIndex.build(vectors, ids, "exact")
        self.search(np.zeros((8, 8, 3), np.uint8), 1)  # traces the encoder's graph before the first request

    @classmethod
    def from_folders(cls, models_dir: str | Path, snapshot_dir: str | Path) -> PhotoSearch | None:
        encoder_dir, gallery = Path(models_dir) / ENCODER_DIR, Path(snapshot_dir) / GALLERY_FILE
        if not ((encoder_dir / "saved_model.pb").exists() and gallery.exists()):
            return None
        return cls(encoder_dir, gallery)

    def search(self, photo: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k catalogue articles whose photos are closest to `photo` ((h, w, 3) uint8), closest first."""
        import tensorflow as tf

        vector: Any = self.encoder(tf.constant(photo[np.newaxis])).numpy()
        scores, ids = self.index.search(vector, k)
        return [(article, float(score)) for article, score in zip(ids[0], scores[0], strict=True)]
