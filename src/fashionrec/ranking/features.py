"""Ranker features for (customer, candidate article) pairs as of a week: one function for training,
evaluation and batch scoring, so the three cannot drift apart.

Customer and article features come from the feature tables (or the same functions, for a week the
tables do not hold); interaction features count what the customer bought before the week that shares
the candidate's product, product type or colour.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.features.weeks import first_day, week_col
from fashionrec.ranking.candidates import ABSENT_RANK, SOURCES, visual_pairs

CUSTOMER_FEATURES = [
    "age",
    "days_since_last_purchase",
    "n_purchases_1w",
    "n_purchases_4w",
    "n_purchases_12w",
    "n_purchases_all",
    "spend_4w",
    "online_share",
    "customer_mean_price",
]
ARTICLE_FEATURES = [
    "sales_1w",
    "sales_4w",
    "sales_all",
    "trend",
    "weeks_on_sale",
    "article_mean_price",
    "mean_buyer_age",
    "product_type_no",
    "index_group_no",
    "garment_group_no",
    "colour_group_code",
    "graphical_appearance_no",
]
INTERACTION_FEATURES = [
    "n_bought_article",
    "n_bought_product",
    "n_bought_type",
    "n_bought_colour",
    "days_since_article",
    "days_since_product",
    "price_ratio",
    "age_gap",
    "visual_similarity",
]
SOURCE_FEATURES = [f"rank_{s}" for s in SOURCES] + ["score_two_tower", "n_sources"]
FEATURES = SOURCE_FEATURES + CUSTOMER_FEATURES + ARTICLE_FEATURES + INTERACTION_FEATURES

_ATTRS = ["article_id", "product_code", "product_type_no", "colour_group_code"]


def _interactions(
    pairs: DataFrame, personal_tx: DataFrame, articles: DataFrame, week: int, similar: DataFrame | None
) -> DataFrame:
    attrs = F.broadcast(articles.select(*_ATTRS))
    past = (
        personal_tx.where(week_col(F.col("t_dat")) < week)
        .join(pairs.select("customer_id").distinct(), "customer_id", "left_semi")
        .select("customer_id", "article_id", "t_dat")
        .join(attrs, "article_id")
    )
    day = F.lit(first_day(week))

    def by(key: str, name: str, with_days: bool) -> DataFrame:
        aggs = [F.count("*").alias(f"n_bought_{name}")]
        if with_days:
            aggs.append(F.datediff(day, F.max("t_dat")).alias(f"days_since_{name}"))
        return past.groupBy("customer_id", key).agg(*aggs)

    out = (
        pairs.join(attrs, "article_id", "left")
        .join(by("article_id", "article", True), ["customer_id", "article_id"], "left")
        .join(by("product_code", "product", True), ["customer_id", "product_code"], "left")
        .join(by("product_type_no", "type", False), ["customer_id", "product_type_no"], "left")
        .join(by("colour_group_code", "colour", False), ["customer_id", "colour_group_code"], "left")
        .drop("product_code", "product_type_no", "colour_group_code")
    )
    if similar is not None:
        # Closest visual match among the customer's past purchases (0: not among any of their neighbours).
        looks_like = (
            past.select("customer_id", "article_id")
            .distinct()
            .join(F.broadcast(visual_pairs(similar)), "article_id")
            .groupBy("customer_id", F.col("neighbour_id").alias("article_id"))
            .agg(F.max("similarity").alias("visual_similarity"))
        )
        out = out.join(looks_like, ["customer_id", "article_id"], "left").fillna(0.0, ["visual_similarity"])
    else:
        out = out.withColumn("visual_similarity", F.lit(None).cast("double"))
    return out.fillna(0, subset=[f"n_bought_{n}" for n in ("article", "product", "type", "colour")])


def ranking_features(
    candidates: DataFrame,
    customer_features: DataFrame,
    article_features: DataFrame,
    personal_tx: DataFrame,
    articles: DataFrame,
    week: int,
    similar: DataFrame | None = None,
) -> DataFrame:
    """`candidates` (from `union_candidates`) with every column of `FEATURES`, nulls where unknown.

    `customer_features` / `article_features` hold one row per id for `week` (as_of_week = week).
    """
    customers = customer_features.select(
        "customer_id",
        *[c for c in CUSTOMER_FEATURES if c != "customer_mean_price"],
        F.col("mean_price").alias("customer_mean_price"),
    )
    items = article_features.select(
        "article_id",
        *[c for c in ARTICLE_FEATURES if c != "article_mean_price"],
        F.col("mean_price").alias("article_mean_price"),
    )
    out = (
        _interactions(candidates, personal_tx, articles, week, similar)
        .join(customers, "customer_id", "left")
        .join(F.broadcast(items), "article_id", "left")
        .withColumn("price_ratio", F.col("article_mean_price") / F.col("customer_mean_price"))
        .withColumn("age_gap", F.col("age") - F.col("mean_buyer_age"))
        .withColumn("n_sources", F.size("sources"))
        .fillna(ABSENT_RANK, subset=[f"rank_{s}" for s in SOURCES])
    )
    return out.select(
        "customer_id",
        "article_id",
        "sources",
        *[F.col(c).cast("double").alias(c) for c in FEATURES],
    )


def with_labels(features: DataFrame, truth: DataFrame) -> DataFrame:
    """label 1 for the candidates the customer bought in the target week, else 0."""
    bought = (
        truth.select("customer_id", F.explode("article_ids").alias("article_id"))
        .distinct()
        .withColumn("label", F.lit(1))
    )
    return features.join(bought, ["customer_id", "article_id"], "left").fillna(0, subset=["label"])
