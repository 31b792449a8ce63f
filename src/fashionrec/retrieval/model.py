"""The two-tower model (TensorFlow Recommenders): a query tower for customers, a candidate tower for
articles, both ending on the unit sphere in one shared space, trained with in-batch softmax.

Towers take integer vocabulary indices (0 = out of vocabulary / padding); the exported encoders add the
string lookups in front, so serving sends raw ids and training never pays for lookups per step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fashionrec.retrieval.vocab import ARTICLE_CATEGORIES, ARTICLE_SALES, PRODUCT, Vocabulary
from fashionrec.training.tf_env import import_tensorflow
from fashionrec.weeks import HISTORY_LENGTH

tf = import_tensorflow()
import tensorflow_recommenders as tfrs  # noqa: E402  (after TF_USE_LEGACY_KERAS is set)

CATEGORY_DIM = 16


@dataclass(frozen=True)
class TowerConfig:
    embedding_dim: int = 64
    depth: int = 1  # hidden dense layers before the output layer
    temperature: float = 0.05
    logq_correction: bool = True
    # Extra negatives per batch drawn uniformly from the whole catalogue (0: in-batch negatives only).
    random_negatives: int = 0
    # Product memory (0: off): the query adds up the vectors of its history's products, the candidate
    # carries its product's, so the products a customer bought (the same article, another colour of it)
    # score high; more dimensions, less crosstalk between unrelated products.
    memory_dim: int = 256
    # A learned bias from the article's recent sales (`features.recent_sales`) in every score.
    sales_bias: bool = True


def _mlp(width: int, depth: int, name: str) -> Any:
    layers = [tf.keras.layers.Dense(width * 2, activation="relu") for _ in range(depth)]
    return tf.keras.Sequential([*layers, tf.keras.layers.Dense(width)], name=name)


def _unit_float32(x: Any) -> Any:
    """Unit-length embeddings in float32 whatever the compute dtype: the softmax over in-batch scores and
    the exported towers stay full precision under mixed precision."""
    return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=1)


def _plain_config(sizes: dict[str, int], config: TowerConfig) -> dict[str, Any]:
    """A tower's constructor arguments as plain values: without it, saving the encoders warns (once per
    tower) that the `TowerConfig` argument cannot be serialised."""
    return {"sizes": dict(sizes), "config": asdict(config)}


def product_memory(products: int, config: TowerConfig) -> Any:
    """The product vectors both towers share; random near-orthogonal at the start, so a product matches
    itself from the first step."""
    scale = 1.0 / config.memory_dim**0.5
    return tf.keras.layers.Embedding(
        products,
        config.memory_dim,
        embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=scale),
        name="product_memory",
    )


class QueryTower(tf.keras.Model):
    """Customer id (OOV bucket 0), normalised age, month on the unit circle, mean of recent purchases;
    with the product memory, the sum of the history's product vectors, and a 1 that the candidate's sales
    bias multiplies. The score of a candidate is the inner product with its `CandidateTower` vector."""

    def __init__(
        self, customers: int, articles: int, config: TowerConfig, history_products: Any, memory: Any
    ) -> None:
        super().__init__(name="query_tower")
        self.sizes, self.config = {"customers": customers, "articles": articles}, config
        dim = config.embedding_dim
        self.customer_embedding = tf.keras.layers.Embedding(customers, dim, name="customer_embedding")
        self.history_embedding = tf.keras.layers.Embedding(articles, dim, name="history_embedding")
        self.mlp = _mlp(dim, config.depth, "query_mlp")
        self.history_products = tf.constant(history_products, tf.int32)  # article index → product index
        self.memory = memory
        if memory is not None:
            # One weight per history position (latest last): how much a purchase that recent counts.
            self.memory_weights = self.add_weight(
                name="memory_weights", shape=(HISTORY_LENGTH,), initializer=tf.keras.initializers.Ones()
            )

    def call(self, inputs: dict[str, Any]) -> Any:
        dtype = self.compute_dtype  # bfloat16 under mixed precision, else float32
        history = inputs["history"]
        mask = tf.cast(history > 0, dtype)[..., tf.newaxis]
        pooled = tf.reduce_sum(tf.cast(self.history_embedding(history), dtype) * mask, axis=1) / tf.maximum(
            tf.reduce_sum(mask, axis=1), tf.cast(1.0, dtype)
        )
        dense = tf.stack(
            [inputs["age"], inputs["age_missing"], inputs["month_sin"], inputs["month_cos"]], axis=1
        )
        x = tf.concat(
            [tf.cast(self.customer_embedding(inputs["customer_id"]), dtype), pooled, tf.cast(dense, dtype)],
            axis=1,
        )
        parts = [_unit_float32(self.mlp(x)) / self.config.temperature]
        if self.config.memory_dim > 0:
            products = tf.gather(self.history_products, history)
            recency = tf.cast(self.memory_weights, tf.float32)[-tf.shape(products)[1] :]
            weight = tf.cast(products > 0, tf.float32) * recency
            memory = tf.cast(self.memory(products), tf.float32) * weight[..., tf.newaxis]
            parts.append(tf.reduce_sum(memory, axis=1))
        if self.config.sales_bias:
            parts.append(tf.ones_like(parts[0][:, :1]))
        return tf.concat(parts, axis=1)

    def get_config(self) -> dict[str, Any]:
        return _plain_config(self.sizes, self.config)


class CandidateTower(tf.keras.Model):
    """Article id plus garment group, index group, product type and colour group embeddings; with the
    product memory, its product's vector; with the sales bias, a learned function of its recent sales."""

    def __init__(self, sizes: dict[str, int], config: TowerConfig, memory: Any) -> None:
        super().__init__(name="candidate_tower")
        self.sizes, self.config = dict(sizes), config
        dim = config.embedding_dim
        self.article_embedding = tf.keras.layers.Embedding(sizes["article_id"], dim, name="article_embedding")
        self.category_embeddings = {
            name: tf.keras.layers.Embedding(sizes[name], CATEGORY_DIM, name=f"{name}_embedding")
            for name in ARTICLE_CATEGORIES
        }
        self.mlp = _mlp(dim, config.depth, "candidate_mlp")
        self.memory = memory
        if config.sales_bias:  # layers built only when used: an unbuilt layer cannot be saved
            self.sales_mlp = tf.keras.Sequential(
                [tf.keras.layers.Dense(16, activation="relu"), tf.keras.layers.Dense(1)], name="sales_bias"
            )

    def call(self, inputs: dict[str, Any]) -> Any:
        parts = [self.article_embedding(inputs["article_id"])]
        parts += [self.category_embeddings[name](inputs[name]) for name in ARTICLE_CATEGORIES]
        out = [_unit_float32(self.mlp(tf.concat([tf.cast(p, self.compute_dtype) for p in parts], axis=1)))]
        if self.config.memory_dim > 0:
            out.append(tf.cast(self.memory(inputs[PRODUCT]), tf.float32))
        if self.config.sales_bias:
            # log1p / 4: counts of 0 to ~e^8 land in [0, 2], the range the small MLP learns fast in.
            sales = tf.stack([tf.cast(inputs[name], tf.float32) for name in ARTICLE_SALES], axis=1)
            out.append(tf.cast(self.sales_mlp(tf.math.log1p(tf.maximum(sales, 0.0)) / 4.0), tf.float32))
        return tf.concat(out, axis=1)

    def get_config(self) -> dict[str, Any]:
        return _plain_config(self.sizes, self.config)


