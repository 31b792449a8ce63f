"""Candidate sources and their union: what the ranker chooses from.

Every source returns rows (customer_id, article_id, source, source_rank, source_score) for the target
customers as of `week` (transactions strictly before it). `union_candidates` keeps one row per
(customer, article) with each source's rank in its own column (null where the source did not propose it),
so the ranker can learn how far to trust each source.

Personal sources (repurchase, same product) read `personal_tx`; popularity sources read `global_tx`. Both
are the same table in training; batch scoring pins the global one to a snapshot (see ranking/score.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fashionrec.evaluation.baselines import age_band
from fashionrec.features.weeks import week_col

SOURCES = ("two_tower", "repurchase", "same_product", "trending", "age_band", "visual")
ABSENT_RANK = 999  # rank feature of a source that did not propose the article


@dataclass(frozen=True)
class CandidateCounts:
    """How many articles each source proposes per customer (parameters of the ranking tasks)."""

    two_tower: int = 50
    repurchase: int = 12
    same_product: int = 12
    trending: int = 12
    age_band: int = 12
    visual: int = 12
    repurchase_weeks: int = 12


def _before(tx: DataFrame, week: int, weeks_back: int | None = None) -> DataFrame:
    w = week_col(F.col("t_dat"))
    cond = w < week
    if weeks_back:
        cond = cond & (w >= week - weeks_back)
    return tx.where(cond)


def _ranked(df: DataFrame, partition: list[str], order: list[F.Column], n: int) -> DataFrame:
    window = Window.partitionBy(*partition).orderBy(*order)
    return df.withColumn("source_rank", F.row_number().over(window)).where(F.col("source_rank") <= n)


def _rows(df: DataFrame, source: str) -> DataFrame:
    return df.select(
        "customer_id",
        "article_id",
        F.lit(source).alias("source"),
        F.col("source_rank").cast("int").alias("source_rank"),
        F.col("source_score").cast("double").alias("source_score"),
    )


def repurchase(personal_tx: DataFrame, targets: DataFrame, week: int, n: int, weeks_back: int) -> DataFrame:
    """The customer's own recent articles, most recent first (H&M customers re-buy)."""
    bought = (
        _before(personal_tx, week, weeks_back)
        .join(targets, "customer_id", "left_semi")
        .groupBy("customer_id", "article_id")
        .agg(F.max("t_dat").alias("last"), F.count("*").alias("source_score"))
    )
    return _rows(
        _ranked(bought, ["customer_id"], [F.desc("last"), F.desc("source_score"), "article_id"], n),
        "repurchase",
    )


def article_sales(global_tx: DataFrame, week: int, weeks_back: int) -> DataFrame:
    """(article_id, sales) over the `weeks_back` weeks before `week`."""
    return _before(global_tx, week, weeks_back).groupBy("article_id").agg(F.count("*").alias("sales"))


def same_product(
    personal_tx: DataFrame,
    global_tx: DataFrame,
    articles: DataFrame,
    targets: DataFrame,
    week: int,
    n: int,
    weeks_back: int,
) -> DataFrame:
    """Other colours of products the customer bought recently, best sellers of the last 4 weeks first."""
    codes = articles.select("article_id", "product_code")
    bought = (
        _before(personal_tx, week, weeks_back)
        .join(targets, "customer_id", "left_semi")
        .select("customer_id", "article_id")
        .distinct()
    )
    products = bought.join(F.broadcast(codes), "article_id").select("customer_id", "product_code").distinct()
    siblings = (
        products.join(F.broadcast(codes), "product_code")
        .join(bought, ["customer_id", "article_id"], "left_anti")
        .join(F.broadcast(article_sales(global_tx, week, 4)), "article_id", "left")
        .withColumn("source_score", F.coalesce("sales", F.lit(0)))
    )
    return _rows(
        _ranked(siblings, ["customer_id"], [F.desc("source_score"), "article_id"], n), "same_product"
    )


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


def trending(global_tx: DataFrame, targets: DataFrame, week: int, n: int) -> DataFrame:
    """Last week's best sellers, the same list for everyone."""
    top = trending_top(global_tx, week, n)
    return _rows(targets.select("customer_id").crossJoin(F.broadcast(top)), "trending")


def customer_bands(customers: DataFrame) -> DataFrame:
    """(customer_id, band): the age band, -1 where the age is unknown."""
    return customers.select("customer_id", F.coalesce(age_band(F.col("age")), F.lit(-1)).alias("band"))


