"""An article's recent sales as of a week, the candidate tower's view of trend (point in time: only
transactions before the week). Fashion demand moves week to week; the article id alone cannot say that
a dress sells now, so the towers get it as a feature, the same one for training rows and the index."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.features.weeks import week_col
from fashionrec.retrieval.vocab import ARTICLE_SALES

HALF_LIFE_WEEKS = 2.0  # chosen on the demo's validation week (docs/journal.md, two-tower section)
WINDOW_WEEKS = 8


def article_recent_sales(transactions: DataFrame, weeks: list[int]) -> DataFrame:
    """(article_id, week, recent_sales, last_week_sales, weeks_on_sale) for every article sold before each
    of `weeks`: sales of the WINDOW_WEEKS weeks before it weighted by 0.5 ** (weeks back / half life), the
    week before's sales, and the weeks since its first sale. Articles never sold before a week have no row
    (their features are 0)."""
    spark = transactions.sparkSession
    targets = F.broadcast(spark.createDataFrame([(int(w),) for w in sorted(set(weeks))], "target int"))
    weekly = (
        transactions.withColumn("sold", week_col(F.col("t_dat")))
        .where(F.col("sold") < max(weeks))
        .groupBy("article_id", "sold")
        .agg(F.count("*").cast("double").alias("n"))
    )
    first = weekly.groupBy("article_id").agg(F.min("sold").alias("first_sold"))
    back = F.col("target") - 1 - F.col("sold")
    recent = (
        weekly.crossJoin(targets)
        .where((F.col("sold") < F.col("target")) & (F.col("sold") >= F.col("target") - WINDOW_WEEKS))
        .groupBy("article_id", "target")
        .agg(
            F.sum(F.col("n") * F.pow(F.lit(0.5), back / HALF_LIFE_WEEKS)).alias(ARTICLE_SALES[0]),
            F.sum(F.when(back == 0, F.col("n")).otherwise(0.0)).alias(ARTICLE_SALES[1]),
        )
    )
    return (
        first.crossJoin(targets)
        .where(F.col("first_sold") < F.col("target"))
        .withColumn(ARTICLE_SALES[2], (F.col("target") - F.col("first_sold")).cast("double"))
        .join(recent, ["article_id", "target"], "left")
        .fillna(0.0, list(ARTICLE_SALES[:2]))
        .select("article_id", F.col("target").alias("week"), *ARTICLE_SALES)
    )


def with_recent_sales(rows: DataFrame, transactions: DataFrame, weeks: list[int]) -> DataFrame:
    """`rows` (article_id, week) with the article's recent sales as of its week (0 for none)."""
    sales = article_recent_sales(transactions, weeks)
    return rows.join(sales, ["article_id", "week"], "left").fillna(0.0, list(ARTICLE_SALES))


def with_recent_sales_as_of(articles: DataFrame, transactions: DataFrame, week: int) -> DataFrame:
    """`articles` (with article_id) with their recent sales as of one `week` (0 for none): the index's and
    the vocabulary's view of the catalogue."""
    sales = article_recent_sales(transactions, [week]).drop("week")
    return articles.join(sales, "article_id", "left").fillna(0.0, list(ARTICLE_SALES))
