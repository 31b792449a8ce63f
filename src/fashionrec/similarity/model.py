"""The metric-learning model: a small CNN ending in `MetricEmbedding`, trained with `MultiSimilarityLoss`
on class-balanced batches (`MultiShotMemorySampler`), as in TensorFlow Similarity's examples, or with a
softmax over one cosine proxy per class.

Small enough to train in minutes on a CPU at demo scale; no pretrained backbone to download. A trained
model gives one or two *parts* (unit-length image vectors) that `similarity.mixing` weighs: its embedding,
and for cosine_softmax also √ of its class probabilities, whose cosine (the Bhattacharyya coefficient of
two images' class distributions) ranks neighbours by how surely they share a class.
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

ARCHITECTURES = ("plain", "compact")
LOSSES = ("multi_similarity", "cosine_softmax")


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
    # plain: 3 x two 3x3 convolutions, flatten (chosen on rendered 32-pixel images); compact: a strided 5x5
    # stem, batch-normalised blocks, global average pooling; its batches are flipped, zoomed and shifted
    # (`augment_batch`) as they are drawn (real photos).
    architecture: str = "plain"
    # multi_similarity: TF Similarity's MultiSimilarityLoss on class-balanced batches; cosine_softmax: a
    # softmax over cosine similarities to one learned proxy per class (scaled by `softmax_scale`) on
    # batches drawn as the catalogue comes, which learned real photos 2x faster (docs/benchmarks.md).
    loss: str = "multi_similarity"
    softmax_scale: float = 16.0
    batch_size: int = (
        128  # cosine_softmax's batches (multi_similarity: classes_per_batch x examples_per_class)
    )
    seed: int = 42

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")

    def with_updates(self, **values: Any) -> ImageHyperParams:
        return ImageHyperParams(**{**self.__dict__, **values})


def _backbone(hp: ImageHyperParams, size: int) -> tuple[Any, Any]:
    """(inputs, features before the embedding layer)."""
    layers = tf.keras.layers
    inputs = layers.Input((size, size, 3), dtype=tf.float32)
    x = layers.Rescaling(1.0 / 255)(inputs)
    if hp.architecture == "plain":
        for i in range(3):
            x = layers.Conv2D(hp.width * 2**i, 3, padding="same", activation="relu")(x)
            x = layers.Conv2D(hp.width * 2**i, 3, padding="same", activation="relu")(x)
            x = layers.MaxPool2D()(x)
        x = layers.Flatten()(x)
    else:
        x = _conv(x, hp.width, 5, strides=2)
        for i in range(1, 4):
            x = layers.MaxPool2D()(_conv(x, hp.width * 2**i, 3))
        x = layers.GlobalAveragePooling2D()(x)
    return inputs, layers.Dense(256, activation="relu")(x)


def _conv(x: Any, filters: int, kernel: int, strides: int = 1) -> Any:
    layers = tf.keras.layers
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    return layers.ReLU()(layers.BatchNormalization()(x))


def build_model(hp: ImageHyperParams, size: int, classes: int = 0) -> tuple[Any, Any]:
    """(embedding model, compiled model that trains it): one `SimilarityModel` for multi_similarity; for
    cosine_softmax the embedding model and a classifier over `classes` proxies built on top of it (the
    logits of `class_part`)."""
    inputs, features = _backbone(hp, size)
    # float32 output layer: the loss and the exported embeddings keep full precision under mixed precision.
    outputs = tfsim.layers.MetricEmbedding(hp.embedding_dim, dtype="float32")(features)
    if hp.loss == "multi_similarity":
        optimizer = tf.keras.optimizers.Adam(hp.learning_rate)
        model = tfsim.models.SimilarityModel(inputs, outputs)
        model.compile(optimizer=optimizer, loss=tfsim.losses.MultiSimilarityLoss(distance="cosine"))
        return model, model
    model = tf.keras.Model(inputs, outputs)
    trainer = tf.keras.Model(inputs, CosineProxies(classes, hp.softmax_scale, dtype="float32")(outputs))
    # Cosine decay to 5% over the whole run: the proxies settle once the rate falls.
    steps = hp.epochs * hp.steps_per_epoch
    optimizer = tf.keras.optimizers.Adam(
        tf.keras.optimizers.schedules.CosineDecay(hp.learning_rate, steps, 0.05)
    )
    trainer.compile(optimizer=optimizer, loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, trainer


class CosineProxies(tf.keras.layers.Layer):
    """Scaled cosine similarity of unit embeddings to one learned unit proxy per class (normalised
    softmax): a metric-learning loss whose every example meets every class, not only those in its batch."""

    def __init__(self, classes: int, scale: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.classes, self.scale = classes, scale

    def build(self, input_shape: Any) -> None:
        self.proxies = self.add_weight(
            name="proxies", shape=(int(input_shape[-1]), self.classes), initializer="glorot_uniform"
        )

    def call(self, embeddings: Any) -> Any:
        return self.scale * tf.matmul(
            tf.math.l2_normalize(embeddings, axis=1), tf.math.l2_normalize(self.proxies, axis=0)
        )


def class_part(trainer: Any) -> Any:
    """images → √(softmax of the proxy logits): unit length, and the cosine of two images' vectors is the
    Bhattacharyya coefficient of their class distributions. Mixed with the colour model's, it beat mixing
    the embeddings on validation photos (docs/benchmarks.md)."""
    probabilities = tf.keras.layers.Softmax(dtype="float32")(trainer.output)
    return tf.keras.Model(trainer.input, tf.keras.layers.Lambda(tf.sqrt, dtype="float32")(probabilities))


def augment_batch(
    images: np.ndarray, rng: np.random.Generator, zoom: float = 0.85, shift: float = 0.06
) -> np.ndarray:
    """float32 copies of images (n, h, w, 3; 0..255), each mirrored half the time, zoomed into a random
    square of `zoom`..1 of the side and shifted by up to `shift` of it (white beyond the photo's edge).

    Why here and not as Keras preprocessing layers: on a 2-core CPU those layers took half of every
    training step (343 against 163 ms per batch of 128 at 64 px); one `crop_and_resize` per batch costs
    a few milliseconds, and the exported model holds no training-only layers."""
    n = len(images)
    side = rng.uniform(zoom, 1.0, n)
    top = rng.uniform(0, 1 - side) + rng.uniform(-shift, shift, n)
    left = rng.uniform(0, 1 - side) + rng.uniform(-shift, shift, n)
    mirrored = rng.random(n) < 0.5  # a box whose left edge lies right of its right edge is mirrored
    x1, x2 = np.where(mirrored, left + side, left), np.where(mirrored, left, left + side)
    boxes = np.stack([top, x1, top + side, x2], axis=1).astype(np.float32)
    size = images.shape[1:3]
    out = tf.image.crop_and_resize(
        images.astype(np.float32), boxes, np.arange(n, dtype=np.int32), size, extrapolation_value=255.0
    )
    return out.numpy()


class CatalogueBatches(tf.keras.utils.Sequence):
    """Random batches of (images, classes) drawn as the catalogue comes (frequent classes more often),
    augmented by `augment_batch` when `augment`."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, batch_size: int, steps: int, seed: int, augment: bool = False
    ) -> None:
        super().__init__()
        self.x, self.y, self.batch_size, self.steps, self.augment = x, y, batch_size, steps, augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, _: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.rng.integers(0, len(self.x), self.batch_size)
        images = augment_batch(self.x[rows], self.rng) if self.augment else self.x[rows].astype(np.float32)
        return images, self.y[rows]


