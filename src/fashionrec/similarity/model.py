"""The metric-learning model: a small CNN ending in `MetricEmbedding`, trained with `MultiSimilarityLoss`
on class-balanced batches (`MultiShotMemorySampler`), as in TensorFlow Similarity's examples.

Small enough to train in minutes on a CPU at demo scale; no pretrained backbone to download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.similarity.images import augmented_copies
from fashionrec.training.progress import EpochLog
from fashionrec.training.tf_env import import_tensorflow

tf = import_tensorflow()

import tensorflow_similarity as tfsim  # noqa: E402  (after TF_USE_LEGACY_KERAS is set)


@dataclass(frozen=True)
class ImageHyperParams:
    embedding_dim: int = 64
    learning_rate: float = 0.002
    classes_per_batch: int = 16
    examples_per_class: int = 4
    width: int = 32
    epochs: int = 4
    steps_per_epoch: int = 100
    augment_copies: int = 1  # flipped / zoomed copies of every training image (`images.augmented_copies`)
    mixed_precision: bool = False  # bfloat16 convolutions on GPUs; the embedding layer stays float32
    seed: int = 42

    def with_updates(self, **values: Any) -> ImageHyperParams:
        return ImageHyperParams(**{**self.__dict__, **values})


def build_model(hp: ImageHyperParams, size: int) -> Any:
    layers = tf.keras.layers
    inputs = layers.Input((size, size, 3), dtype=tf.float32)
    x = layers.Rescaling(1.0 / 255)(inputs)
    for i in range(3):
        x = layers.Conv2D(hp.width * 2**i, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(hp.width * 2**i, 3, padding="same", activation="relu")(x)
        x = layers.MaxPool2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    # float32 output layer: the loss and the exported embeddings keep full precision under mixed precision.
    outputs = tfsim.layers.MetricEmbedding(hp.embedding_dim, dtype="float32")(x)
    model = tfsim.models.SimilarityModel(inputs, outputs)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(hp.learning_rate),
        loss=tfsim.losses.MultiSimilarityLoss(distance="cosine"),
    )
    return model


def train(
    pixels: np.ndarray,
    classes: np.ndarray,
    hp: ImageHyperParams,
    strategy: Any = None,
    log_epochs: bool = True,
) -> tuple[Any, list[float]]:
    """Fit on class-balanced batches: each batch holds `classes_per_batch` classes x `examples_per_class`.

    Classes with fewer than two images cannot form a positive pair and are left out of training.
    """
    tf.keras.utils.set_random_seed(hp.seed)
    counts = np.bincount(classes)
    keep = counts[classes] >= 2
    x, y = pixels[keep], classes[keep]
    if hp.augment_copies > 0:
        x = np.concatenate([x, augmented_copies(x, hp.augment_copies, hp.seed)])
        y = np.tile(y, hp.augment_copies + 1)
    x = x.astype(np.float32)
    sampler = tfsim.samplers.MultiShotMemorySampler(
        x,
        y,
        classes_per_batch=min(hp.classes_per_batch, len(np.unique(y))),
        examples_per_class_per_batch=hp.examples_per_class,
        steps_per_epoch=hp.steps_per_epoch,
    )
    if strategy is None:
        model = build_model(hp, pixels.shape[1])
    else:
        with strategy.scope():
            model = build_model(hp, pixels.shape[1])
    history = model.fit(
        sampler, epochs=hp.epochs, verbose=0, callbacks=[EpochLog("image model", hp.epochs, log_epochs)]
    )
    return model, [float(v) for v in history.history["loss"]]


def embed(model: Any, pixels: np.ndarray, batch: int = 512) -> np.ndarray:
    """Unit-length embeddings of uint8 images (n, size, size, 3)."""
    parts = [
        model(pixels[i : i + batch].astype(np.float32), training=False).numpy()
        for i in range(0, len(pixels), batch)
    ]
    out = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


class ImageEncoder(tf.Module):  # loaded by `similarity.encoder` without TensorFlow Similarity
    """uint8 images → the models' unit embeddings concatenated with weights √w (`similarity.mixing`);
    the saved form (no TensorFlow Similarity needed to load it)."""

    def __init__(self, models: list[Any], weights: list[float]) -> None:
        super().__init__()
        kept = [(m, float(np.sqrt(w))) for m, w in zip(models, weights, strict=True) if w > 0]
        self.models = [m for m, _ in kept]
        self.scales = [s for _, s in kept]

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def __call__(self, images: Any) -> Any:
        x = tf.cast(images, tf.float32)
        parts = [
            scale * tf.math.l2_normalize(model(x, training=False), axis=1)
            for model, scale in zip(self.models, self.scales, strict=True)
        ]
        return tf.concat(parts, axis=1)


def export(models: list[Any], weights: list[float], folder: str | Path) -> str:
    tf.saved_model.save(ImageEncoder(models, weights), str(folder))
    return str(folder)
