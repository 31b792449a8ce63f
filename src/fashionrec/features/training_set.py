"""The retrieval training set: one row per purchase in the training window, with tower inputs."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.features.context import with_context
from fashionrec.features.history import weekly_history
from fashionrec.features.keys import KEY, customer_key
from fashionrec.features.splits import Splits
from fashionrec.features.weeks import first_day

CANDIDATE_COLUMNS = [
    "garment_group_name",
    "index_group_name",
    "product_type_name",
    "colour_group_name",
    "perceived_colour_master_name",
    "graphical_appearance_name",
]


def retrieval_training_set(
    transactions: DataFrame, customers: DataFrame, articles: DataFrame, splits: Splits, weeks: int = 0
) -> DataFrame:
    """Purchases before the validation week with query (customer, age, month, recent purchases) and
    candidate features. `history` holds the customer's last purchases of earlier weeks (point in time)."""
    key = customer_key(customers)
    keyed = transactions.withColumn(KEY, key)
    train = with_context(keyed).where(F.col("week") < splits.val_week)
    if weeks > 0:
        train = train.where(F.col("week") >= splits.val_week - weeks)
    first_week = splits.val_week - weeks if weeks > 0 else None
    history = weekly_history(
        keyed.where(F.col("t_dat") < F.lit(first_day(splits.val_week))).select(KEY, "t_dat", "article_id"),
        from_week=first_week,
        key=KEY,
    )
    return (
        train.join(history, [KEY, "week"], "left")
        .join(
            F.broadcast(customers.select(key.alias(KEY), F.col("age").cast("double").alias("age"))),
            KEY,
            "left",
        )
        .join(articles.select("article_id", *CANDIDATE_COLUMNS), "article_id", "left")
        .select(
            "customer_id",
            "age",
            "month_sin",
            "month_cos",
            F.coalesce("history", F.array().cast("array<string>")).alias("history"),
            "week",
            "t_dat",
            "article_id",
            *CANDIDATE_COLUMNS,
            "price",
            "sales_channel_id",
        )
    )
