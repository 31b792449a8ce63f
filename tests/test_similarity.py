"""Image similarity: neighbour metrics by hand, then the model and the index tasks on the tiny catalogue."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_mixed_embedding_is_unit_length_and_its_cosine_is_the_weighted_cosine():
    from fashionrec.similarity.mixing import combine

    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(6, d)) for d in (4, 3))
    a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
    mixed = combine([a, b], [0.3, 0.7])
    assert mixed.shape == (6, 7)
    np.testing.assert_allclose(np.linalg.norm(mixed, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(mixed @ mixed.T, 0.3 * a @ a.T + 0.7 * b @ b.T, atol=1e-6)
    assert combine([a, b], [1.0, 0.0]).shape == (6, 4)  # a model with weight 0 is left out


def test_choose_weights_climbs_from_the_best_single_model_to_the_best_mix():
    from fashionrec.similarity.mixing import choose_weights

    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 1.0], [1.0, 0.0]])
    seen = []

    def score(vectors: np.ndarray) -> float:  # vectors[0, 0]² is the weight of model a: best at 0.3
        seen.append(vectors.shape)
        return -((vectors[0, 0] ** 2 - 0.3) ** 2)

    weights, value = choose_weights([a, b], score)
    assert weights == pytest.approx((0.3, 0.7)) and value == pytest.approx(0.0)
    assert seen[:2] == [(2, 2), (2, 2)]  # the two single models first: b alone is better
    assert len(seen) == 6  # then 0.1, 0.2, 0.3, 0.4 of a, each scored once; 0.4 is worse: stop


def test_choose_weights_finds_a_concave_optimum_among_nine_models_in_few_evaluations():
    from fashionrec.similarity.mixing import choose_weights

    models = 9
    target = np.array([0.3, 0.0, 0.1, 0.2, 0.0, 0.0, 0.1, 0.3, 0.0])
    parts = [np.eye(models)[:, [i]] for i in range(models)]  # row r of the mix holds √w_r
    calls = []

    def score(vectors: np.ndarray) -> float:
        calls.append(1)
        return -float((((vectors**2).sum(axis=1) - target) ** 2).sum())

    weights, value = choose_weights(parts, score)
    np.testing.assert_allclose(weights, target, atol=1e-9)
    assert value == pytest.approx(0.0)
    assert len(calls) < 1_000  # the full 1/10 grid of nine models has 48,620 points


def test_augmented_copies_are_reproducible_mirrored_and_zoomed_views():
    from fashionrec.similarity.images import augmented_copies

    pixels = np.zeros((6, 16, 16, 3), dtype=np.uint8)
    pixels[:, :, :4] = 255  # a bar along the left edge
    copies = augmented_copies(pixels, 2, seed=1)
    assert copies.shape == (12, 16, 16, 3)
    assert np.array_equal(copies, augmented_copies(pixels, 2, seed=1))
    left, right = copies[:, :, :8].mean(axis=(1, 2, 3)), copies[:, :, 8:].mean(axis=(1, 2, 3))
    assert (left > right).any() and (right > left).any()  # some kept, some mirrored
    assert len(np.unique(copies.sum(axis=(1, 2, 3)))) > 2  # zoomed and shifted, not only mirrored


def test_encoder_parts_are_the_columns_of_the_models_kept_in_the_mix(tmp_path):
    from fashionrec.similarity.task import encoder_parts

    spec = {
        "hyperparams": {"embedding_dim": 8},
        "class_keys": ["product_type", "type_colour", "product_code"],
        "weights": {"product_type": 0.3, "type_colour": 0.0, "product_code": 0.7},
    }
    (tmp_path / "model.json").write_text(json.dumps(spec))
    assert encoder_parts(tmp_path) == {"product_type": slice(0, 8), "product_code": slice(8, 16)}

    # Class parts are as wide as their key has classes, in the mix's order.
    spec["weights"] = {"product_type": 0.2, "product_type.classes": 0.5, "colour": 0.0, "colour.classes": 0.3}
    spec["widths"] = {"product_type": 8, "product_type.classes": 5, "colour": 8, "colour.classes": 3}
    (tmp_path / "model.json").write_text(json.dumps(spec))
    assert encoder_parts(tmp_path) == {
        "product_type": slice(0, 8),
        "product_type.classes": slice(8, 13),
        "colour.classes": slice(13, 16),
    }


def test_neighbour_votes_are_the_weighted_class_histogram_of_the_nearest_training_photos():
    from fashionrec.similarity.model import NeighbourVotes

    memory = np.array([[1, 0], [0.96, 0.28], [0, 1], [-1, 0]], np.float32)  # unit rows
    labels = np.array([0, 1, 2, 2])
    layer = NeighbourVotes(memory, labels, classes=4, neighbours=3, temperature=0.1)
    queries = np.array([[2.0, 0.0], [0.0, 0.5]], np.float32)  # scaled: cosines, not dot products
    out = layer(queries).numpy()
    similarity = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ memory.T
    expected = np.zeros((2, 4))
    for i, row in enumerate(similarity):
        nearest_three = np.argsort(-row)[:3]
        for j in nearest_three:
            expected[i, labels[j]] += np.exp((row[j] - row[nearest_three[0]]) / 0.1)
    np.testing.assert_allclose(out**2, expected / expected.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)
    assert out[:, 3].max() == 0.0  # a class no training photo has gets no vote
    with pytest.raises(ValueError, match="3 training embeddings but 4 labels"):
        NeighbourVotes(memory[:3], labels, classes=4)


def test_augmented_batches_are_mirrored_zoomed_and_shifted_photos_of_the_same_size():
    from fashionrec.similarity.model import augment_batch

    pixels = np.full((64, 16, 16, 3), 255, dtype=np.uint8)
    pixels[:, :, :4] = 0  # a dark bar along the left edge
    out = augment_batch(pixels, np.random.default_rng(0))
    again = augment_batch(pixels, np.random.default_rng(0))
    assert out.shape == (64, 16, 16, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, again)  # the generator's seed decides
    left, right = out[:, :, :8].mean(axis=(1, 2, 3)), out[:, :, 8:].mean(axis=(1, 2, 3))
    assert (left < right).any() and (right < left).any()  # some kept, some mirrored
    assert len(np.unique(out.sum(axis=(1, 2, 3)).round(1))) > 10  # zoomed and shifted, not only mirrored
    assert out.min() >= 0 and out.max() <= 255


def test_saved_encoder_is_the_weighted_concatenation_of_the_parts(tmp_path):
    """multi_similarity: one network per class key, each run once by the encoder; a part of weight 0 is
    left out of the saved encoder's output."""
    from fashionrec.similarity import encoder as image_encoder
    from fashionrec.similarity import model as image_model

    hp = image_model.ImageHyperParams(embedding_dim=8, width=4, epochs=1, steps_per_epoch=2)
    pixels = np.random.default_rng(3).integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)
    labels = {"a": np.arange(24) % 3, "b": np.arange(24) % 4}
    names, model, losses = image_model.train(pixels, labels, hp, log_epochs=False)
    assert names == ["a", "b"] and set(losses) == {"a", "b"}
    parts = image_model.embed(model, pixels[:5])
    assert [p.shape for p in parts] == [(5, 8), (5, 8)]
    for i, weights in enumerate(([0.25, 0.75], [0.0, 1.0])):
        image_model.export(model, weights, tmp_path / f"encoder{i}")
        saved = image_encoder.embed_saved(image_encoder.load(tmp_path / f"encoder{i}"), pixels[:5])
        expected = np.hstack([np.sqrt(w) * p for p, w in zip(parts, weights, strict=True) if w > 0])
        np.testing.assert_allclose(saved, expected, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(saved, axis=1), 1.0, rtol=1e-5)


