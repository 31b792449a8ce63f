"""Article features as of a week: sales over windows, trend, age on sale, price, buyers' mean age.

An article's row depends only on its own transactions, its buyers' ages and its own catalogue record.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.features.keys import customer_key
from fashionrec.features.weeks import first_day_col, week_col

CATEGORICAL = [
    "product_code",
    "product_type_no",
    "product_type_name",
    "product_group_name",
    "graphical_appearance_no",
    "colour_group_code",
    "colour_group_name",
    "perceived_colour_value_id",
    "perceived_colour_master_id",
    "perceived_colour_master_name",
    "department_no",
    "index_code",
    "index_group_no",
    "index_group_name",
    "section_no",
    "garment_group_no",
    "garment_group_name",
]


def article_description(articles: DataFrame) -> F.Column:
    """A sentence composed from the catalogue metadata, for text embeddings later."""
    parts = [
        F.col("prod_name"),
        F.concat_ws(" ", F.col("colour_group_name"), F.lower(F.col("product_type_name"))),
        F.concat_ws(" ", F.lower(F.col("graphical_appearance_name")), F.lit("pattern")),
        F.concat_ws(" ", F.lit("from"), F.col("index_group_name"), F.lit("/"), F.col("garment_group_name")),
        F.col("detail_desc"),
    ]
    return F.concat_ws(". ", *parts)


HISTORY_COLUMNS = [
    "sales_1w",
    "sales_4w",
    "_sales_prev4",
    "sales_all",
    "_first_week",
    "_price_sum",
    "_age_sum",
    "_age_n",
]


def _history(weekly: DataFrame, weeks: list[int]) -> DataFrame:
    """(article_id, as_of_week, history columns): one aggregation with conditional sums for all weeks."""
    w = F.col("week")

    def total(column: str, condition) -> F.Column:
        return F.sum(F.when(condition, F.col(column)).otherwise(0))

    aggs = []
    for week in weeks:
        before = w < week
        aggs += [
            total("n", before & (w >= week - 1)).alias(f"sales_1w__{week}"),
            total("n", before & (w >= week - 4)).alias(f"sales_4w__{week}"),
            total("n", (w >= week - 5) & (w < week - 1)).alias(f"_sales_prev4__{week}"),
            total("n", before).alias(f"sales_all__{week}"),
            F.min(F.when(before, w)).alias(f"_first_week__{week}"),
            total("price_sum", before).alias(f"_price_sum__{week}"),
            total("age_sum", before).alias(f"_age_sum__{week}"),
            total("age_n", before).alias(f"_age_n__{week}"),
        ]
    per_week = F.array(
        *[
            F.struct(
                F.lit(week).alias("as_of_week"), *[F.col(f"{c}__{week}").alias(c) for c in HISTORY_COLUMNS]
            )
            for week in weeks
        ]
    )
    wide = weekly.groupBy("article_id").agg(*aggs)
    return wide.select("article_id", F.explode(per_week).alias("h")).select("article_id", "h.*")


def article_features(
    transactions: DataFrame, customers: DataFrame, articles: DataFrame, weeks: list[int]
) -> DataFrame:
    """One row per (article in `articles`, week in `weeks`); unsold articles get zeros."""
    key = customer_key(customers)
    tx = (
        transactions.withColumn("week", week_col(F.col("t_dat")))
        .where(F.col("week") < max(weeks))
        .select(key.alias("_buyer"), "article_id", "week", "price")
        .join(
            # Broadcast: 1.4M (key, age) pairs fit in memory and spare a shuffle of every transaction.
            F.broadcast(
                customers.select(key.alias("_buyer"), F.col("age").cast("double").alias("buyer_age"))
            ),
            "_buyer",
            "left",
        )
    )
    weekly = tx.groupBy("article_id", "week").agg(
        F.count("*").alias("n"),
        F.sum("price").alias("price_sum"),
        F.sum("buyer_age").alias("age_sum"),
        F.count("buyer_age").alias("age_n"),
    )
    history = _history(weekly, weeks)
    spark = articles.sparkSession
    grid = articles.select(
        "article_id", *CATEGORICAL, article_description(articles).alias("description")
    ).crossJoin(F.broadcast(spark.createDataFrame([(w,) for w in weeks], "as_of_week int")))
    out = grid.join(history, ["article_id", "as_of_week"], "left").fillna(
        0, subset=["sales_1w", "sales_4w", "_sales_prev4", "sales_all"]
    )
    sold = F.col("sales_all") > 0
    return out.select(
        "article_id",
        "as_of_week",
        first_day_col(F.col("as_of_week")).alias("as_of_date"),
        F.col("sales_1w").cast("int").alias("sales_1w"),
        F.col("sales_4w").cast("int").alias("sales_4w"),
        F.col("sales_all").cast("int").alias("sales_all"),
        ((F.col("sales_1w") + 1.0) / (F.col("_sales_prev4") / 4.0 + 1.0)).alias("trend"),
        (F.col("as_of_week") - F.col("_first_week")).alias("weeks_on_sale"),
        F.when(sold, F.col("_price_sum") / F.col("sales_all")).alias("mean_price"),
        F.when(F.col("_age_n") > 0, F.col("_age_sum") / F.col("_age_n")).alias("mean_buyer_age"),
        *CATEGORICAL,
        "description",
    )
