"""Week arithmetic shared by every stage: weeks run Wednesday to Tuesday, as in the H&M competition.

A week is an integer index counted from the Wednesday 1970-01-07, so week numbers never depend on the
data; `as_of_week = W` means "using transactions strictly before the first day of week W".
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column
from pyspark.sql import functions as F

EPOCH = date(1970, 1, 7)  # a Wednesday


def week_of(day: date) -> int:
    return (day - EPOCH).days // 7


def first_day(week: int) -> date:
    return EPOCH + timedelta(days=7 * week)


def week_col(day: Column) -> Column:
    """Spark expression: the week index of a date column."""
    return F.floor(F.datediff(day, F.lit(EPOCH)) / 7).cast("int")


def first_day_col(week: Column) -> Column:
    return F.date_add(F.lit(EPOCH), (week * 7).cast("int"))