def train(
    pixels: np.ndarray,
    classes: np.ndarray,
    hp: ImageHyperParams,
    strategy: Any = None,
    log_epochs: bool = True,
) -> tuple[list[tuple[str, Any]], list[float]]:
    """Fit the embedding model on `classes` (one label per image); returns its parts, (suffix, model)
    pairs: ("", the embedding model) and for cosine_softmax ("classes", `class_part`), and the loss per
    epoch.

    multi_similarity: class-balanced batches of `classes_per_batch` classes x `examples_per_class`; classes
    with fewer than two images cannot form a positive pair and are left out. cosine_softmax: every image.
    """
    tf.keras.utils.set_random_seed(hp.seed)
    counts = np.bincount(classes)
    keep = counts[classes] >= (2 if hp.loss == "multi_similarity" else 1)
    x, y = pixels[keep], classes[keep]
    if hp.augment_copies > 0 and hp.architecture == "plain":  # compact augments each batch (augment_batch)
        x = np.concatenate([x, augmented_copies(x, hp.augment_copies, hp.seed)])
        y = np.tile(y, hp.augment_copies + 1)
    augment = hp.architecture == "compact"
    if hp.loss == "multi_similarity":
        rng = np.random.default_rng(hp.seed)
        batches: Any = tfsim.samplers.MultiShotMemorySampler(
            x.astype(np.float32),
            y,
            classes_per_batch=min(hp.classes_per_batch, len(np.unique(y))),
            examples_per_class_per_batch=hp.examples_per_class,
            steps_per_epoch=hp.steps_per_epoch,
            augmenter=(lambda xb, yb, *_: (augment_batch(np.asarray(xb), rng), yb)) if augment else None,
        )
    else:
        batches = CatalogueBatches(x, y, hp.batch_size, hp.steps_per_epoch, hp.seed, augment)
    if strategy is None:
        model, trainer = build_model(hp, pixels.shape[1], int(classes.max()) + 1)
    else:
        with strategy.scope():
            model, trainer = build_model(hp, pixels.shape[1], int(classes.max()) + 1)
    history = trainer.fit(
        batches, epochs=hp.epochs, verbose=0, callbacks=[EpochLog("image model", hp.epochs, log_epochs)]
    )
    parts = [("", model)] + ([("classes", class_part(trainer))] if trainer is not model else [])
    return parts, [float(v) for v in history.history["loss"]]