def test_image_model_beats_random_and_the_index_is_incremental(spark, job_run, tiny_data, tmp_path):
    """The job graph's train_image_similarity and index_images figures, then index_images once more (on a
    copy: `job_run` is read-only)."""
    from fashionrec.config import ImageIndexParams
    from fashionrec.similarity.task import run_index_images
    from tests.helpers import copy_job_run

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

    job_run = copy_job_run(job_run, tmp_path / "run")
    params = ImageIndexParams(
        lakehouse=str(job_run / "lakehouse"),
        artifacts_dir=str(job_run / "artifacts"),
        mlflow_tracking_uri=f"sqlite:///{job_run / 'mlflow.db'}",
        reports_dir=str(job_run / "reports"),
    )
    again = run_index_images(params, spark)
    assert again["embedded_now"] == 0 and again["embeddings"] == articles


def test_compact_cosine_softmax_model_learns_every_key_and_its_encoder_takes_photos_of_any_size(tmp_path):
    """The real-photo settings: augmented batches, batch norm, a network with class proxies per class key,
    each giving an embedding and a class part; the saved encoder runs them as one model and resizes any
    photo to the model's input in its graph (identical at the model's own size)."""
    from fashionrec.similarity import encoder as image_encoder
    from fashionrec.similarity import model as image_model

    rng = np.random.default_rng(5)
    hue = np.repeat(np.arange(4), 12)  # four colours; the other key: a dark top half or not
    bar = np.tile(np.arange(2), 24)
    colours = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220], [220, 220, 30]], np.uint8)
    pixels = np.clip(colours[hue][:, None, None, :] + rng.normal(0, 20, (48, 16, 16, 3)), 0, 255)
    pixels[bar == 1, :8] = 0
    pixels = pixels.astype(np.uint8)
    hp = image_model.ImageHyperParams(
        embedding_dim=8,
        width=8,
        architecture="compact",
        loss="cosine_softmax",
        epochs=3,
        steps_per_epoch=40,  # batch norm's moving statistics settle
        batch_size=16,
        learning_rate=0.01,
    )
    names, model, losses = image_model.train(pixels, {"hue": hue, "bar": bar}, hp, log_epochs=False)
    assert names == ["hue", "hue.classes", "hue.votes", "bar", "bar.classes", "bar.votes"]
    assert all(values[-1] < values[0] for values in losses.values())
    parts = dict(zip(names, image_model.embed(model, pixels), strict=True))
    for key, classes in (("hue", hue), ("bar", bar)):
        probabilities = parts[f"{key}.classes"] ** 2  # the part is √ of them
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
        assert (probabilities.argmax(axis=1) == classes).mean() > 0.9  # each head learned its key
        similarity = parts[key] @ parts[key].T - 2 * np.eye(len(pixels))  # not its own neighbour
        neighbours = np.argsort(-similarity, axis=1)[:, :3]
        assert (classes[neighbours] == classes[:, None]).mean() > 0.9  # one class embeds together
        votes = parts[f"{key}.votes"] ** 2  # a training photo's nearest training photo is itself
        np.testing.assert_allclose(votes.sum(axis=1), 1.0, rtol=1e-5)
        assert (votes.argmax(axis=1) == classes).mean() > 0.9

    weights = [0.5, 0.0, 0.1, 0.2, 0.1, 0.1]
    image_model.export(model, weights, tmp_path / "encoder")
    encoder = image_encoder.load(tmp_path / "encoder")
    expected = np.hstack([np.sqrt(w) * parts[n][:4] for n, w in zip(names, weights, strict=True) if w > 0])
    np.testing.assert_allclose(image_encoder.embed_saved(encoder, pixels[:4]), expected, atol=1e-5)
    large = np.repeat(np.repeat(pixels[:4], 3, axis=1), 2, axis=2)  # 48 x 32: resized in the graph
    bigger = image_encoder.embed_saved(encoder, large)
    assert bigger.shape == (4, 8 + 4 + 8 + 2 + 2)
    np.testing.assert_allclose(np.linalg.norm(bigger, axis=1), 1.0, rtol=1e-5)
    assert (bigger * expected).sum(axis=1).min() > 0.9  # the same pictures, larger


