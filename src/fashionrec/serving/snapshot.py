"""The compact feature snapshot the online recommender answers from, built in Spark from the lakehouse.

It is pinned to what batch scoring last used (`scoring_state`: target week, transactions and customers
versions, popularity snapshot), and built with the same Spark functions, so an online answer equals the
customer's row in `recommendations`. Files (parquet, small enough to load into memory once):

- purchases: every purchase before the week (customer_id, article_id, day number);
- customers: age, region and the ranker's customer features;
- articles: attributes, the ranker's article features, availability, 4-week sales, "has sold" flag;
- tops: trending and age-band best-seller lists (sources and fallback);
- similar: visual neighbour pairs (when the image tasks ran);
- meta.json: week, table versions, the pipeline config (rules, candidate counts, k, diversity).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config import TableLocator, Tables
from fashionrec.evaluation import baselines
from fashionrec.evaluation.baselines import age_band
from fashionrec.features.article import article_features
from fashionrec.features.customer import customer_features
from fashionrec.features.weeks import EPOCH, first_day, week_col
from fashionrec.lake.tables import current_version, read_table
from fashionrec.ranking.candidates import age_band_tops, article_sales, trending_top, visual_pairs
from fashionrec.ranking.features import ARTICLE_FEATURES, CUSTOMER_FEATURES
from fashionrec.ranking.filters import customer_region
from fashionrec.ranking.task import CONFIG_FILE

FALLBACK_DEPTH = 4  # fallback lists draw from this many times k best sellers, before the filters


def _day_number(column: str) -> F.Column:
    """Days since the week epoch: integer dates for numpy (week = day // 7)."""
    return F.datediff(F.col(column), F.lit(EPOCH)).cast("int").alias("day")


def _write(df: DataFrame, folder: Path, name: str) -> int:
    table = df.toArrow()
    import pyarrow.parquet as pq

    pq.write_table(table, folder / f"{name}.parquet")
    return table.num_rows


def scoring_snapshot(spark: SparkSession, tables: TableLocator) -> dict[str, Any]:
    """The week and table versions batch scoring last used (run batch_score first)."""
    if current_version(spark, tables, Tables.SCORING_STATE) is None:
        raise ValueError(f"scoring_state not found in {tables.describe()}: run batch_score first")
    row = read_table(spark, tables, Tables.SCORING_STATE).first()
    if row is None:
        raise ValueError("scoring_state is empty: run batch_score first")
    return row.asDict()


def purchase_rows(personal_tx: DataFrame, week: int) -> DataFrame:
    """(customer_id, article_id, day) of every purchase before the week: the customers' histories."""
    return personal_tx.where(week_col(F.col("t_dat")) < week).select(
        "customer_id", "article_id", _day_number("t_dat")
    )


def customer_rows(personal_tx: DataFrame, customers: DataFrame, articles: DataFrame, week: int) -> DataFrame:
    """Age, age band, region and the ranker's customer features of `customers` as of the week."""
    features = customer_features(personal_tx, customers, articles, [week]).select(
        "customer_id",
        *[c for c in CUSTOMER_FEATURES if c not in ("age", "customer_mean_price")],
        F.col("age").cast("double").alias("feature_age"),
        F.col("mean_price").alias("customer_mean_price"),
    )
    return customers.select(
        "customer_id",
        F.col("age").cast("double").alias("age"),
        F.coalesce(age_band(F.col("age")), F.lit(-1)).alias("band"),
        customer_region(F.col("postal_code")).alias("region"),
    ).join(features, "customer_id", "left")


def decayed_top(spark: SparkSession, global_tx: DataFrame, week: int, k: int) -> DataFrame:
    """The repurchase-then-popular baseline's popular list (list `decayed_popularity`), for the live
    method when the baseline is live."""
    ids = baselines.decayed_popularity(global_tx, week, k)
    rows = [
        ("decayed_popularity", None, a, rank, float(len(ids) - rank + 1)) for rank, a in enumerate(ids, 1)
    ]
    schema = "list string, band int, article_id string, source_rank int, source_score double"
    return spark.createDataFrame(rows, schema).select(
        "band", "article_id", "source_rank", "source_score", "list"
    )


def write_global_part(
    spark: SparkSession, tables: TableLocator, artifacts_dir: str | Path, folder: Path, state: dict[str, Any]
) -> dict[str, Any]:
    """The snapshot's global half (articles, lists, neighbours, meta.json) for `state`'s week and
    versions, into an existing `folder`; returns the meta."""
    week = int(state["week"])
    config = json.loads((Path(artifacts_dir) / CONFIG_FILE).read_text())
    k, counts = int(config["k"]), config["candidates"]
    global_tx = read_table(spark, tables, Tables.TRANSACTIONS, version=int(state["global_version"]))
    customers = read_table(spark, tables, Tables.CUSTOMERS, version=int(state["customers_version"]))
    articles = read_table(spark, tables, Tables.ARTICLES)
    rows: dict[str, int] = {}
    item_features = article_features(global_tx, customers, articles, [week]).select(
        "article_id",
        *[c for c in ARTICLE_FEATURES if c != "article_mean_price"],
        F.col("mean_price").alias("article_mean_price"),
    )
    sold = global_tx.where(week_col(F.col("t_dat")) < week).select("article_id").distinct()
    catalogue = (
        articles.select(  # what interactions match on (the ranker's copies come from the features)
            "article_id",
            F.col("product_code").alias("attr_product"),
            F.col("product_type_no").alias("attr_type"),
            F.col("colour_group_code").alias("attr_colour"),
        )
        .join(item_features, "article_id", "left")
        .join(
            article_sales(global_tx, week, 4).withColumnRenamed("sales", "sales_4w_source"),
            "article_id",
            "left",
        )
        .join(sold.withColumn("has_sold", F.lit(True)), "article_id", "left")
        .fillna(False, ["has_sold"])
    )
    has_availability = current_version(spark, tables, Tables.ARTICLE_AVAILABILITY) is not None
    if has_availability:
        catalogue = catalogue.join(
            read_table(spark, tables, Tables.ARTICLE_AVAILABILITY).select(
                "article_id", "in_stock", "regions", "min_age"
            ),
            "article_id",
            "left",
        )
    rows["articles"] = _write(catalogue, folder, "articles")
    depth = max(FALLBACK_DEPTH * k, int(counts.get("age_band", 0)))
    tops = (
        trending_top(global_tx, week, int(counts.get("trending", 0)) or 1)
        .withColumn("band", F.lit(None).cast("int"))
        .withColumn("list", F.lit("trending"))
        .unionByName(age_band_tops(global_tx, customers, week, depth).withColumn("list", F.lit("age_band")))
        .unionByName(decayed_top(spark, global_tx, week, k))
        .select("list", "band", "article_id", "source_rank", F.col("source_score").cast("double"))
    )
    rows["tops"] = _write(tops, folder, "tops")
    has_similar = current_version(spark, tables, Tables.SIMILAR_ARTICLES) is not None
    if has_similar:
        rows["similar"] = _write(
            visual_pairs(read_table(spark, tables, Tables.SIMILAR_ARTICLES)), folder, "similar"
        )
    meta = {
        "week": week,
        "week_start": str(first_day(week)),
        "transactions_version": int(state["transactions_version"]),
        "customers_version": int(state["customers_version"]),
        "global_version": int(state["global_version"]),
        "model_version": state["model_version"],
        "has_availability": has_availability,
        "has_similar": has_similar,
        "pipeline": config,
        "rows": rows,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def build_snapshot(
    spark: SparkSession,
    tables: TableLocator,
    artifacts_dir: str | Path,
    out: str | Path,
    state: dict[str, Any] | None = None,
    customers: bool = True,
) -> dict[str, Any]:
    """Write the snapshot folder `out` atomically (a staging folder renamed at the end), for `state`
    (default: what batch scoring last used); without `customers`, only its global half."""
    state = state or scoring_snapshot(spark, tables)
    week = int(state["week"])
    out = Path(out)
    staging = out.with_name(f"{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    meta = write_global_part(spark, tables, artifacts_dir, staging, state)
    if customers:
        personal = read_table(spark, tables, Tables.TRANSACTIONS, version=int(state["transactions_version"]))
        people = read_table(spark, tables, Tables.CUSTOMERS, version=int(state["customers_version"]))
        articles = read_table(spark, tables, Tables.ARTICLES)
        meta["rows"]["purchases"] = _write(purchase_rows(personal, week), staging, "purchases")
        meta["rows"]["customers"] = _write(
            customer_rows(personal, people, articles, week), staging, "customers"
        )
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return meta