class TwoTower(tfrs.Model):
    """In-batch softmax over the batch's articles, with the log-Q correction: popular articles appear
    as in-batch negatives more often, so their logits get log(sampling probability) subtracted.

    With `random_negatives` > 0, that many articles drawn uniformly from the catalogue join every
    batch's negatives (mixed negative sampling, Yang et al. 2020): in-batch negatives are all
    purchased, often popular articles, so the long tail is otherwise never pushed away. The log-Q
    correction then uses the mixture's probability of each candidate slot."""

    def __init__(self, vocab: Vocabulary, config: TowerConfig) -> None:
        super().__init__()
        self.config = config
        memory = product_memory(vocab.size(PRODUCT), config) if config.memory_dim > 0 else None
        self.query_tower = QueryTower(
            vocab.size("customer_id"), vocab.size("article_id"), config, vocab.history_products(), memory
        )
        sizes = {"article_id": vocab.size("article_id")} | {n: vocab.size(n) for n in ARTICLE_CATEGORIES}
        self.candidate_tower = CandidateTower(sizes, config, memory)
        # The temperature divides the query's unit part only (`QueryTower.call`): the memory and the
        # sales bias are scores already. A uniform draw can be the row's own positive: with random
        # negatives, negatives that share the row's positive id (drawn or in the batch) are masked as
        # accidental hits.
        self.task = tfrs.tasks.Retrieval(temperature=1.0, remove_accidental_hits=config.random_negatives > 0)
        if config.random_negatives > 0:
            self.catalog = {k: tf.constant(v) for k, v in vocab.catalog_arrays().items()}
            self.popularity = tf.constant(vocab.sampling_probability())  # indexed like the embeddings

    def _with_random_negatives(self, features: dict[str, Any], candidates: Any) -> tuple[Any, Any, Any]:
        """Candidates, their ids and slot probabilities with uniform catalogue samples appended."""
        extra = self.config.random_negatives
        articles = tf.shape(self.catalog["article_id"])[0]
        rows = tf.random.uniform([extra], 0, articles, dtype=tf.int32)
        sampled = {k: tf.gather(v, rows) for k, v in self.catalog.items()}
        ids = tf.concat([features["article_id"], sampled["article_id"]], axis=0)
        batch = tf.cast(tf.shape(features["article_id"])[0], tf.float32)
        # A slot holds an in-batch positive (popularity) with weight batch, a uniform draw with weight extra.
        probability = (batch * tf.gather(self.popularity, ids) + extra / tf.cast(articles, tf.float32)) / (
            batch + extra
        )
        return tf.concat([candidates, self.candidate_tower(sampled)], axis=0), ids, probability

    def compute_loss(self, features: dict[str, Any], training: bool = False) -> Any:
        queries = self.query_tower(features)
        candidates = self.candidate_tower(features)
        ids, probability = features["article_id"], features["sampling_probability"]
        if self.config.random_negatives > 0:
            candidates, ids, probability = self._with_random_negatives(features, candidates)
        return self.task(
            queries,
            candidates,
            candidate_sampling_probability=probability if self.config.logq_correction else None,
            candidate_ids=ids,
            compute_metrics=False,
        )


