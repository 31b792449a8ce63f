# Databricks notebook source
# MAGIC %md
# MAGIC # Train and compare two-tower settings
# MAGIC Trains the two-tower retrieval model a few times on the lakehouse's retrieval training set, one
# MAGIC setting changed at a time, and compares validation recall@12 / recall@100 and training speed beside
# MAGIC last week's best sellers (the floor any retrieval model must clear). Edit `SETTINGS` to try your own.
# MAGIC Needs the `features` task's tables. Locally run it as a script:
# MAGIC `FASHIONREC_LAKEHOUSE=lakehouse .venv/bin/python notebooks/compare_retrieval.py`.

# COMMAND ----------

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from pyspark.sql import functions as F

from fashionrec.config import RetrievalParams, Tables
from fashionrec.evaluation.metrics import recall_at_k
from fashionrec.features.splits import Splits
from fashionrec.features.weeks import week_col
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import read_table
from fashionrec.retrieval.task import validation_set
from fashionrec.retrieval.train import HyperParams, TrainingSpec, train_worker
from fashionrec.retrieval.vocab_lake import vocabulary_from_lake
from fashionrec.runner.widgets import table_location, widget_reader
from fashionrec.training.distributed import SINGLE

# A widget on Databricks (where `dbutils` is defined), FASHIONREC_<NAME> in the environment locally.
parameter = widget_reader(globals().get("dbutils"))


spark = get_spark("compare-retrieval")
params = RetrievalParams(**table_location(parameter))
tables = params.tables
epochs = int(parameter("epochs", "2"))
reports = Path(parameter("reports_dir", "reports"))
print(f"lakehouse: {tables.describe()}")

# COMMAND ----------

# MAGIC %md ## The training set and the validation week

# COMMAND ----------

splits = Splits.from_frame(read_table(spark, tables, Tables.SPLITS))
vocab = vocabulary_from_lake(spark, tables, splits.val_week)
training_set = read_table(spark, tables, Tables.RETRIEVAL_TRAINING_SET)
_, validation = validation_set(spark, params, splits, vocab, "val")
spec = TrainingSpec(files=training_set.inputFiles(), vocab=vocab, validation=validation)
print(
    f"{training_set.count():,} training purchases, {len(vocab.customers):,} customers and "
    f"{len(vocab.articles):,} articles in the vocabulary, {validation.size:,} validation buyers"
)

# COMMAND ----------

# MAGIC %md ## The floor: last week's 100 best sellers for everyone

# COMMAND ----------

last_week = (
    read_table(spark, tables, Tables.TRANSACTIONS)
    .where(week_col(F.col("t_dat")) == splits.val_week - 1)
    .groupBy("article_id")
    .count()
    .orderBy(F.desc("count"), "article_id")
    .limit(100)
)
popular = [r["article_id"] for r in last_week.collect()]
floor = {
    f"recall@{k}": sum(recall_at_k(a, popular[:k], k) for a in validation.actual) / validation.size
    for k in (12, 100)
}
print({k: round(v, 4) for k, v in floor.items()})

# COMMAND ----------

# MAGIC %md ## Train each setting (one change from the defaults at a time)

# COMMAND ----------

base = HyperParams(epochs=epochs, batch_size=min(1024, training_set.count() // 2))
SETTINGS = {
    "defaults": {},
    "no log-Q correction": {"logq_correction": False},
    "256 random negatives": {"random_negatives": 256},
    "embedding 32, no hidden layer": {"embedding_dim": 32, "depth": 0},
}
rows, losses = [], {}
for name, changes in SETTINGS.items():
    result = train_worker(spec, base.with_updates(**changes), SINGLE)
    losses[name] = result.losses
    rows.append(
        {
            "setting": name,
            **{k: round(v, 4) for k, v in result.metrics.items()},
            "examples/s": round(result.examples_per_second),
        }
    )
rows.append({"setting": "last week's best sellers", **{k: round(v, 4) for k, v in floor.items()}})
comparison = pd.DataFrame(rows).set_index("setting")
print(comparison.to_string())

# COMMAND ----------

# MAGIC %md ## Loss per epoch and validation recall@100

# COMMAND ----------

figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
for name, curve in losses.items():
    left.plot(range(1, len(curve) + 1), curve, marker="o", label=name)
left.set(xlabel="epoch", ylabel="training loss", title="Loss")
left.legend(fontsize=8)
comparison["recall@100"].plot.barh(ax=right, color="tab:blue")
right.set(xlabel="validation recall@100", title="Recall@100 (val week)")
figure.tight_layout()
reports.mkdir(parents=True, exist_ok=True)
chart = reports / "retrieval_settings.png"
figure.savefig(chart, dpi=110)
print(f"chart: {chart}")
