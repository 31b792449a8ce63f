# Databricks notebook source
# MAGIC %md
# MAGIC # Re-score a walk-forward backtest
# MAGIC The backtest stores every fold's top-12 of every method in the Delta table `backtest_lists`
# MAGIC (`test_week, method, customer_id, article_ids`). This notebook scores them again from that table and
# MAGIC the transactions alone (no model, no MLflow), compares a method of your own with the stored ones on the
# MAGIC same customer-weeks (paired bootstrap), draws MAP@12 per week and shows one shopper's lists beside
# MAGIC what they bought.
# MAGIC Locally, after `python -m fashionrec backtest --var data_path=../shared/hm_real_dev --weeks 8`:
# MAGIC `FASHIONREC_LAKEHOUSE=backtests/hm_real_dev/lakehouse .venv/bin/python notebooks/rescore_backtest.py`.

# COMMAND ----------

from functools import reduce
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fashionrec.config import TableLocator
from fashionrec.evaluation.metrics import average_precision_at_k
from fashionrec.evaluation.pooled import bootstrap_indices, pooled, ratio
from fashionrec.evaluation.report import save_figure
from fashionrec.features.weeks import week_of
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import read_table
from fashionrec.ranking.frames import week_truth
from fashionrec.runner.widgets import table_location, widget_reader

# A widget on Databricks (where `dbutils` is defined), FASHIONREC_<NAME> in the environment locally.
parameter = widget_reader(globals().get("dbutils"))

spark = get_spark("rescore-backtest")
tables = TableLocator(**table_location(parameter, lakehouse="backtests/hm_real_dev/lakehouse"))
K = int(parameter("k", "12"))
BASELINE = parameter("baseline", "repurchase_then_popular")
# The backtest stores its choice weeks too; its report pools the last `--weeks` of them (0 here: all).
LAST_WEEKS = int(parameter("last_weeks", "0"))
reports = Path(parameter("reports_dir", "reports"))
print(f"lakehouse: {tables.describe()}; MAP@{K} against {BASELINE}")

# COMMAND ----------

# MAGIC %md ## The stored lists

# COMMAND ----------

lists = read_table(spark, tables, "backtest_lists")
weeks = sorted(r["test_week"] for r in lists.select("test_week").distinct().collect())
weeks = weeks[-LAST_WEEKS:] if LAST_WEEKS > 0 else weeks
lists = lists.where(F.col("test_week").isin(weeks))
print(f"test weeks: {weeks[0]} to {weeks[-1]} ({len(weeks)})")
lists.groupBy("method").agg(
    F.countDistinct("test_week").alias("weeks"), F.count("*").alias("customer_weeks")
).orderBy("method").show(50, truncate=False)

# COMMAND ----------

# MAGIC %md ## What each buyer bought in each test week, and every stored list's AP@12
# MAGIC The truth is the backtest's own (`ranking.frames.week_truth`); AP@12 is the competition's, computed in
# MAGIC Spark by the project's one implementation, so this scales to the full Kaggle files.

# COMMAND ----------

transactions = read_table(spark, tables, "transactions")
truth = reduce(
    DataFrame.unionByName,
    [week_truth(transactions, week_of(day)).withColumn("test_week", F.lit(day)) for day in weeks],
).withColumnRenamed("article_ids", "bought")


@F.pandas_udf("double")
def ap_at_k(bought: pd.Series, predicted: pd.Series) -> pd.Series:
    return pd.Series(
        [average_precision_at_k(list(b), list(p), K) for b, p in zip(bought, predicted, strict=True)]
    )


# Kept: the pivot, your own method and the shopper below all read it.
scored = (
    lists.join(truth, ["test_week", "customer_id"])
    .withColumn("ap", ap_at_k("bought", "article_ids"))
    .persist()
)
# One row per customer-week, one column per method: every method on the same customer-weeks.
table = (
    scored.groupBy("test_week", "customer_id").pivot("method").agg(F.first("ap")).toPandas()
).sort_values(["test_week", "customer_id"], ignore_index=True)
methods = [c for c in table.columns if c not in ("test_week", "customer_id")]
print(f"{len(table):,} customer-weeks over {len(weeks)} weeks, {len(methods)} methods")

# COMMAND ----------

# MAGIC %md ## A method of your own, on the same customer-weeks
# MAGIC Any function of the stored lists (or of the transactions before the week) can be scored here without
# MAGIC running the backtest again. The example alternates the ranker's list and the baseline's.

# COMMAND ----------