def embed(model: Any, pixels: np.ndarray, batch: int = 512) -> np.ndarray:
    """Unit-length embeddings of uint8 images (n, size, size, 3) from a model or a part."""
    parts = [
        model(pixels[i : i + batch].astype(np.float32), training=False).numpy()
        for i in range(0, len(pixels), batch)
    ]
    out = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


class ImageEncoder(tf.Module):  # loaded by `similarity.encoder` without TensorFlow Similarity
    """uint8 images (n, h, w, 3) of any size → resized in the graph to the models' input → their unit
    vectors (embeddings and class parts) concatenated with weights √w (`similarity.mixing`); the saved
    form (no TensorFlow Similarity needed to load it)."""

    def __init__(self, models: list[Any], weights: list[float]) -> None:
        super().__init__()
        kept = [(m, float(np.sqrt(w))) for m, w in zip(models, weights, strict=True) if w > 0]
        self.models = [m for m, _ in kept]
        self.scales = [s for _, s in kept]
        self.size = int(models[0].input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def __call__(self, images: Any) -> Any:
        # Antialiased bilinear, like the PIL resize of training; the identity at the model's own size.
        x = tf.image.resize(tf.cast(images, tf.float32), (self.size, self.size), antialias=True)
        parts = [
            scale * tf.math.l2_normalize(model(x, training=False), axis=1)
            for model, scale in zip(self.models, self.scales, strict=True)
        ]
        return tf.concat(parts, axis=1)


def export(models: list[Any], weights: list[float], folder: str | Path) -> str:
    tf.saved_model.save(ImageEncoder(models, weights), str(folder))
    return str(folder)
