"""Week arithmetic as Spark expressions (`fashionrec.weeks` holds the rules in pure Python, for the runtime)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fashionrec.weeks import EPOCH, first_day, week_of

__all__ = ["EPOCH", "before_week", "first_day", "first_day_col", "week_after", "week_col", "week_of"]


def week_col(day: Column) -> Column:
    """Spark expression: the week index of a date column."""
    return F.floor(F.datediff(day, F.lit(EPOCH)) / 7).cast("int")


def before_week(transactions: DataFrame, week: int, weeks_back: int | None = None) -> DataFrame:
    """Transactions strictly before `week` (and, with `weeks_back`, not before `week - weeks_back`)."""
    w = week_col(F.col("t_dat"))
    cond = w < week
    if weeks_back:
        cond = cond & (w >= week - weeks_back)
    return transactions.where(cond)


def week_after(transactions: DataFrame) -> int:
    """The week after the last transaction's: the week batch scoring targets unless told another."""
    return week_of(transactions.agg(F.max("t_dat")).first()[0]) + 1


def first_day_col(week: Column) -> Column:
    return F.date_add(F.lit(EPOCH), (week * 7).cast("int"))