def interleave(first: list[str], second: list[str], k: int) -> list[str]:
    """first[0], second[0], first[1], second[1], ... without repeats, cut at k."""
    out: list[str] = []
    for pair in zip(first, second, strict=False):
        for article in pair:
            if article not in out:
                out.append(article)
    for article in [*first, *second]:
        if article not in out:
            out.append(article)
    return out[:k]


stored = scored.where(F.col("method").isin("pipeline", BASELINE)).drop("ap").toPandas()
by_week = stored.set_index(["test_week", "customer_id", "method"])["article_ids"].unstack("method")
bought = stored.drop_duplicates(["test_week", "customer_id"]).set_index(["test_week", "customer_id"])[
    "bought"
]
OWN = "interleave_pipeline_baseline"
own = pd.Series(
    [
        average_precision_at_k(
            list(bought[key]), interleave(list(row["pipeline"]), list(row[BASELINE]), K), K
        )
        for key, row in by_week.iterrows()
    ],
    index=by_week.index,
)
table[OWN] = own.reindex(pd.MultiIndex.from_frame(table[["test_week", "customer_id"]])).to_numpy()
methods.append(OWN)

# COMMAND ----------

# MAGIC %md ## Pooled MAP@12 with bootstrap 95% intervals, and the lift over the baseline (paired)

# COMMAND ----------

indices = bootstrap_indices(len(table), 2000, seed=42)
rows, intervals = [], {}
for method in methods:
    values = table[method].fillna(0.0).to_numpy()
    mean, lift = pooled(values, indices), ratio(values, table[BASELINE].to_numpy(), indices)
    intervals[method] = mean
    rows.append(
        {
            "method": method,
            f"map@{K}": round(mean.mean, 5),
            "95%": f"{mean.low:.4f}-{mean.high:.4f}",
            f"x {BASELINE}": f"{lift.mean:.2f} ({lift.low:.2f}-{lift.high:.2f})",
        }
    )
summary = pd.DataFrame(rows).sort_values(f"map@{K}", ascending=False, ignore_index=True)
print(summary.to_string(index=False))

# COMMAND ----------

# MAGIC %md ## MAP@12 per week

# COMMAND ----------

shown = [m for m in (BASELINE, "pipeline", "live", OWN) if m in table.columns]
weekly = table.groupby("test_week")[shown].mean()
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
for method in shown:
    left.plot([str(w) for w in weekly.index], weekly[method], marker="o", label=method)
left.set_ylabel(f"MAP@{K}")
left.set_title("per test week")
left.tick_params(axis="x", rotation=45)
left.legend(fontsize=8)
means = [intervals[m].mean for m in shown]
errors = [
    [m - intervals[s].low for m, s in zip(means, shown, strict=True)],
    [intervals[s].high - m for m, s in zip(means, shown, strict=True)],
]
right.barh(shown, means, xerr=errors, color="#1f77b4", ecolor="#444444", capsize=4)
right.set_title(f"pooled over {len(table):,} customer-weeks, bootstrap 95%")
right.set_xlabel(f"MAP@{K}")
chart = save_figure(fig, reports / "backtest_rescored.png")
print(weekly.round(4).to_string())
print(f"chart: {chart}")

# COMMAND ----------

# MAGIC %md ## One shopper: what they bought beside each method's list (* = bought)

# COMMAND ----------

example = table.sort_values(["pipeline", "test_week", "customer_id"], ascending=[False, True, True]).iloc[0]
key = (example["test_week"], example["customer_id"])
shopper = {
    r["method"]: r
    for r in scored.where(
        (F.col("test_week") == F.lit(key[0])) & (F.col("customer_id") == F.lit(key[1]))
    ).collect()
}
purchases = set(bought[key])
shown_ids = sorted(purchases.union(*(r["article_ids"] for r in shopper.values())))
names = {
    r["article_id"]: f"{r['prod_name']} ({r['colour_group_name']} {r['product_type_name']})"
    for r in read_table(spark, tables, "articles").where(F.col("article_id").isin(shown_ids)).collect()
}
print(f"customer {key[1][:16]}... in the week of {key[0]}: bought {len(purchases)} articles")
for article in sorted(purchases):
    print(f"    {article} {names.get(article, '')}")
for method in (BASELINE, "pipeline", "live"):
    if method not in shopper:
        continue
    row = shopper[method]
    print(f"{method} (AP@{K} {row['ap']:.3f}):")
    for article in row["article_ids"][:K]:
        print(f"  {'*' if article in purchases else ' '} {article} {names.get(article, '')}")
