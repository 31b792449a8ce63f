"""The global inputs of the recommender core, computed in Spark over all transactions before a week:
best-seller lists, co-occurrence pairs, visual neighbour pairs and the article columns the core's sources
and features read. Per-customer work happens in the core (`recommender.core`), once, in numpy.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fashionrec.data.availability import REGIONS
from fashionrec.evaluation.baselines import decayed_sales
from fashionrec.features.weeks import before_week, first_day, week_col


def _ranked(df: DataFrame, partition: list[str], order: list[F.Column], n: int) -> DataFrame:
    window = Window.partitionBy(*partition).orderBy(*order)
    return df.withColumn("source_rank", F.row_number().over(window)).where(F.col("source_rank") <= n)


def article_sales(global_tx: DataFrame, week: int, weeks_back: int) -> DataFrame:
    """(article_id, sales) over the `weeks_back` weeks before `week`."""
    return before_week(global_tx, week, weeks_back).groupBy("article_id").agg(F.count("*").alias("sales"))


def trending_top(global_tx: DataFrame, week: int, n: int) -> DataFrame:
    """(article_id, source_rank, source_score): last week's `n` best sellers."""
    return _ranked(
        article_sales(global_tx, week, 1)
        .withColumn("_all", F.lit(1))
        .withColumnRenamed("sales", "source_score"),
        ["_all"],
        [F.desc("source_score"), "article_id"],
        n,
    ).drop("_all")


def type_tops(global_tx: DataFrame, articles: DataFrame, week: int, n: int) -> DataFrame:
    """(band = product_type_no, article_id, source_rank, source_score): each product type's `n` best
    sellers by decayed sales (the `favourite_type` source weighs the lists of the customer's types)."""
    sales = decayed_sales(global_tx, week).join(
        F.broadcast(articles.select("article_id", F.col("product_type_no").cast("int").alias("band"))),
        "article_id",
    )
    return _ranked(
        sales.where(F.col("band").isNotNull()).withColumnRenamed("decayed_sales", "source_score"),
        ["band"],
        [F.desc("source_score"), "article_id"],
        n,
    )


def decayed_top(global_tx: DataFrame, week: int, n: int) -> DataFrame:
    """(article_id, source_rank, source_score): the `n` best sellers by decayed sales, the popular
    list of the repurchase-then-popular baseline (same order: score, then article id)."""
    scored = decayed_sales(global_tx, week).withColumn("_all", F.lit(1))
    return _ranked(
        scored.withColumnRenamed("decayed_sales", "source_score"),
        ["_all"],
        [F.desc("source_score"), "article_id"],
        n,
    ).drop("_all")


def bought_together_pairs(global_tx: DataFrame, week: int, weeks_back: int, per_article: int) -> DataFrame:
    """(article_id, other_id, count): how many customers bought both articles within the `weeks_back`
    weeks before `week`; the `per_article` most frequent others of each article."""
    baskets = before_week(global_tx, week, weeks_back).select("customer_id", "article_id").distinct()
    pairs = (
        baskets.join(baskets.withColumnRenamed("article_id", "other_id"), "customer_id")
        .where(F.col("article_id") != F.col("other_id"))
        .groupBy("article_id", "other_id")
        .agg(F.count("*").alias("count"))
    )
    window = Window.partitionBy("article_id").orderBy(F.desc("count"), "other_id")
    return (
        pairs.withColumn("_r", F.row_number().over(window))
        .where(F.col("_r") <= per_article)
        .select("article_id", "other_id", F.col("count").cast("double"))
    )


def product_columns(global_tx: DataFrame, articles: DataFrame, week: int) -> DataFrame:
    """(article_id, product_sales_4w, product_weeks_on_sale, repeat_rate) as of `week`: sales of all
    colours of the article's product, weeks since any of them first sold, and the share of the article's
    buyers who bought it more than once."""
    before = before_week(global_tx, week).select("customer_id", "article_id", "t_dat")
    codes = F.broadcast(articles.select("article_id", "product_code"))
    per_product = (
        before.join(codes, "article_id")
        .groupBy("product_code")
        .agg(
            F.sum(F.when(week_col(F.col("t_dat")) >= week - 4, 1).otherwise(0)).alias("product_sales_4w"),
            F.floor(F.datediff(F.lit(first_day(week)), F.min("t_dat")) / 7).alias("product_weeks_on_sale"),
        )
    )
    repeat = (
        before.groupBy("article_id", "customer_id")
        .count()
        .groupBy("article_id")
        .agg(F.avg((F.col("count") > 1).cast("double")).alias("repeat_rate"))
    )
    return (
        articles.select("article_id", "product_code")
        .join(per_product, "product_code", "left")
        .join(repeat, "article_id", "left")
        .select(
            "article_id",
            F.col("product_sales_4w").cast("double"),
            F.col("product_weeks_on_sale").cast("double"),
            "repeat_rate",
        )
    )


def visual_pairs(similar: DataFrame) -> DataFrame:
    """`similar_articles` as rows (article_id, neighbour_id, similarity)."""
    pair = F.explode(F.arrays_zip("neighbour_ids", "scores")).alias("pair")
    return similar.select("article_id", pair).select(
        "article_id",
        F.col("pair.neighbour_ids").alias("neighbour_id"),
        F.col("pair.scores").cast("double").alias("similarity"),
    )


def customer_region(postal_code: F.Column) -> F.Column:
    """The region bucket of a (hashed) postal code; mirrors `data.availability.region_index`."""
    bucket = F.pmod(F.conv(F.substring(postal_code, 1, 8), 16, 10).cast("long"), F.lit(len(REGIONS)))
    valid = postal_code.rlike("^[0-9a-fA-F]{8}")
    return F.when(valid, F.element_at(F.array(*[F.lit(r) for r in REGIONS]), (bucket + 1).cast("int")))
