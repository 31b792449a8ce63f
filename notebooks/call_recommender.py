# Databricks notebook source
# MAGIC %md
# MAGIC # Call the recommender endpoint
# MAGIC A few customers' purchase history beside what the serving endpoint recommends, by article name,
# MAGIC and the visual neighbours of one recommended article. Locally: `make serve` in one shell, then
# MAGIC `FASHIONREC_LAKEHOUSE=lakehouse .venv/bin/python notebooks/call_recommender.py`. On Databricks set the
# MAGIC `endpoint` widget to `https://<workspace>/serving-endpoints/<name>/invocations` (a token comes from
# MAGIC the DATABRICKS_TOKEN environment variable).

# COMMAND ----------

import json
import os
import urllib.request

import pandas as pd
from pyspark.sql import functions as F

from fashionrec.config import TableLocator
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import read_table
from fashionrec.runner.widgets import table_location, widget_reader

# A widget on Databricks (where `dbutils` is defined), FASHIONREC_<NAME> in the environment locally.
parameter = widget_reader(globals().get("dbutils"))


spark = get_spark("call-recommender")
tables = TableLocator(**table_location(parameter))
endpoint = parameter("endpoint", "http://127.0.0.1:5001/invocations")


def invoke(records: list[dict]) -> list[dict]:
    """POST rows to the endpoint (dataframe_records) and return its predictions."""
    headers = {"Content-Type": "application/json"}
    if os.environ.get("DATABRICKS_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['DATABRICKS_TOKEN']}"
    body = json.dumps({"dataframe_records": records}).encode()
    request = urllib.request.Request(endpoint, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["predictions"]


print(f"endpoint: {endpoint}")

# COMMAND ----------

# MAGIC %md ## Three customers: history and recommendations

# COMMAND ----------

articles = read_table(spark, tables, "articles").select(
    "article_id", "prod_name", "product_type_name", "colour_group_name"
)
names = {r["article_id"]: f"{r['prod_name']} ({r['colour_group_name']})" for r in articles.collect()}
customers = [
    r["customer_id"]
    for r in read_table(spark, tables, "recommendations")
    .where(~F.col("fallback"))
    .orderBy(F.xxhash64("customer_id"))
    .limit(3)
    .collect()
]
answers = invoke([{"customer_id": c, "k": 12} for c in customers])
history = (
    read_table(spark, tables, "transactions")
    .where(F.col("customer_id").isin(customers))
    .orderBy(F.desc("t_dat"))
    .toPandas()
)
for customer, answer in zip(customers, answers, strict=True):
    bought = history[history["customer_id"] == customer].head(5)
    print(f"\ncustomer {customer[:16]}…")
    print("  last purchases:")
    for row in bought.itertuples():
        print(f"    {row.t_dat}  {names.get(row.article_id, row.article_id)}")
    print("  recommended:")
    frame = pd.DataFrame(
        {
            "article": [names.get(a, a) for a in answer["article_ids"]],
            "score": answer["scores"],
            "source": answer["sources"],
        }
    )
    print(frame.to_string(index=False))

# COMMAND ----------

# MAGIC %md ## Similar items: the visual neighbours of the first recommendation

# COMMAND ----------

first = answers[0]["article_ids"][0]
similar = invoke([{"article_id": first, "k": 5}])[0]
print(f"looks like {names.get(first, first)}:")
for article, score in zip(similar["article_ids"], similar["scores"], strict=True):
    print(f"  {score:.3f}  {names.get(article, article)}")