def age_band_tops(
    global_tx: DataFrame, customers: DataFrame, week: int, n: int, weeks_back: int = 2
) -> DataFrame:
    """(band, article_id, source_rank, source_score): each age band's `n` best sellers of the last
    `weeks_back` weeks; band -1 holds everyone's (for unknown ages)."""
    sales = _before(global_tx, week, weeks_back).join(customer_bands(customers), "customer_id")
    per_band = sales.groupBy("band", "article_id").agg(F.count("*").alias("source_score"))
    overall = (
        sales.groupBy("article_id").agg(F.count("*").alias("source_score")).withColumn("band", F.lit(-1))
    )
    return _ranked(
        per_band.where(F.col("band") >= 0).unionByName(overall),
        ["band"],
        [F.desc("source_score"), "article_id"],
        n,
    )


def age_band_popular(
    global_tx: DataFrame, customers: DataFrame, targets: DataFrame, week: int, n: int, weeks_back: int = 2
) -> DataFrame:
    """Best sellers of the last two weeks among customers of the same age band (unknown age: everyone)."""
    top = age_band_tops(global_tx, customers, week, n, weeks_back)
    return _rows(
        targets.select("customer_id")
        .join(customer_bands(customers), "customer_id", "left")
        .fillna(-1, ["band"])
        .join(F.broadcast(top), "band"),
        "age_band",
    )


def visual_pairs(similar: DataFrame) -> DataFrame:
    """`similar_articles` as rows (article_id, neighbour_id, similarity)."""
    pair = F.explode(F.arrays_zip("neighbour_ids", "scores")).alias("pair")
    return similar.select("article_id", pair).select(
        "article_id",
        F.col("pair.neighbour_ids").alias("neighbour_id"),
        F.col("pair.scores").cast("double").alias("similarity"),
    )


def visual_cold_start(
    personal_tx: DataFrame,
    global_tx: DataFrame,
    similar: DataFrame,
    targets: DataFrame,
    week: int,
    n: int,
    weeks_back: int,
) -> DataFrame:
    """Articles that have never sold before `week` (no sales signal, so no other source finds them) that
    look like what the customer bought recently: visual neighbours from `similar_articles`, closest first.
    """
    bought = (
        _before(personal_tx, week, weeks_back)
        .join(targets, "customer_id", "left_semi")
        .select("customer_id", "article_id")
        .distinct()
    )
    sold = _before(global_tx, week).select("article_id").distinct()
    cold_pairs = visual_pairs(similar).join(
        sold.withColumnRenamed("article_id", "neighbour_id"), "neighbour_id", "left_anti"
    )
    looks_like = (
        bought.join(F.broadcast(cold_pairs), "article_id")
        .groupBy("customer_id", F.col("neighbour_id").alias("article_id"))
        .agg(F.max("similarity").alias("source_score"))
    )
    return _rows(_ranked(looks_like, ["customer_id"], [F.desc("source_score"), "article_id"], n), "visual")


def union_candidates(per_source: list[DataFrame]) -> DataFrame:
    """One row per (customer, article): `rank_<source>` / `score_<source>` columns and the list of sources."""
    rows = per_source[0]
    for df in per_source[1:]:
        rows = rows.unionByName(df)
    aggs = []
    for source in SOURCES:
        hit = F.col("source") == source
        aggs += [
            F.min(F.when(hit, F.col("source_rank"))).alias(f"rank_{source}"),
            F.max(F.when(hit, F.col("source_score"))).alias(f"score_{source}"),
        ]
    return rows.groupBy("customer_id", "article_id").agg(
        *aggs, F.sort_array(F.collect_set("source")).alias("sources")
    )


def candidate_recall(candidates: DataFrame, truth: DataFrame) -> dict[str, float]:
    """Share of the target week's purchases (distinct customer x article) each source covers, and the union."""
    actual = truth.select("customer_id", F.explode("article_ids").alias("article_id")).distinct()
    total = actual.count()
    hits = actual.join(candidates, ["customer_id", "article_id"])
    row = hits.agg(F.count("*").alias("union"), *[F.count(f"rank_{s}").alias(s) for s in SOURCES]).first()
    out = {s: round(row[s] / max(total, 1), 4) for s in (*SOURCES, "union")}
    per_customer = candidates.groupBy("customer_id").count().agg(F.avg("count")).first()[0]
    out["candidates_per_customer"] = round(float(per_customer or 0.0), 1)
    return out