def test_pretrained_backbone_fine_tunes_its_top_blocks_over_a_cache_and_exports_one_encoder(tmp_path):
    """efficientnet_lite0: the frozen blocks run once per image (the cache), the top blocks and the head
    learn a key over it; the exported encoder runs bottom and top as one model on uint8 photos of any size,
    equal to the parts; the frozen blocks keep their ImageNet weights."""
    from PIL import Image

    from fashionrec.similarity import backbone
    from fashionrec.similarity import encoder as image_encoder
    from fashionrec.similarity import model as image_model

    # The real photos kept for the backbone's test: two products of each of 12 types.
    photos = Path(__file__).parent / "data" / "hm_photos"
    articles = pd.read_csv(photos / "articles.csv", dtype={"article_id": str})
    pixels = np.stack(
        [
            np.asarray(Image.open(photos / f"{a}.jpg").convert("RGB").resize((64, 64), Image.BILINEAR))
            for a in articles["article_id"]
        ]
    )
    classes = pd.factorize(articles["product_type_name"])[0]
    hp = image_model.ImageHyperParams(
        embedding_dim=8,
        architecture="efficientnet_lite0",
        unfreeze_blocks=2,
        augment_copies=0,
        classes_per_batch=6,
        examples_per_class=2,
        epochs=3,
        steps_per_epoch=10,
        learning_rate=0.003,
    )
    assert hp.stages() == [(3, 0.003, True)]  # with head_epochs: the backbone frozen first, then a tenth
    assert hp.with_updates(head_epochs=1).stages() == [(1, 0.003, False), (3, 0.003 * 0.1, True)]
    names, model, losses = image_model.train(pixels, {"type": classes}, hp, log_epochs=False)
    assert names == ["type"] and len(losses["type"]) == 3 and losses["type"][-1] < losses["type"][0], losses
    (embedding,) = image_model.embed(model, pixels)

    reference = {layer.name: layer for layer in backbone.pretrained(64).layers}
    trained = {
        layer.name: layer
        for layer in model.submodules
        if isinstance(layer, image_model.tf.keras.layers.Layer) and layer.name in reference
    }
    frozen, tuned = "block13_project", "block15_project"  # blocks 14 and 15 are trained
    np.testing.assert_array_equal(trained[frozen].get_weights()[0], reference[frozen].get_weights()[0])
    assert not np.allclose(trained[tuned].get_weights()[0], reference[tuned].get_weights()[0])
    for moment in (2, 3):  # batch norm keeps ImageNet's moving mean and variance in the trained blocks
        np.testing.assert_array_equal(
            trained[f"{tuned}_bn"].get_weights()[moment], reference[f"{tuned}_bn"].get_weights()[moment]
        )

    image_model.export(model, [1.0], tmp_path / "encoder")
    encoder = image_encoder.load(tmp_path / "encoder")
    np.testing.assert_allclose(image_encoder.embed_saved(encoder, pixels[:4]), embedding[:4], atol=1e-4)
    larger = np.repeat(np.repeat(pixels[:4], 2, axis=1), 3, axis=2)  # 128 x 192: resized in the graph
    assert image_encoder.embed_saved(encoder, larger).shape == (4, 8)


