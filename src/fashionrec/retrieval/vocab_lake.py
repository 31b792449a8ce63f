"""The towers' vocabularies read from the feature tables as of a week (build side, Spark)."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from fashionrec.config import TableLocator, Tables
from fashionrec.lake.tables import read_table
from fashionrec.retrieval.vocab import ARTICLE_CATEGORIES, Vocabulary


def vocabulary_from_lake(
    spark: SparkSession, tables: TableLocator, as_of_week: int, min_purchases: int = 1
) -> Vocabulary:
    """Customers with at least `min_purchases` before `as_of_week` (the others share the OOV bucket), every
    article of the catalogue, and every category value, from the feature tables as of that week."""
    customers = read_table(spark, tables, Tables.CUSTOMER_FEATURES).where(
        (F.col("as_of_week") == as_of_week) & (F.col("n_purchases_all") >= min_purchases)
    )
    stats = customers.agg(F.mean("age").alias("m"), F.stddev("age").alias("s")).first()
    articles = (
        read_table(spark, tables, Tables.ARTICLE_FEATURES)
        .where(F.col("as_of_week") == as_of_week)
        .select("article_id", "sales_all", *ARTICLE_CATEGORIES)
        .orderBy("article_id")
        .toPandas()
    )
    if articles.empty:
        raise ValueError(f"no article features for as_of_week {as_of_week}: run the features task first")
    categories = {c: sorted(v for v in articles[c].dropna().unique()) for c in ARTICLE_CATEGORIES}
    return Vocabulary(
        customers=sorted(r[0] for r in customers.select("customer_id").collect()),
        articles=articles["article_id"].tolist(),
        categories=categories,
        age_mean=float(stats["m"] or 36.0),
        age_std=float(stats["s"] or 14.0) or 14.0,
        article_categories={c: articles[c].fillna("").tolist() for c in ARTICLE_CATEGORIES},
        article_sales=[int(x) for x in articles["sales_all"].fillna(0)],
    )
