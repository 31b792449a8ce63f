"""Image similarity: neighbour metrics by hand, then the model and the index tasks on the tiny catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fashionrec.similarity.neighbours import nearest, precision_at_k, random_rows


def test_precision_counts_neighbours_sharing_the_label():
    labels = np.array([0, 0, 1, 1])
    rows = np.array([[1, 2], [0, 3], [3, 0], [2, -1]])  # -1: no neighbour
    # hits: item0 1/2, item1 1/2, item2 1/2, item3 1/1 -> 4 of 7 valid neighbours
    assert precision_at_k(rows, labels) == pytest.approx(4 / 7)


def test_nearest_excludes_the_item_itself_and_random_rows_too():
    vectors = np.eye(4, dtype=np.float32) + 0.01
    rows, scores = nearest(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), 2)
    assert all(i not in row for i, row in enumerate(rows)) and scores.shape == (4, 2)
    random = random_rows(50, 5)
    assert not (random == np.arange(50)[:, None]).any() and random.max() < 50


def test_holdout_keeps_every_colour_of_a_product_on_one_side():
    from fashionrec.similarity.task import holdout_mask

    codes = pd.Series([1, 1, 2, 2, 3, 3] * 50)
    mask = holdout_mask(codes, 0.3, seed=1)
    assert all(len(set(mask[codes == c])) == 1 for c in codes.unique())
    assert np.array_equal(mask, holdout_mask(codes, 0.3, seed=1))


@pytest.fixture(scope="module")
def image_lake(spark, tiny_lake, tiny_data, tmp_path_factory):
    """The shared tiny lakehouse plus its images (a table no other test reads); artifacts in a new folder."""
    from fashionrec.config import ImageIngestParams
    from fashionrec.lake.images import run_ingest_images

    root = tmp_path_factory.mktemp("images")
    tables, _ = tiny_lake
    run_ingest_images(
        ImageIngestParams(lakehouse=tables.lakehouse, images_path=str(tiny_data / "images")), spark
    )
    return root, tables.lakehouse


def test_image_model_beats_random_and_the_index_is_incremental(spark, image_lake, tiny_data):
    from fashionrec.config import ImageIndexParams, ImageSimilarityParams
    from fashionrec.similarity.task import run_index_images, run_train_image_similarity

    image_lake, lakehouse = image_lake
    common = dict(
        lakehouse=lakehouse,
        artifacts_dir=str(image_lake / "artifacts"),
        mlflow_tracking_uri=f"sqlite:///{image_lake / 'mlflow.db'}",
    )
    trained = run_train_image_similarity(
        ImageSimilarityParams(**common, epochs=2, steps_per_epoch=25, class_key="type_colour"), spark
    )
    learned = trained["holdout_precision"][0]
    assert learned["precision@5_same_type"] > 0.3  # random: about 0.1 on this catalogue
    assert (image_lake / "artifacts" / "similarity" / "model" / "saved_model.pb").exists()

    params = ImageIndexParams(**common, reports_dir=str(image_lake / "reports"), neighbours=6)
    first = run_index_images(params, spark)
    articles = len(pd.read_csv(tiny_data / "articles.csv"))
    assert first["embedded_now"] == first["embeddings"] == articles
    table = {row["method"]: row for row in first["neighbour_precision"]}
    assert (
        table["learned (TF Similarity)"]["precision@5_same_type"] > table["random"]["precision@5_same_type"]
    )
    assert (image_lake / "reports" / "similar_articles.png").exists()
    similar = spark.read.format("delta").load(f"{lakehouse}/similar_articles")
    row = similar.first()
    assert len(row["neighbour_ids"]) == 6 and row["article_id"] not in row["neighbour_ids"]
    assert similar.count() == articles

    again = run_index_images(params, spark)
    assert again["embedded_now"] == 0 and again["embeddings"] == articles
