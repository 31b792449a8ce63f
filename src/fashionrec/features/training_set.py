"""The retrieval training set: one row per purchase in the training window, with tower inputs."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.features.context import with_context
from fashionrec.features.history import weekly_history
from fashionrec.features.keys import KEY, customer_key
from fashionrec.features.recent_sales import with_recent_sales
from fashionrec.features.splits import Splits
from fashionrec.features.weeks import first_day
from fashionrec.retrieval.vocab import ARTICLE_SALES, PRODUCT

# Bumped when the training set's columns change: the features task rewrites a lakehouse's training set
# whose state names another version, even when no source table changed.
TRAINING_SET_VERSION = 2  # 2: product_code and the article's recent sales

CANDIDATE_COLUMNS = [
    PRODUCT,
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
    candidate features. `history` holds the customer's last purchases of earlier weeks, the article's
    recent sales are those before its row's week (point in time)."""
    key = customer_key(customers)
    keyed = transactions.withColumn(KEY, key)
    train = with_context(keyed).where(F.col("week") < splits.val_week)
    if weeks > 0:
        train = train.where(F.col("week") >= splits.val_week - weeks)
    first_week = splits.val_week - weeks if weeks > 0 else None
    start = first_week if first_week is not None else train.agg(F.min("week")).first()[0]
    training_weeks = list(range(int(start), splits.val_week)) if start is not None else [splits.val_week]
    history = weekly_history(
        keyed.where(F.col("t_dat") < F.lit(first_day(splits.val_week))).select(KEY, "t_dat", "article_id"),
        from_week=first_week,
        key=KEY,
    )
    return (
        with_recent_sales(train.join(history, [KEY, "week"], "left"), transactions, training_weeks)
        .join(
            F.broadcast(customers.select(key.alias(KEY), F.col("age").cast("double").alias("age"))),
            KEY,
            "left",
        )
        .join(
            articles.select(
                "article_id", F.col(PRODUCT).cast("string").alias(PRODUCT), *CANDIDATE_COLUMNS[1:]
            ),
            "article_id",
            "left",
        )
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
            *ARTICLE_SALES,
            "price",
            "sales_channel_id",
        )
    )
