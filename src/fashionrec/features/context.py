"""Context features of a transaction date: cyclical month and the week index."""

from __future__ import annotations

import math

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.features.weeks import week_col


def with_context(df: DataFrame, date_column: str = "t_dat") -> DataFrame:
    """Add month_sin, month_cos (month on the unit circle, so December is next to January) and week."""
    angle = 2 * math.pi * (F.month(date_column) - 1) / 12.0
    return df.withColumns(
        {"month_sin": F.sin(angle), "month_cos": F.cos(angle), "week": week_col(F.col(date_column))}
    )