class QueryEncoder(tf.Module):
    """Raw customer inputs (strings, age with NaN for missing) → query embedding; saved for serving."""

    def __init__(self, tower: QueryTower, vocab: Vocabulary) -> None:
        super().__init__()
        self.tower = tower
        self.customers = tf.keras.layers.StringLookup(vocabulary=vocab.customers, num_oov_indices=1)
        self.articles = tf.keras.layers.StringLookup(vocabulary=vocab.articles, num_oov_indices=1)
        self.age_mean, self.age_std = float(vocab.age_mean), float(vocab.age_std)

    @tf.function(
        input_signature=[
            {
                "customer_id": tf.TensorSpec([None], tf.string),
                "age": tf.TensorSpec([None], tf.float32),
                "month_sin": tf.TensorSpec([None], tf.float32),
                "month_cos": tf.TensorSpec([None], tf.float32),
                "history": tf.TensorSpec([None, None], tf.string),
            }
        ]
    )
    def __call__(self, inputs: dict[str, Any]) -> Any:
        age = inputs["age"]
        missing = tf.math.is_nan(age)
        features = {
            "customer_id": self.customers(inputs["customer_id"]),
            "age": tf.where(missing, 0.0, (age - self.age_mean) / self.age_std),
            "age_missing": tf.cast(missing, tf.float32),
            "month_sin": inputs["month_sin"],
            "month_cos": inputs["month_cos"],
            "history": self.articles(inputs["history"]),  # "" padding and unknown articles → 0, ignored
        }
        return self.tower(features)


CANDIDATE_STRINGS = ("article_id", PRODUCT, *ARTICLE_CATEGORIES)


class CandidateEncoder(tf.Module):
    """Raw article rows (id, product code, category names, recent sales) → candidate embedding; saved for
    indexing new articles (sales 0)."""

    def __init__(self, tower: CandidateTower, vocab: Vocabulary) -> None:
        super().__init__()
        self.tower = tower
        self.lookups = {
            "article_id": tf.keras.layers.StringLookup(vocabulary=vocab.articles, num_oov_indices=1),
            PRODUCT: tf.keras.layers.StringLookup(vocabulary=vocab.products, num_oov_indices=1),
        }
        for name in ARTICLE_CATEGORIES:
            self.lookups[name] = tf.keras.layers.StringLookup(
                vocabulary=vocab.categories[name], num_oov_indices=1
            )

    @tf.function(
        input_signature=[
            {name: tf.TensorSpec([None], tf.string) for name in CANDIDATE_STRINGS}
            | {name: tf.TensorSpec([None], tf.float32) for name in ARTICLE_SALES}
        ]
    )
    def __call__(self, inputs: dict[str, Any]) -> Any:
        features = {name: lookup(inputs[name]) for name, lookup in self.lookups.items()}
        return self.tower(features | {name: inputs[name] for name in ARTICLE_SALES})


def export_towers(model: TwoTower, vocab: Vocabulary, folder: str | Path) -> dict[str, str]:
    """Save both encoders as SavedModels under `folder` (query_tower/, candidate_tower/)."""
    folder = Path(folder)
    paths = {"query_tower": str(folder / "query_tower"), "candidate_tower": str(folder / "candidate_tower")}
    tf.saved_model.save(QueryEncoder(model.query_tower, vocab), paths["query_tower"])
    tf.saved_model.save(CandidateEncoder(model.candidate_tower, vocab), paths["candidate_tower"])
    return paths
