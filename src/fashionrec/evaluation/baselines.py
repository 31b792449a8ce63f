"""Baselines on the same split as every model: they set the bar a model must clear.

Each returns {customer_id: [article_id, ...]} (top-k) for the given customers, using only
transactions before the target week.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fashionrec.features.weeks import before_week, first_day
from fashionrec.recommender.live import REPURCHASE_WEEKS

AGE_BANDS = [16, 20, 25, 30, 40, 50, 60]


def _top(scored: DataFrame, k: int, score: str = "score") -> list[str]:
    return [r["article_id"] for r in scored.orderBy(F.desc(score), "article_id").limit(k).collect()]


def popular_last_week(transactions: DataFrame, week: int, k: int) -> list[str]:
    """The k best sellers of the week before the target week: the same list for everyone."""
    return _top(before_week(transactions, week, 1).groupBy("article_id").agg(F.count("*").alias("score")), k)


def decayed_popularity(
    transactions: DataFrame, week: int, k: int, half_life_days: float = 7.0, weeks_back: int = 8
) -> list[str]:
    """The k best sellers by `decayed_sales`."""
    return _top(decayed_sales(transactions, week, half_life_days, weeks_back), k, "decayed_sales")


def decayed_sales(
    transactions: DataFrame, week: int, half_life_days: float = 7.0, weeks_back: int = 8
) -> DataFrame:
    """(article_id, decayed_sales): sales weighted by 0.5 ** (days before the target week / half life)."""
    days = F.datediff(F.lit(first_day(week)), F.col("t_dat"))
    weighted = before_week(transactions, week, weeks_back).withColumn(
        "w", F.pow(F.lit(0.5), days / half_life_days)
    )
    return weighted.groupBy("article_id").agg(F.sum("w").alias("decayed_sales"))


def _fill(own: list[str], fallback: list[str], k: int) -> list[str]:
    return (own + [a for a in fallback if a not in own])[:k]


def repurchase(
    transactions: DataFrame,
    customers: DataFrame,
    week: int,
    k: int,
    fallback: list[str],
    weeks_back: int | None = REPURCHASE_WEEKS,
) -> dict[str, list[str]]:
    """The customer's most recently bought distinct articles of the last `weeks_back` weeks (None: their
    whole history), then the popular fallback list."""
    recent = (
        before_week(transactions, week, weeks_back)
        .join(customers.select("customer_id"), "customer_id", "left_semi")
        .groupBy("customer_id", "article_id")
        .agg(F.max("t_dat").alias("last"), F.count("*").alias("n"))
    )
    ranked = recent.withColumn(
        "rank",
        F.row_number().over(
            Window.partitionBy("customer_id").orderBy(F.desc("last"), F.desc("n"), "article_id")
        ),
    ).where(F.col("rank") <= k)
    lists = ranked.groupBy("customer_id").agg(
        F.sort_array(F.collect_list(F.struct("rank", "article_id"))).alias("l")
    )
    own = {r["customer_id"]: [x["article_id"] for x in r["l"]] for r in lists.collect()}
    return {
        r["customer_id"]: _fill(own.get(r["customer_id"], []), fallback, k)
        for r in customers.select("customer_id").collect()
    }


def age_band(age: F.Column) -> F.Column:
    band = F.lit(None).cast("int")
    for low in AGE_BANDS:
        band = F.when(age >= low, F.lit(low)).otherwise(band)
    return band


def known_band(age: F.Column) -> F.Column:
    """The age band, -1 where the age is unknown (the band of the everyone list)."""
    return F.coalesce(age_band(age), F.lit(-1))


def customer_bands(customers: DataFrame) -> DataFrame:
    """(customer_id, band): `known_band` of each customer's age."""
    return customers.select("customer_id", known_band(F.col("age")).alias("band"))


def age_band_tops(
    transactions: DataFrame, customers: DataFrame, week: int, n: int, weeks_back: int = 2
) -> DataFrame:
    """(band, article_id, source_rank, source_score): each age band's `n` best sellers of the last
    `weeks_back` weeks; band -1 holds everyone's (for unknown ages). The baseline below and the
    recommender's age-band source (`snapshot.build`) both read it."""
    sales = before_week(transactions, week, weeks_back).join(customer_bands(customers), "customer_id")
    per_band = sales.groupBy("band", "article_id").agg(F.count("*").alias("source_score"))
    overall = (
        sales.groupBy("article_id").agg(F.count("*").alias("source_score")).withColumn("band", F.lit(-1))
    )
    window = Window.partitionBy("band").orderBy(F.desc("source_score"), "article_id")
    return (
        per_band.where(F.col("band") >= 0)
        .unionByName(overall)
        .withColumn("source_rank", F.row_number().over(window))
        .where(F.col("source_rank") <= n)
    )


def age_band_popular(
    transactions: DataFrame,
    customers: DataFrame,
    all_customers: DataFrame,
    week: int,
    k: int,
    fallback: list[str],
    weeks_back: int = 2,
) -> dict[str, list[str]]:
    """Best sellers of the last weeks among customers of the same age band (unknown age: fallback)."""
    tops = age_band_tops(transactions, all_customers, week, k, weeks_back).where(F.col("band") >= 0)
    per_band: dict[int, list[str]] = {}
    for r in tops.orderBy("band", "source_rank").collect():
        per_band.setdefault(r["band"], []).append(r["article_id"])
    bands = customer_bands(all_customers)
    targets = customers.select("customer_id").join(bands, "customer_id", "left").collect()
    return {r["customer_id"]: _fill(per_band.get(r["band"], []), fallback, k) for r in targets}
