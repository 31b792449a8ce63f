"""Article features as of a week: sales over windows, trend, age on sale, price, buyers' mean age.

An article's row depends only on its own transactions, its buyers' ages and its own catalogue record.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

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


def _as_of(weekly: DataFrame, week: int) -> DataFrame:
    past = weekly.where(F.col("week") < week)

    def sales(condition):
        return F.sum(F.when(condition, F.col("n")).otherwise(0))

    w = F.col("week")
    return (
        past.groupBy("article_id")
        .agg(
            sales(w >= week - 1).alias("sales_1w"),
            sales(w >= week - 4).alias("sales_4w"),
            sales((w >= week - 5) & (w < week - 1)).alias("_sales_prev4"),
            F.sum("n").alias("sales_all"),
            F.min("week").alias("_first_week"),
            F.sum("price_sum").alias("_price_sum"),
            F.sum("age_sum").alias("_age_sum"),
            F.sum("age_n").alias("_age_n"),
        )
        .withColumn("as_of_week", F.lit(week))
    )


def article_features(
    transactions: DataFrame, customers: DataFrame, articles: DataFrame, weeks: list[int]
) -> DataFrame:
    """One row per (article in `articles`, week in `weeks`); unsold articles get zeros."""
    tx = transactions.withColumn("week", week_col(F.col("t_dat"))).join(
        customers.select("customer_id", F.col("age").cast("double").alias("buyer_age")), "customer_id", "left"
    )
    weekly = tx.groupBy("article_id", "week").agg(
        F.count("*").alias("n"),
        F.sum("price").alias("price_sum"),
        F.sum("buyer_age").alias("age_sum"),
        F.count("buyer_age").alias("age_n"),
    ).persist()  # read by every as-of week; run_features clears the cache when it is done
    history = None
    for week in weeks:
        part = _as_of(weekly, week)
        history = part if history is None else history.unionByName(part)
    assert history is not None, "weeks must not be empty"
    spark = articles.sparkSession
    grid = articles.select("article_id", *CATEGORICAL, article_description(articles).alias("description")).crossJoin(
        F.broadcast(spark.createDataFrame([(w,) for w in weeks], "as_of_week int"))
    )
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
