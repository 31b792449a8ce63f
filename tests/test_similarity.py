"""Image similarity: neighbour metrics by hand, then the model and the index tasks on the tiny catalogue."""

from __future__ import annotations

import json

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


def test_image_model_beats_random_and_the_index_is_incremental(spark, job_run, tiny_data):
    """The job graph's train_image_similarity and index_images figures, then index_images once more."""
    from fashionrec.config import ImageIndexParams
    from fashionrec.similarity.task import run_index_images

    tasks = json.loads((job_run / "reports" / "latest_run.json").read_text())["tasks"]
    learned = tasks["train_image_similarity"]["holdout_precision"][0]
    assert learned["precision@5_same_type"] > 0.3  # random: about 0.1 on this catalogue
    assert (job_run / "artifacts" / "similarity" / "model" / "saved_model.pb").exists()

    first = tasks["index_images"]
    articles = len(pd.read_csv(tiny_data / "articles.csv"))
    assert first["embedded_now"] == first["embeddings"] == articles
    table = {
        row["method"]: row for row in first["neighbour_precision"] if row["images"].startswith("synthetic")
    }
    assert (
        table["learned (TF Similarity)"]["precision@5_same_type"] > table["random"]["precision@5_same_type"]
    )
    assert (job_run / "reports" / "similar_articles.png").exists()
    lakehouse = job_run / "lakehouse"
    similar = spark.read.format("delta").load(f"{lakehouse}/similar_articles")
    row = similar.first()
    assert len(row["neighbour_ids"]) == 12 and row["article_id"] not in row["neighbour_ids"]
    assert similar.count() == articles

    params = ImageIndexParams(
        lakehouse=str(lakehouse),
        artifacts_dir=str(job_run / "artifacts"),
        mlflow_tracking_uri=f"sqlite:///{job_run / 'mlflow.db'}",
        reports_dir=str(job_run / "reports"),
    )
    again = run_index_images(params, spark)
    assert again["embedded_now"] == 0 and again["embeddings"] == articles
