"""Query-tower inputs for a target week, built in Spark from the lakehouse (point in time)."""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.features.history import history_before
from fashionrec.weeks import month_angle


def query_frame(transactions: DataFrame, customers: DataFrame, targets: DataFrame, week: int) -> DataFrame:
    """(customer_id, age, month_sin, month_cos, history) for the `targets` customers as of `week`."""
    sin, cos = month_angle(week)
    history = history_before(transactions.join(targets, "customer_id", "left_semi"), week)
    return (
        targets.select("customer_id")
        .join(
            customers.select("customer_id", F.col("age").cast("double").alias("age")), "customer_id", "left"
        )
        .join(history, "customer_id", "left")
        .select(
            "customer_id",
            "age",
            F.lit(sin).alias("month_sin"),
            F.lit(cos).alias("month_cos"),
            F.coalesce("history", F.array().cast("array<string>")).alias("history"),
        )
        .orderBy("customer_id")
    )


def query_table(transactions: DataFrame, customers: DataFrame, targets: DataFrame, week: int) -> pa.Table:
    return query_frame(transactions, customers, targets, week).toArrow()
