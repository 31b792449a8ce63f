"""Time-based splits (train up to a cut-off, one validation week, one test week) and ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.features.weeks import first_day, week_col, week_of


@dataclass(frozen=True)
class Splits:
    """Weeks of the split: train is every week before `val_week`."""

    test_week: int

    @property
    def val_week(self) -> int:
        return self.test_week - 1

    def target_week(self, split: str) -> int:
        weeks = {"val": self.val_week, "test": self.test_week}
        if split not in weeks:
            raise ValueError(f"unknown split {split!r}; splits with a target week: {', '.join(weeks)}")
        return weeks[split]

    def rows(self) -> list[tuple[str, int | None, date | None, date]]:
        """(split, target week, first day, last day) for the splits table; train has no single week."""
        val_start, test_start = first_day(self.val_week), first_day(self.test_week)
        return [
            ("train", None, None, val_start - timedelta(days=1)),
            ("val", self.val_week, val_start, test_start - timedelta(days=1)),
            ("test", self.test_week, test_start, test_start + timedelta(days=6)),
        ]

    def to_frame(self, spark: SparkSession) -> DataFrame:
        return spark.createDataFrame(self.rows(), "split string, week int, first_day date, last_day date")

    @classmethod
    def from_frame(cls, splits: DataFrame) -> Splits:
        row = splits.where("split = 'test'").first()
        if row is None:
            raise ValueError("the splits table has no test row: run the features task first")
        return cls(test_week=int(row["week"]))


def resolve_splits(transactions: DataFrame, test_week_start: str = "") -> Splits:
    """The test week is the parameter's week, or by default the last week with transactions."""
    if test_week_start:
        return Splits(test_week=week_of(date.fromisoformat(test_week_start)))
    last = transactions.agg(F.max("t_dat")).first()[0]
    if last is None:
        raise ValueError("no transactions: ingest data before computing features")
    return Splits(test_week=week_of(last))


def ground_truth(transactions: DataFrame, splits: Splits) -> DataFrame:
    """Per split and customer, the distinct articles bought in the target week (first purchase first)."""
    parts = []
    for split in ("val", "test"):
        week = splits.target_week(split)
        bought = transactions.where(week_col(F.col("t_dat")) == week)
        first = bought.groupBy("customer_id", "article_id").agg(
            F.min(F.struct("t_dat", "txn_id")).alias("first")
        )
        parts.append(
            first.groupBy("customer_id")
            .agg(F.sort_array(F.collect_list(F.struct("first", "article_id"))).alias("_bought"))
            .select(
                F.lit(split).alias("split"),
                F.lit(week).alias("week"),
                "customer_id",
                F.col("_bought.article_id").alias("article_ids"),
            )
        )
    return parts[0].unionByName(parts[1])
