"""A straight re-implementation of the seed tutorial's two-tower model, the throughput baseline.

As the tutorial builds it: string ids looked up inside the model (StringLookup + Embedding), the query
tower = customer id embedding + age + month sin/cos, the candidate tower = article id + garment group +
index group embeddings, both to 64 dimensions; TFRS Retrieval with FactorizedTopK metrics over the
catalogue (TFRS computes them on every training batch unless told otherwise); batch 2048; Adam.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fashionrec.training.tf_env import import_tensorflow

tf = import_tensorflow()
import tensorflow_recommenders as tfrs  # noqa: E402

DIM = 64
BATCH = 2048


class TutorialModel(tfrs.Model):
    def __init__(
        self,
        customers: list[str],
        articles: list[str],
        garment: list[str],
        index: list[str],
        catalog: Any,
        metrics: bool,
    ):
        super().__init__()
        self.customer = tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(vocabulary=customers),
                tf.keras.layers.Embedding(len(customers) + 1, DIM),
            ]
        )
        self.article = tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(vocabulary=articles),
                tf.keras.layers.Embedding(len(articles) + 1, DIM),
            ]
        )
        self.garment = tf.keras.Sequential(
            [
                tf.keras.layers.StringLookup(vocabulary=garment),
                tf.keras.layers.Embedding(len(garment) + 1, DIM),
            ]
        )
        self.index_group = tf.keras.Sequential(
            [tf.keras.layers.StringLookup(vocabulary=index), tf.keras.layers.Embedding(len(index) + 1, DIM)]
        )
        self.query_dense = tf.keras.layers.Dense(DIM)
        self.candidate_dense = tf.keras.layers.Dense(DIM)
        top_k = (
            tfrs.metrics.FactorizedTopK(candidates=catalog.batch(4096).map(self.candidate_embedding))
            if metrics
            else None
        )
        self.task = tfrs.tasks.Retrieval(metrics=top_k)

    def query_embedding(self, f: dict[str, Any]) -> Any:
        dense = tf.stack([f["age"], f["month_sin"], f["month_cos"]], axis=1)
        return self.query_dense(tf.concat([self.customer(f["customer_id"]), dense], axis=1))

    def candidate_embedding(self, f: dict[str, Any]) -> Any:
        parts = [
            self.article(f["article_id"]),
            self.garment(f["garment_group_name"]),
            self.index_group(f["index_group_name"]),
        ]
        return self.candidate_dense(tf.concat(parts, axis=1))

    def compute_loss(self, features: dict[str, Any], training: bool = False) -> Any:
        return self.task(self.query_embedding(features), self.candidate_embedding(features))


def to_dataset(table: Any) -> Any:
    """The tutorial's input: a pandas frame of strings and floats → tf.data, shuffled and batched."""
    frame = {
        "customer_id": table["customer_id"].astype(str).to_numpy(),
        "age": ((table["age"].fillna(36.0) - 36.0) / 14.0).astype(np.float32).to_numpy(),
        "month_sin": table["month_sin"].astype(np.float32).to_numpy(),
        "month_cos": table["month_cos"].astype(np.float32).to_numpy(),
        "article_id": table["article_id"].astype(str).to_numpy(),
        "garment_group_name": table["garment_group_name"].fillna("").astype(str).to_numpy(),
        "index_group_name": table["index_group_name"].fillna("").astype(str).to_numpy(),
    }
    return (
        tf.data.Dataset.from_tensor_slices(frame).shuffle(100_000, seed=42).batch(BATCH, drop_remainder=True)
    )