def test_stage_one_trains_only_the_layers_above_the_frozen_backbone():
    """`set_top_trainable(False)` then `compile_stage`: a fit leaves the backbone's top blocks as loaded and
    moves the head; unfrozen and recompiled, the next fit moves the top blocks too."""
    from fashionrec.similarity import model as image_model

    hp = image_model.ImageHyperParams(
        embedding_dim=8,
        architecture="efficientnet_lite0",
        unfreeze_blocks=1,
        loss="cosine_softmax",
        steps_per_epoch=3,
        batch_size=8,
    )
    rng = np.random.default_rng(0)
    cache = rng.normal(0, 1, (32, 2, 2, 192)).astype(np.float32)  # block 15's input at 64 px
    labels = np.arange(32) % 4
    _, trainer = image_model.build_proxy_model(hp, cache.shape[1:], 4)
    top = trainer.get_layer(image_model.backbone.TOP_NAME)

    def weights() -> tuple[list[np.ndarray], list[np.ndarray]]:
        head = [w.numpy().copy() for layer in trainer.layers if layer is not top for w in layer.weights]
        return [w.numpy().copy() for w in top.weights], head

    loaded, head = weights()
    image_model.set_top_trainable(trainer, False)
    image_model.compile_stage(trainer, hp, 1, 0.01)
    trainer.fit(cache, labels, batch_size=8, epochs=1, verbose=0)
    after_one, head_after = weights()
    assert all(np.array_equal(a, b) for a, b in zip(loaded, after_one, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(head, head_after, strict=True))
    image_model.set_top_trainable(trainer, True)
    image_model.compile_stage(trainer, hp, 1, 0.01)
    trainer.fit(cache, labels, batch_size=8, epochs=1, verbose=0)
    assert not all(np.array_equal(a, b) for a, b in zip(loaded, weights()[0], strict=True))


def test_each_class_key_can_have_its_own_network_and_from_scratch_ones_see_a_smaller_photo(tmp_path):
    """`architecture="efficientnet_lite0,compact"`: product type on the backbone (over its cache), colour on
    a compact network that sees the photo resized to `scratch_size` in the graph; one parts model and one
    exported encoder; a count of networks that fits neither one nor every key is refused by name."""
    from PIL import Image

    from fashionrec.config import ImageSimilarityParams
    from fashionrec.similarity import encoder as image_encoder
    from fashionrec.similarity import model as image_model

    photos = Path(__file__).parent / "data" / "hm_photos"
    articles = pd.read_csv(photos / "articles.csv", dtype={"article_id": str})
    pixels = np.stack(
        [
            np.asarray(Image.open(photos / f"{a}.jpg").convert("RGB").resize((64, 64), Image.BILINEAR))
            for a in articles["article_id"]
        ]
    )
    # A colour a few batches can learn: every other photo tinted red, the others blue.
    colour = np.arange(len(pixels)) % 2
    tints = np.array([[0.45, 0.45, 1.0], [1.0, 0.45, 0.45]])[colour]
    pixels = (pixels * tints[:, None, None, :]).astype(np.uint8)
    labels = {"type": pd.factorize(articles["product_type_name"])[0], "colour": colour}
    hp = image_model.ImageHyperParams(
        embedding_dim=8,
        width=8,
        architecture="efficientnet_lite0,compact",
        scratch_size=32,
        unfreeze_blocks=1,
        augment_copies=0,
        loss="cosine_softmax",
        batch_size=12,
        epochs=3,
        steps_per_epoch=40,  # batch norm's moving statistics settle
        learning_rate=0.01,
    )
    assert hp.architectures(2) == ("efficientnet_lite0", "compact")
    names, model, losses = image_model.train(pixels, labels, hp, log_epochs=False)
    assert names[0] == "type" and names[3] == "colour" and len(names) == 6
    assert losses["colour"][-1] < losses["colour"][0], losses
    networks = {
        layer.name: layer.input_shape[1:]
        for layer in model.layers
        if isinstance(layer, image_model.tf.keras.Model)
    }
    assert networks.pop("pretrained_bottom") == (64, 64, 3)  # the photo, for the backbone's keys
    assert sorted(networks.values()) == [(2, 2, 192), (32, 32, 3)]  # block 15's input; the smaller photo
    parts = dict(zip(names, image_model.embed(model, pixels), strict=True))
    colour_classes = parts["colour.classes"] ** 2
    assert (colour_classes.argmax(axis=1) == labels["colour"]).mean() > 0.8  # learned on 32-px photos

    weights = [0.4, 0.0, 0.1, 0.3, 0.2, 0.0]
    image_model.export(model, weights, tmp_path / "encoder")
    encoder = image_encoder.load(tmp_path / "encoder")
    expected = np.hstack([np.sqrt(w) * parts[n][:4] for n, w in zip(names, weights, strict=True) if w > 0])
    np.testing.assert_allclose(image_encoder.embed_saved(encoder, pixels[:4]), expected, atol=1e-4)

    with pytest.raises(ValueError, match="3 architectures"):
        image_model.ImageHyperParams(architecture="compact,compact,plain").architectures(2)
    with pytest.raises(ValueError, match="one network for every class key or one per key"):
        ImageSimilarityParams(class_keys="product_type,colour", architecture="compact,plain,plain")
    with pytest.raises(ValueError, match="architecture must be one of"):
        image_model.ImageHyperParams(architecture="efficientnet_lite0,resnet")
