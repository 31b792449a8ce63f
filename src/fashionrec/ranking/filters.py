"""Business rules applied to candidates before ranking; each one switchable and counted.

- already bought: the customer bought the article in the last `already_bought_weeks` weeks (0: off).
  H&M customers do re-buy, so the default is chosen on the validation week (see train_ranker's output);
- out of stock, not sold in the customer's region, age-restricted for younger customers: from the
  `article_availability` table (absent table: these rules pass everything).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.data.availability import REGION_SEPARATOR, REGIONS
from fashionrec.features.weeks import week_col


@dataclass(frozen=True)
class FilterRules:
    already_bought_weeks: int = 0
    out_of_stock: bool = True
    region: bool = True
    age: bool = True


def customer_region(postal_code: F.Column) -> F.Column:
    """The region bucket of a (hashed) postal code; mirrors `data.availability.region_index`."""
    bucket = F.pmod(F.conv(F.substring(postal_code, 1, 8), 16, 10).cast("long"), F.lit(len(REGIONS)))
    valid = postal_code.rlike("^[0-9a-fA-F]{8}")
    return F.when(valid, F.element_at(F.array(*[F.lit(r) for r in REGIONS]), (bucket + 1).cast("int")))


def apply_filters(
    candidates: DataFrame,
    personal_tx: DataFrame,
    customers: DataFrame,
    availability: DataFrame | None,
    week: int,
    rules: FilterRules,
) -> tuple[DataFrame, dict[str, F.Column]]:
    """Candidates with a boolean column per active rule (True: removed) and `keep`.

    Returns the frame and the rule columns, so the caller counts removals in the same pass it uses.
    """
    out = candidates
    rule_cols: dict[str, F.Column] = {}
    if rules.already_bought_weeks > 0:
        w = week_col(F.col("t_dat"))
        recent = (
            personal_tx.where((w < week) & (w >= week - rules.already_bought_weeks))
            .select("customer_id", "article_id")
            .distinct()
            .withColumn("_bought", F.lit(True))
        )
        out = out.join(recent, ["customer_id", "article_id"], "left")
        rule_cols["already_bought"] = F.coalesce(F.col("_bought"), F.lit(False))
    if availability is not None and (rules.out_of_stock or rules.region or rules.age):
        avail = availability.select(
            "article_id",
            F.col("in_stock").alias("_in_stock"),
            F.when(
                F.length(F.coalesce("regions", F.lit(""))) > 0, F.split("regions", REGION_SEPARATOR)
            ).alias("_regions"),
            F.coalesce("min_age", F.lit(0)).alias("_min_age"),
        )
        people = customers.select(
            "customer_id", customer_region(F.col("postal_code")).alias("_region"), F.col("age").alias("_age")
        )
        out = out.join(F.broadcast(avail), "article_id", "left").join(people, "customer_id", "left")
        if rules.out_of_stock:
            rule_cols["out_of_stock"] = F.coalesce(F.col("_in_stock") == 0, F.lit(False))
        if rules.region:
            rule_cols["region"] = F.coalesce(~F.array_contains("_regions", F.col("_region")), F.lit(False))
        if rules.age:
            rule_cols["age"] = F.coalesce(F.col("_age") < F.col("_min_age"), F.lit(False))
    for name, column in rule_cols.items():
        out = out.withColumn(f"removed_{name}", column)
    keep = F.lit(True)
    for name in rule_cols:
        keep = keep & ~F.col(f"removed_{name}")
    out = out.withColumn("keep", keep)
    helpers = [c for c in out.columns if c.startswith("_")]
    return out.drop(*helpers), {name: F.col(f"removed_{name}") for name in rule_cols}


def filter_counts(filtered: DataFrame, rules: list[str]) -> dict[str, int]:
    """Candidate rows removed by each rule (a row can fail several) and rows kept."""
    row = filtered.agg(
        F.count("*").alias("candidates"),
        F.sum(F.col("keep").cast("int")).alias("kept"),
        *[F.sum(F.col(f"removed_{r}").cast("int")).alias(r) for r in rules],
    ).first()
    return {k: int(row[k] or 0) for k in ("candidates", *rules, "kept")}
