"""Week arithmetic both sides need, in pure Python: weeks run Wednesday to Tuesday, as in the H&M
competition.

A week is an integer index counted from the Wednesday 1970-01-07, so week numbers never depend on the
data; `as_of_week = W` means "using transactions strictly before the first day of week W". The snapshot
stores dates as day numbers from the same epoch. Spark expressions of the same rules are in
`features.weeks`; this module is what the runtime (no Spark) imports.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

EPOCH = date(1970, 1, 7)  # a Wednesday
# A customer's recent purchases as a query-tower input: the last HISTORY_LENGTH articles of the
# HISTORY_WEEKS weeks before the target week (older purchases say little about this season's taste).
HISTORY_LENGTH = 10
HISTORY_WEEKS = 26


def week_of(day: date) -> int:
    return (day - EPOCH).days // 7


def first_day(week: int) -> date:
    return EPOCH + timedelta(days=7 * week)


def month_angle(week: int) -> tuple[float, float]:
    """month_sin, month_cos of the week's first day (the same encoding as the training set)."""
    angle = 2 * math.pi * (first_day(week).month - 1) / 12.0
    return math.sin(angle), math.cos(angle)
