"""Features on real Spark and Delta: no leakage, incremental equals full, exact splits and ground truth."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from fashionrec.config import FeaturesParams, IngestParams
from fashionrec.features.article import article_features
from fashionrec.features.customer import customer_features
from fashionrec.features.pipeline import run_features
from fashionrec.features.weeks import first_day, week_col, week_of
from fashionrec.lake.ingest import run_ingest
from fashionrec.lake.tables import current_version, read_table
from tests.helpers import read_lines, write_lines


def _sorted(df, keys) -> pd.DataFrame:
    return df.toPandas().sort_values(keys).reset_index(drop=True)


def test_features_use_no_transaction_of_the_as_of_week_or_later(spark, tiny_lake):
    tables, _ = tiny_lake
    tx = read_table(spark, tables, "transactions")
    customers, articles = read_table(spark, tables, "customers"), read_table(spark, tables, "articles")
    last = tx.agg(F.max("t_dat")).first()[0]
    week = week_of(last) - 2
    before = tx.where(week_col(F.col("t_dat")) < week)
    # Rewrite the future: prices x100 and every later purchase moved to one article.
    future = tx.where(week_col(F.col("t_dat")) >= week).withColumn("price", F.col("price") * 100)
    future = future.withColumn("article_id", F.lit(articles.first()["article_id"]))
    changed = before.unionByName(future)
    assert future.count() > 0
    for build, key in ((customer_features, "customer_id"), (article_features, "article_id")):
        expected = _sorted(build(before, customers, articles, [week]), [key])
        assert_frame = _sorted(build(changed, customers, articles, [week]), [key])
        pd.testing.assert_frame_equal(expected, assert_frame)
        full_history = _sorted(build(tx, customers, articles, [week]), [key])
        pd.testing.assert_frame_equal(expected, full_history)


def test_feature_values_for_one_customer_by_hand(spark, tiny_lake, tiny_data):
    tables, _ = tiny_lake
    features = read_table(spark, tables, "customer_features")
    week = features.agg(F.max("as_of_week")).first()[0]
    tx = pd.read_csv(tiny_data / "transactions_train.csv", dtype={"article_id": str}, parse_dates=["t_dat"])
    cutoff = pd.Timestamp(first_day(week))
    past = tx[tx["t_dat"] < cutoff]
    customer = past["customer_id"].value_counts().index[0]
    mine = past[past["customer_id"] == customer]
    row = features.where((F.col("customer_id") == customer) & (F.col("as_of_week") == week)).first()
    assert row["n_purchases_all"] == len(mine)
    assert row["n_purchases_4w"] == (mine["t_dat"] >= cutoff - pd.Timedelta(days=28)).sum()
    assert row["spend_all"] == pytest.approx(mine["price"].sum())
    assert row["days_since_last_purchase"] == (cutoff - mine["t_dat"].max()).days
    assert row["online_share"] == pytest.approx((mine["sales_channel_id"] == 2).mean())
    assert (
        features.where(F.col("as_of_week") == week).count()
        == len(read_lines(tiny_data / "customers.csv")) - 1
    )


def test_default_splits_are_the_last_two_weeks_and_ground_truth_is_exact(spark, tiny_lake, tiny_data):
    tables, figures = tiny_lake
    tx = pd.read_csv(tiny_data / "transactions_train.csv", dtype={"article_id": str}, parse_dates=["t_dat"])
    last = tx["t_dat"].max().date()
    test_start = first_day(week_of(last))
    assert figures["splits"]["test"]["first_day"] == str(test_start)
    assert figures["splits"]["val"]["first_day"] == str(test_start - timedelta(days=7))
    truth = read_table(spark, tables, "ground_truth").where("split = 'test'").toPandas()
    week = tx[tx["t_dat"] >= pd.Timestamp(test_start)]
    expected = week.groupby("customer_id")["article_id"].apply(set).to_dict()
    assert {r.customer_id: set(r.article_ids) for r in truth.itertuples()} == expected
    training = read_table(spark, tables, "retrieval_training_set")
    assert training.agg(F.max("t_dat")).first()[0] < test_start - timedelta(days=7)
    assert {
        "customer_id",
        "age",
        "month_sin",
        "month_cos",
        "article_id",
        "garment_group_name",
        "index_group_name",
    } <= set(training.columns)


def _edit_customer_age(path: Path, new_age: str) -> str:
    with path.open() as handle:
        rows = list(csv.reader(handle))
    rows[3][5] = new_age
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return rows[3][0]


def test_incremental_run_equals_a_full_recompute(spark, data_copy, lakehouse):
    path = data_copy / "transactions_train.csv"
    lines = read_lines(path)
    last = max(line.split(",", 1)[0] for line in lines[1:])
    cut = (date.fromisoformat(last) - timedelta(days=6)).isoformat()
    write_lines(path, [lines[0]] + [line for line in lines[1:] if line.split(",", 1)[0] < cut])
    ingest = IngestParams(lakehouse=str(lakehouse), data_path=str(data_copy))
    params = FeaturesParams(lakehouse=str(lakehouse), feature_weeks=3)
    run_ingest(ingest, spark)
    assert run_features(params, spark)["mode"] == "full"

    # A new week arrives, with one late purchase dated two weeks back and one customer's age corrected.
    late_day = (date.fromisoformat(cut) - timedelta(days=10)).isoformat()
    late = ",".join([late_day, *lines[1].split(",")[1:]])
    write_lines(path, [*lines, late])
    _edit_customer_age(data_copy / "customers.csv", "61.0")
    run_ingest(ingest, spark)
    tables = params.tables
    truth_version = current_version(spark, tables, "ground_truth")
    incremental = run_features(replace(params, derived_tables=False), spark)  # the daily job's features
    assert incremental["mode"] == "incremental"
    assert incremental["new_weeks"] == 1 and incremental["refreshed_weeks"] >= 1
    assert 0 < incremental["changed_customers"] < 800
    assert incremental["derived_tables"].startswith("stale")
    assert current_version(spark, tables, "ground_truth") == truth_version
    weekly = run_features(params, spark)  # the weekly job's: no new rows, but the training tables are stale
    assert weekly["new_weeks"] == 0 and weekly["refreshed_weeks"] == 0
    assert weekly["derived_tables"] == "rewritten"
    assert current_version(spark, tables, "ground_truth") > truth_version
    assert run_features(params, spark)["derived_tables"] == "current, not rewritten"

    weeks = sorted(
        r[0] for r in read_table(spark, tables, "ground_truth").select("week").distinct().collect()
    )
    window = list(range(weeks[-1] - 2, weeks[-1] + 1))
    got = {
        t: _sorted(
            read_table(spark, tables, t).where(F.col("as_of_week").isin(window)).drop("_row_hash"),
            [k, "as_of_week"],
        )
        for t, k in (("customer_features", "customer_id"), ("article_features", "article_id"))
    }
    assert (
        run_features(FeaturesParams(lakehouse=str(lakehouse), feature_weeks=3, full=True), spark)["mode"]
        == "full"
    )
    for table, key in (("customer_features", "customer_id"), ("article_features", "article_id")):
        expected = _sorted(read_table(spark, tables, table).drop("_row_hash"), [key, "as_of_week"])
        pd.testing.assert_frame_equal(got[table], expected, check_exact=False, rtol=1e-9)


def test_rerun_without_changes_rewrites_no_feature(spark, tiny_lake):
    tables, _ = tiny_lake
    again = run_features(FeaturesParams(lakehouse=tables.lakehouse, feature_weeks=3), spark)
    assert again["mode"] == "incremental"
    assert again["new_weeks"] == 0 and again["refreshed_weeks"] == 0
    assert all(v["rows_written"] == 0 for v in again["features"].values())


def test_purchase_history_is_point_in_time_latest_last(spark):
    from fashionrec.features.history import history_before, weekly_history

    week = week_of(date(2020, 9, 16))
    day = first_day(week)
    rows = [
        ("c1", day - timedelta(days=20), "a1"),
        ("c1", day - timedelta(days=9), "a2"),
        ("c1", day - timedelta(days=2), "a3"),
        ("c1", day, "a4"),  # in the week itself: never part of its history
        ("c2", day + timedelta(days=1), "a5"),
    ]
    tx = spark.createDataFrame(rows, "customer_id string, t_dat date, article_id string")
    assert {r["customer_id"]: r["history"] for r in history_before(tx, week, n=2).collect()} == {
        "c1": ["a2", "a3"]
    }
    weekly = {(r["customer_id"], r["week"]): r["history"] for r in weekly_history(tx, n=2).collect()}
    assert weekly[("c1", week)] == ["a2", "a3"]
    assert weekly[("c1", week - 1)] == ["a1", "a2"]  # a3 (2 days before the week) is in week - 1
    assert weekly[("c2", week)] == []


def test_recent_sales_are_point_in_time_decayed_and_count_weeks_on_sale(spark):
    from fashionrec.features.recent_sales import HALF_LIFE_WEEKS, WINDOW_WEEKS, article_recent_sales

    week = week_of(date(2020, 9, 16))
    day = first_day(week)
    rows = [
        ("c1", day - timedelta(days=1), "a1"),  # last week
        ("c2", day - timedelta(days=2), "a1"),  # last week
        ("c1", day - timedelta(days=15), "a1"),  # three weeks back (two before last week)
        ("c1", day - timedelta(days=7 * (WINDOW_WEEKS + 3)), "a2"),  # long ago: on sale, no recent sales
        ("c1", day, "a3"),  # in the week itself: not sold before it
    ]
    tx = spark.createDataFrame(rows, "customer_id string, t_dat date, article_id string")
    got = {(r["article_id"], r["week"]): r for r in article_recent_sales(tx, [week, week - 1]).collect()}
    a1 = got[("a1", week)]
    assert a1["last_week_sales"] == 2 and a1["weeks_on_sale"] == 3
    assert a1["recent_sales"] == pytest.approx(2 + 0.5 ** (2 / HALF_LIFE_WEEKS))
    a2 = got[("a2", week)]
    assert a2["recent_sales"] == 0 and a2["last_week_sales"] == 0 and a2["weeks_on_sale"] == WINDOW_WEEKS + 3
    assert ("a3", week) not in got  # first sold in the week: no features as of it
    # As of the week before, last week's two sales are in the future.
    earlier = got[("a1", week - 1)]
    assert earlier["last_week_sales"] == 0 and earlier["recent_sales"] == pytest.approx(
        0.5 ** (1 / HALF_LIFE_WEEKS)
    )


def test_customer_key_is_a_hash_unless_two_customers_share_it(spark, tiny_lake):
    from fashionrec.features.keys import customer_key

    tables, _ = tiny_lake
    customers = read_table(spark, tables, "customers")
    hashed = customers.select(customer_key(customers).alias("k"))
    assert dict(hashed.dtypes)["k"] == "bigint" and hashed.distinct().count() == customers.count()
    # A repeated id stands in for a hash collision: the aggregations must then group by the id itself.
    doubled = customers.unionByName(customers.limit(1))
    assert dict(doubled.select(customer_key(doubled).alias("k")).dtypes)["k"] == "string"
