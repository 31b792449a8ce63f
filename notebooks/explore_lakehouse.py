# Databricks notebook source
# MAGIC %md
# MAGIC # Explore the fashionrec lakehouse
# MAGIC The bronze tables, the quarantine, the feature tables and the latest evaluation (table and chart
# MAGIC from MLflow), in one pass.
# MAGIC On Databricks set the widgets; locally run it as a script:
# MAGIC `FASHIONREC_LAKEHOUSE=lakehouse .venv/bin/python notebooks/explore_lakehouse.py`.

# COMMAND ----------

from pathlib import Path

from pyspark.sql import functions as F

from fashionrec.config import TableLocator
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, read_table, table_exists
from fashionrec.runner.widgets import table_location, widget_reader

# A widget on Databricks (where `dbutils` is defined), FASHIONREC_<NAME> in the environment locally.
parameter = widget_reader(globals().get("dbutils"))


spark = get_spark("explore-lakehouse")
tables = TableLocator(**table_location(parameter))
print(f"lakehouse: {tables.describe()}")

# COMMAND ----------

# MAGIC %md ## Tables, versions and row counts

# COMMAND ----------

names = [
    "articles",
    "customers",
    "transactions",
    "quarantine",
    "customer_features",
    "article_features",
    "ground_truth",
    "recommendations",
    "similar_articles",
]
present = [n for n in names if table_exists(spark, tables, n)]
for name in present:
    print(
        f"{name:<20} version {current_version(spark, tables, name):>3}  rows {read_table(spark, tables, name).count():>12,}"
    )

# COMMAND ----------

# MAGIC %md ## Weekly sales and the quarantine

# COMMAND ----------

transactions = read_table(spark, tables, "transactions")
weekly = (
    transactions.groupBy(F.date_trunc("week", "t_dat").alias("week"))
    .agg(F.count("*").alias("items"), F.countDistinct("customer_id").alias("customers"))
    .orderBy("week")
)
weekly.show(8, truncate=False)
read_table(spark, tables, "quarantine").groupBy("table", "column", "reason").count().show(truncate=False)

# COMMAND ----------

# MAGIC %md ## Best sellers of the last week, with names

# COMMAND ----------

last_day = transactions.agg(F.max("t_dat")).first()[0]
(
    transactions.where(F.col("t_dat") > F.date_sub(F.lit(last_day), 7))
    .groupBy("article_id")
    .count()
    .join(read_table(spark, tables, "articles"), "article_id")
    .select("article_id", "prod_name", "product_type_name", "colour_group_name", "count")
    .orderBy(F.desc("count"))
    .show(12, truncate=False)
)

# COMMAND ----------

# MAGIC %md ## Customer features of the latest as-of week

# COMMAND ----------

if "customer_features" in present:
    features = read_table(spark, tables, "customer_features")
    latest = features.agg(F.max("as_of_week")).first()[0]
    features.where(F.col("as_of_week") == latest).select(
        "n_purchases_all", "spend_all", "online_share", "days_since_last_purchase"
    ).summary("mean", "50%", "max").show()

# COMMAND ----------

# MAGIC %md ## The latest evaluation: every method on the test week, from MLflow
# MAGIC The `train_ranker` run holds the whole table (baselines, retrieval only, the full pipeline and the
# MAGIC oracle bound); the `evaluate` run the baselines alone, if the ranker has not run yet.

# COMMAND ----------

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import pandas as pd

client = mlflow.MlflowClient(tracking_uri=parameter("mlflow_tracking_uri", "sqlite:///mlflow.db"))
experiment = client.get_experiment_by_name(parameter("experiment", "fashionrec"))
table = pd.DataFrame()
for task in ("train_ranker", "evaluate"):
    runs = (
        client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.task = '{task}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if experiment
        else []
    )
    if runs:
        metrics = runs[0].data.metrics  # "<method>.<metric>", e.g. "oracle.map_at_12"
        table = pd.Series({tuple(k.rsplit(".", 1)): v for k, v in metrics.items() if "." in k}).unstack()
        print(f"{task} run {runs[0].info.run_id}:")
        break
if table.empty:
    print("no finished evaluate or train_ranker run in this experiment yet: run the job first")
else:
    columns = [c for c in ("map_at_12", "recall_at_12", "ndcg_at_12", "diversity") if c in table.columns]
    table = table[columns].dropna(how="all").sort_values("map_at_12")
    print(table.round(4).to_string())
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(table) + 1))
    table["map_at_12"].plot.barh(ax=axis, color="tab:blue")
    axis.set(xlabel="MAP@12 (test week)", ylabel="")
    figure.tight_layout()
    reports = Path(parameter("reports_dir", "reports"))
    reports.mkdir(parents=True, exist_ok=True)
    figure.savefig(reports / "explore_map12.png", dpi=110)
    print(f"chart: {reports / 'explore_map12.png'}")
