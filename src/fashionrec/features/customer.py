"""Customer features as of a week, from that customer's transactions strictly before the week.

A customer's row depends only on their own transactions, the articles they bought and their own
customer record, which is what lets the incremental run recompute just the customers that changed.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.features.weeks import first_day_col, week_col

FAVOURITES = {
    "index_group": "index_group_name",
    "garment_group": "garment_group_name",
    "colour": "perceived_colour_master_name",
}
WINDOWS = (1, 4, 12)


def _weekly(transactions: DataFrame) -> DataFrame:
    return transactions.groupBy("customer_id", "week").agg(
        F.count("*").alias("n"),
        F.sum("price").alias("spend"),
        F.sum(F.when(F.col("sales_channel_id") == 2, 1).otherwise(0)).alias("online"),
        F.max("t_dat").alias("last_day"),
    )


def _weekly_categories(transactions: DataFrame) -> DataFrame:
    parts = [
        transactions.groupBy("customer_id", "week", F.lit(name).alias("dim"), F.col(column).alias("value")).count()
        for name, column in FAVOURITES.items()
    ]
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def _as_of(weekly: DataFrame, categories: DataFrame, week: int) -> DataFrame:
    past = weekly.where(F.col("week") < week)
    windowed = []
    for span in WINDOWS:
        recent = F.col("week") >= week - span
        windowed += [
            F.sum(F.when(recent, F.col("n")).otherwise(0)).alias(f"n_purchases_{span}w"),
            F.sum(F.when(recent, F.col("spend")).otherwise(0.0)).alias(f"spend_{span}w"),
        ]
    totals = past.groupBy("customer_id").agg(
        *windowed,
        F.sum("n").alias("n_purchases_all"),
        F.sum("spend").alias("spend_all"),
        F.sum("online").alias("_online"),
        F.max("last_day").alias("_last_day"),
    )
    counts = (
        categories.where(F.col("week") < week)
        .groupBy("customer_id", "dim", "value")
        .agg(F.sum("count").alias("n"))
        .groupBy("customer_id", "dim")
        .agg(F.max(F.struct("n", "value")).alias("top"), F.sum("n").alias("total"))
    )
    favourites = counts.groupBy("customer_id").agg(
        *[
            agg
            for name in FAVOURITES
            for agg in (
                F.max(F.when(F.col("dim") == name, F.col("top.value"))).alias(f"fav_{name}"),
                F.max(F.when(F.col("dim") == name, F.col("top.n") / F.col("total"))).alias(f"fav_{name}_share"),
            )
        ]
    )
    return totals.join(favourites, "customer_id", "left").withColumn("as_of_week", F.lit(week))


def customer_features(
    transactions: DataFrame, customers: DataFrame, articles: DataFrame, weeks: list[int]
) -> DataFrame:
    """One row per (customer in `customers`, week in `weeks`); customers without history get zeros."""
    tx = transactions.withColumn("week", week_col(F.col("t_dat"))).join(
        articles.select("article_id", *FAVOURITES.values()), "article_id", "left"
    )
    # Cached: every as-of week reads them; without the cache each week re-scanned all transactions
    # (8 full scans at full scale). run_features clears the cache when it is done.
    weekly, categories = _weekly(tx).persist(), _weekly_categories(tx).persist()
    history = None
    for week in weeks:
        part = _as_of(weekly, categories, week)
        history = part if history is None else history.unionByName(part)
    assert history is not None, "weeks must not be empty"
    grid = customers.select(
        "customer_id",
        F.col("age").cast("int").alias("age"),
        F.col("age").isNull().alias("age_missing"),
        F.coalesce(F.col("FN") == 1.0, F.lit(False)).alias("fashion_news"),
        F.coalesce(F.col("Active") == 1.0, F.lit(False)).alias("active"),
        F.coalesce("club_member_status", F.lit("UNKNOWN")).alias("club_member_status"),
        F.coalesce("fashion_news_frequency", F.lit("UNKNOWN")).alias("fashion_news_frequency"),
    ).crossJoin(F.broadcast(customers.sparkSession.createDataFrame([(w,) for w in weeks], "as_of_week int")))
    counts = [f"n_purchases_{s}w" for s in WINDOWS] + ["n_purchases_all"]
    spends = [f"spend_{s}w" for s in WINDOWS] + ["spend_all"]
    out = grid.join(history, ["customer_id", "as_of_week"], "left").fillna(0, subset=counts).fillna(0.0, subset=spends)
    has = F.col("n_purchases_all") > 0
    return out.select(
        "customer_id",
        "as_of_week",
        first_day_col(F.col("as_of_week")).alias("as_of_date"),
        "age",
        "age_missing",
        "fashion_news",
        "active",
        "club_member_status",
        "fashion_news_frequency",
        F.datediff(first_day_col(F.col("as_of_week")), F.col("_last_day")).alias("days_since_last_purchase"),
        *[F.col(c).cast("int").alias(c) for c in counts],
        *spends,
        F.when(has, F.col("_online") / F.col("n_purchases_all")).alias("online_share"),
        F.when(has, F.col("spend_all") / F.col("n_purchases_all")).alias("mean_price"),
        *[c for name in FAVOURITES for c in (f"fav_{name}", f"fav_{name}_share")],
    )
