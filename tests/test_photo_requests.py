"""Photos in requests: what `decode_photo` accepts, and the clear reason for everything it refuses."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from PIL import Image

from fashionrec.serving.requests import MAX_IMAGE_BYTES, SEARCH_SIDE, decode_photo, parse_requests


def encoded(image_format: str = "JPEG", size: tuple[int, int] = (40, 30), noise: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    pixels = (
        rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        if noise
        else np.full((size[1], size[0], 3), (200, 30, 60), np.uint8)
    )
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode()


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_jpeg_and_png_photos_decode_to_rgb_pixels(image_format):
    pixels = decode_photo(b64(encoded(image_format)), 0)
    assert pixels.shape == (30, 40, 3) and pixels.dtype == np.uint8
    assert abs(int(pixels[..., 0].mean()) - 200) < 5  # the red channel survived (RGB, not BGR)


def test_large_photos_are_shrunk_before_the_encoder():
    pixels = decode_photo(b64(encoded("PNG", (1000, 500))), 0)
    assert max(pixels.shape[:2]) == SEARCH_SIDE and pixels.shape[1] == 2 * pixels.shape[0]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("this is not base64!", "not valid base64"),
        (b64(b"plain text, not a picture"), "not a JPEG or PNG image"),
        (b64(encoded("GIF")), "must be JPEG or PNG, got GIF"),
        (b64(encoded("JPEG", (64, 64), noise=True)[:-600]), "truncated or corrupt"),
        (b64(encoded("PNG", (5000, 2))), "at most 4096 a side"),
        (12, "must be a base64-encoded JPEG or PNG string"),
    ],
)
def test_bad_photos_are_refused_naming_the_problem(value, reason):
    with pytest.raises(MlflowException, match=reason) as error:
        decode_photo(value, 3)
    assert "row 3" in str(error.value)


def test_oversized_photos_are_refused_naming_the_limit():
    content = encoded("PNG", (800, 800), noise=True)  # ~1.9 MB of noise
    assert len(content) > MAX_IMAGE_BYTES
    with pytest.raises(MlflowException, match="larger than 1024 KiB"):
        decode_photo(b64(content), 0)


def test_a_photo_goes_alone_in_its_row():
    frame = pd.DataFrame([{"customer_id": "c1", "image": b64(encoded())}])
    with pytest.raises(MlflowException, match="exactly one of customer_id, article_id and image"):
        parse_requests(frame, 12, 0)
    request = parse_requests(pd.DataFrame([{"image": b64(encoded()), "k": 3}]), 12, 0)[0]
    assert request["image"].shape == (30, 40, 3) and request["k"] == 3 and request["customer_id"] is None


def test_the_photo_gallery_holds_only_catalogue_articles_of_the_current_image_model(spark, tmp_path):
    from fashionrec.config import TableLocator, Tables
    from fashionrec.lake.tables import overwrite_table
    from fashionrec.serving.photo import ENCODER_DIR, GALLERY_FILE
    from fashionrec.similarity.task import model_version
    from fashionrec.snapshot.gallery import write_gallery

    tables = TableLocator(lakehouse=str(tmp_path / "lakehouse"))
    artifacts, snapshot = tmp_path / "artifacts", tmp_path / "snapshot"
    assert write_gallery(spark, tables, artifacts, snapshot) is None  # no image model: no photo search
    (artifacts / ENCODER_DIR).mkdir(parents=True)
    (artifacts / ENCODER_DIR / "saved_model.pb").write_bytes(b"")
    (artifacts / ENCODER_DIR / "model.json").write_text("{}")
    snapshot.mkdir()
    current = model_version(artifacts)
    overwrite_table(
        spark.createDataFrame([("0100000001",), ("0100000002",)], "article_id string"),
        tables,
        Tables.ARTICLES,
    )
    rows = [
        ("0100000001", "h1", current, [1.0, 0.0]),
        ("0100000002", "h2", current, [0.0, 1.0]),
        ("0999999999", "h3", current, [0.6, 0.8]),  # a photo of no catalogue article (stale folder)
        ("0100000001", "h0", "older-model", [0.0, 1.0]),
    ]
    schema = "article_id string, content_hash string, model_version string, embedding array<float>"
    overwrite_table(spark.createDataFrame(rows, schema), tables, Tables.IMAGE_EMBEDDINGS)
    assert write_gallery(spark, tables, artifacts, snapshot) == 2
    with np.load(snapshot / GALLERY_FILE) as gallery:
        assert gallery["article_ids"].tolist() == ["0100000001", "0100000002"]
        np.testing.assert_allclose(gallery["vectors"], [[1.0, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize("removed", [True, False])
def test_a_loader_whose_folders_vanish_says_so_and_a_real_failure_is_an_error(
    tmp_path, monkeypatch, caplog, removed
):
    """MLflow loads a model being logged from a temporary copy to check its input example and removes the
    copy after one request: the photo loader started by that request then finds its files gone. That is
    logged as what it is (info); a load that fails with the files in place stays an error."""
    import logging
    import shutil

    from fashionrec.serving import photo, pyfunc
    from fashionrec.similarity.encoder import ENCODER_DIR

    models, snapshot = tmp_path / "models", tmp_path / "snapshot"
    (models / ENCODER_DIR).mkdir(parents=True)
    (models / ENCODER_DIR / "saved_model.pb").write_bytes(b"x")
    snapshot.mkdir()
    (snapshot / photo.GALLERY_FILE).write_bytes(b"x")

    def load_while_removed(*folders: object) -> None:
        if removed:
            shutil.rmtree(tmp_path)
        raise FileNotFoundError("variables/variables")

    monkeypatch.setattr(photo.PhotoSearch, "from_folders", staticmethod(load_while_removed))
    loader = pyfunc.PhotoLoader(str(models), str(snapshot))
    with caplog.at_level(logging.INFO, logger=pyfunc.__name__):
        assert loader.get() is None
    levels = {record.levelno for record in caplog.records if record.name == pyfunc.__name__}
    assert levels == ({logging.INFO} if removed else {logging.ERROR})
