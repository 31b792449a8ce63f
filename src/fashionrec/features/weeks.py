"""Week arithmetic shared by every stage: weeks run Wednesday to Tuesday, as in the H&M competition.

A week is an integer index counted from the Wednesday 1970-01-07, so week numbers never depend on the
data; `as_of_week = W` means "using transactions strictly before the first day of week W".
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

EPOCH = date(1970, 1, 7)  # a Wednesday


def week_of(day: date) -> int:
    return (day - EPOCH).days // 7


def first_day(week: int) -> date:
    return EPOCH + timedelta(days=7 * week)


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


def first_day_col(week: Column) -> Column:
    return F.date_add(F.lit(EPOCH), (week * 7).cast("int"))
