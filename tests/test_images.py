"""Synthetic product images and the `ingest_images` task (binary files → Delta, quarantine, incremental)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from fashionrec.data.images import image_path, render


def _pixels(row: dict) -> np.ndarray:
    return np.asarray(render(row), dtype=np.float32) / 255.0


def _coarse(pixels: np.ndarray) -> np.ndarray:
    """8x8 average pooling: compares shapes and colours, not the few pixels the jitter moves."""
    return pixels.reshape(8, 8, 8, 8, 3).mean(axis=(1, 3))


def test_images_are_deterministic_and_carry_type_and_colour(tiny_data):
    articles = pd.read_csv(tiny_data / "articles.csv", dtype={"article_id": str})
    row = articles.iloc[0].to_dict()
    assert np.array_equal(_pixels(row), _pixels(row))
    assert (tiny_data / "images" / ".complete").read_text().startswith(f"{len(articles)} images")
    assert image_path(tiny_data / "images", row["article_id"]).exists()

    base = {"product_code": 1234567, "graphical_appearance_name": "Solid"}
    tee = _pixels(
        {**base, "article_id": "1234567001", "product_type_name": "T-shirt", "colour_group_name": "Black"}
    )
    tee_variant = _pixels(
        {**base, "article_id": "1234567002", "product_type_name": "T-shirt", "colour_group_name": "Black"}
    )
    trousers = _pixels(
        {**base, "article_id": "1234567003", "product_type_name": "Trousers", "colour_group_name": "Black"}
    )
    red_tee = _pixels(
        {**base, "article_id": "1234567004", "product_type_name": "T-shirt", "colour_group_name": "Red"}
    )
    assert not np.array_equal(tee, tee_variant)  # jitter: close, not identical

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(_coarse(a) - _coarse(b)).mean())

    same = distance(tee, tee_variant)
    assert same < distance(tee, trousers) and same < distance(tee, red_tee)


def test_ingest_images_quarantines_bad_files_and_is_incremental(spark, tiny_data, tmp_path):
    from fashionrec.config import ImageIngestParams
    from fashionrec.lake.images import run_ingest_images

    folder = tmp_path / "images"
    shutil.copytree(tiny_data / "images", folder)
    good = len(list(folder.rglob("*.jpg")))
    (folder / "999").mkdir()
    (folder / "999" / "9990000001.jpg").write_bytes(b"")
    (folder / "999" / "9990000002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    originals = sorted(folder.rglob("0*.jpg"))
    shutil.copy(originals[0], folder / "999" / "front.jpg")  # a good photo, but no article id in its name
    params = ImageIngestParams(lakehouse=str(tmp_path / "lake"), images_path=str(folder))

    first = run_ingest_images(params, spark)
    assert first["inserted"] == good and first["files"] == good + 3
    reasons = {r["reason"].split(":")[0]: r["files"] for r in first["quarantine_reasons"]}
    assert reasons == {
        "empty file": 1,
        "unreadable image": 1,
        "file name is not <10-digit article id>.jpg": 1,
    }
    table = spark.read.format("delta").load(str(tmp_path / "lake" / "article_images"))
    row = table.orderBy("article_id").first()
    assert (row["width"], row["height"]) == (64, 64) and len(row["content"]) > 0
    quarantine = spark.read.format("delta").load(str(tmp_path / "lake" / "quarantine"))
    assert quarantine.where("table = 'article_images'").count() == 3

    assert first["files_read"] == good + 2  # the empty file is listed apart (Spark's reader skips it)

    again = run_ingest_images(params, spark)
    assert not again["committed"] and again["inserted"] == again["updated"] == 0
    assert again["quarantine_inserted"] == 0 and again["files_read"] == 0  # nothing read twice

    originals[0].write_bytes(originals[-1].read_bytes())  # a new photo of an existing article
    new = folder / "123" / "1230000001.jpg"
    new.parent.mkdir(exist_ok=True)
    shutil.copy(originals[1], new)
    third = run_ingest_images(params, spark)
    assert (third["inserted"], third["updated"]) == (1, 1) and third["files_read"] == 2
    changes = (
        spark.read.format("delta")
        .option("readChangeFeed", "true")
        .option("startingVersion", third["version"])
        .load(str(tmp_path / "lake" / "article_images"))
    )
    assert changes.where("_change_type = 'insert'").count() == 1


def test_real_photo_sample_reads(spark):
    """The real H&M photos in ../shared decode through the same checks (when the sample is present)."""
    from fashionrec.lake.images import checked_images, read_image_files
    from tests.conftest import HM_SAMPLE

    folder = HM_SAMPLE / "images"
    if not folder.exists():
        pytest.skip("no ../shared/hm_format_sample/images here")
    rows = checked_images(read_image_files(spark, str(folder)).select("path", "content")).collect()
    assert len(rows) == len(list(folder.rglob("*.jpg"))) and all(r["reason"] is None for r in rows)
    assert {(r["width"], r["height"]) for r in rows} == {(128, 128)}
