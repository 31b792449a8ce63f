"""A customer's recent purchases as a feature: the last `n` articles bought before a week.

The two-tower query tower pools these, so a customer unseen at training time still gets a meaningful
vector. Point in time: the list for week W holds only purchases of the `HISTORY_WEEKS` weeks before W
(older purchases say little about this season's taste, and the bound keeps the full-scale job fast).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from fashionrec.features.weeks import first_day_col, week_col
from fashionrec.weeks import HISTORY_LENGTH, HISTORY_WEEKS


def _last(items: F.Column, n: int) -> F.Column:
    """The article ids of the `n` latest (t_dat, article_id) structs, oldest first."""
    latest = F.slice(F.sort_array(items, asc=False), 1, n)
    return F.reverse(F.transform(latest, lambda s: s["article_id"]))


def history_before(transactions: DataFrame, week: int, n: int = HISTORY_LENGTH) -> DataFrame:
    """(customer_id, history): each customer's last `n` purchases before `week`, oldest first."""
    ordered = Window.partitionBy("customer_id").orderBy(F.desc("t_dat"), F.desc("article_id"))
    w = week_col(F.col("t_dat"))
    recent = (
        transactions.where((w < week) & (w >= week - HISTORY_WEEKS))
        .withColumn("_r", F.row_number().over(ordered))
        .where(F.col("_r") <= n)
    )
    return recent.groupBy("customer_id").agg(
        _last(F.collect_list(F.struct("t_dat", "article_id")), n).alias("history")
    )


def weekly_history(
    transactions: DataFrame, n: int = HISTORY_LENGTH, from_week: int | None = None, key: str = "customer_id"
) -> DataFrame:
    """(key, week, history) for every week a customer bought in: the last `n` purchases before it.

    A window over the customer's previous `n` purchase weeks is enough (each holds at least one purchase),
    which keeps the window bounded for heavy buyers. With `from_week`, rows are returned only for weeks
    from it on, and only the transactions those rows can reach are read. `key` names the customer column
    (the 64-bit customer key of `features.keys` is cheaper to group and sort on than the id).
    """
    tx = transactions.withColumn("week", week_col(F.col("t_dat")))
    if from_week is not None:
        tx = tx.where(F.col("week") >= from_week - HISTORY_WEEKS)
    weekly = tx.groupBy(key, "week").agg(F.collect_list(F.struct("t_dat", "article_id")).alias("_items"))
    previous = Window.partitionBy(key).orderBy("week").rowsBetween(-n, -1)
    out = weekly.select(
        key,
        "week",
        F.flatten(F.collect_list("_items").over(previous)).alias("_items"),
    )
    in_reach = F.filter(
        "_items", lambda s: s["t_dat"] >= F.date_sub(first_day_col(F.col("week")), 7 * HISTORY_WEEKS)
    )
    out = out.select(key, "week", _last(in_reach, n).alias("history"))
    return out if from_week is None else out.where(F.col("week") >= from_week)
