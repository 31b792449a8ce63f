"""The towers' vocabularies as of a week (build side, Spark): from the feature tables (`train_retrieval`)
or straight from transactions (the backtest's folds, which have no feature tables of their week)."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config import TableLocator, Tables
from fashionrec.features.recent_sales import with_recent_sales_as_of
from fashionrec.features.weeks import before_week
from fashionrec.lake.tables import read_table
from fashionrec.retrieval.vocab import ARTICLE_CATEGORIES, ARTICLE_SALES, PRODUCT, Vocabulary


def vocabulary_from_lake(
    spark: SparkSession, tables: TableLocator, as_of_week: int, min_purchases: int = 1
) -> Vocabulary:
    """Customers with at least `min_purchases` before `as_of_week` (the others share the OOV bucket), every
    article of the catalogue, and every category value, from the feature tables as of that week."""
    customers = read_table(spark, tables, Tables.CUSTOMER_FEATURES).where(
        (F.col("as_of_week") == as_of_week) & (F.col("n_purchases_all") >= min_purchases)
    )
    articles = (
        read_table(spark, tables, Tables.ARTICLE_FEATURES)
        .where(F.col("as_of_week") == as_of_week)
        .select("article_id", "sales_all", PRODUCT, *ARTICLE_CATEGORIES)
    )
    transactions = read_table(spark, tables, Tables.TRANSACTIONS)
    return _vocabulary(customers.select("customer_id", "age"), articles, transactions, as_of_week)


def vocabulary_from_transactions(
    transactions: DataFrame,
    customers: DataFrame,
    articles: DataFrame,
    as_of_week: int,
    min_purchases: int = 1,
) -> Vocabulary:
    """The same vocabulary computed from a snapshot's tables: what `vocabulary_from_lake` reads from the
    feature tables of `as_of_week`, for a week that has none."""
    before = before_week(transactions, as_of_week)
    buyers = before.groupBy("customer_id").count().where(F.col("count") >= min_purchases)
    sales = before.groupBy("article_id").agg(F.count("*").alias("sales_all"))
    return _vocabulary(
        customers.join(buyers, "customer_id", "left_semi").select("customer_id", F.col("age").cast("double")),
        articles.select("article_id", PRODUCT, *ARTICLE_CATEGORIES)
        .join(sales, "article_id", "left")
        .fillna(0, ["sales_all"]),
        transactions,
        as_of_week,
    )


def _vocabulary(
    customers: DataFrame, articles: DataFrame, transactions: DataFrame, as_of_week: int
) -> Vocabulary:
    """customers: (customer_id, age) in the vocabulary; articles: (article_id, sales_all, product_code,
    categories), given their recent sales as of the week from `transactions`."""
    stats = customers.agg(F.mean("age").alias("m"), F.stddev("age").alias("s")).first()
    catalogue = articles.withColumn(PRODUCT, F.col(PRODUCT).cast("string"))
    table: pd.DataFrame = (
        with_recent_sales_as_of(catalogue, transactions, as_of_week).orderBy("article_id").toPandas()
    )
    if table.empty:
        raise ValueError(f"no article features for as_of_week {as_of_week}: run the features task first")
    categories = {c: sorted(v for v in table[c].dropna().unique()) for c in ARTICLE_CATEGORIES}
    return Vocabulary(
        customers=sorted(r[0] for r in customers.select("customer_id").collect()),
        articles=table["article_id"].tolist(),
        categories=categories,
        age_mean=float(stats["m"] or 36.0),
        age_std=float(stats["s"] or 14.0) or 14.0,
        article_categories={c: table[c].fillna("").tolist() for c in ARTICLE_CATEGORIES},
        article_sales=[int(x) for x in table["sales_all"].fillna(0)],
        article_products=table[PRODUCT].fillna("").tolist(),
        article_recent_sales=table[list(ARTICLE_SALES)].astype(float).values.tolist(),
    )
