# Databricks notebook source
# MAGIC %md
# MAGIC # Call the recommender endpoint
# MAGIC A few customers' purchase history beside what the serving endpoint recommends, by article name,
# MAGIC the visual neighbours of one recommended article, and search by photo (a catalogue photo, or a file of
# MAGIC your own in the `photo_path` widget, sent as base64; the answer drawn as a row of photos). Locally: `make serve` in one shell, then
# MAGIC `FASHIONREC_LAKEHOUSE=lakehouse .venv/bin/python notebooks/call_recommender.py`. On Databricks set the
# MAGIC `endpoint` widget to `https://<workspace>/serving-endpoints/<name>/invocations` (a token comes from
# MAGIC the DATABRICKS_TOKEN environment variable).

# COMMAND ----------

import base64
import io
import json
import os
import urllib.request
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from PIL import Image
from pyspark.sql import functions as F

from fashionrec.config import TableLocator
from fashionrec.evaluation.report import save_figure
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import read_table, table_exists
from fashionrec.runner.widgets import table_location, widget_reader

# A widget on Databricks (where `dbutils` is defined), FASHIONREC_<NAME> in the environment locally.
parameter = widget_reader(globals().get("dbutils"))


spark = get_spark("call-recommender")
tables = TableLocator(**table_location(parameter))
endpoint = parameter("endpoint", "http://127.0.0.1:5001/invocations")
photo_path = parameter("photo_path", "")  # a JPEG or PNG of your own; empty: a catalogue photo
reports = Path(parameter("reports_dir", "reports"))


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

# COMMAND ----------

# MAGIC %md ## Search by photo
# MAGIC The endpoint takes a base64-encoded JPEG or PNG (at most 1 MiB) in the `image` field and answers with the
# MAGIC catalogue articles whose photos look closest. Without `photo_path` the query is the photo of the first
# MAGIC recommended article that has one (so its own article should come first).

# COMMAND ----------

if table_exists(spark, tables, "article_images"):
    photos = read_table(spark, tables, "article_images").select("article_id", "content")
    if photo_path:
        query, label = Path(photo_path).read_bytes(), Path(photo_path).name
    else:
        wanted = [a for answer in answers for a in answer["article_ids"]]
        have = {
            r["article_id"]: r["content"] for r in photos.where(F.col("article_id").isin(wanted)).collect()
        }
        first_with_photo = next(a for a in wanted if a in have)
        query, label = have[first_with_photo], f"{first_with_photo} {names.get(first_with_photo, '')}"
    found = invoke([{"image": base64.b64encode(query).decode(), "k": 5}])[0]
    print(f"photo of {label}: closest catalogue photos")
    for article, score in zip(found["article_ids"], found["scores"], strict=True):
        print(f"  {score:.3f}  {article}  {names.get(article, article)}")
    contents = {
        r["article_id"]: r["content"]
        for r in photos.where(F.col("article_id").isin(found["article_ids"])).collect()
    }
    shown = [
        ("query", query),
        *[
            (f"{s:.3f}", contents[a])
            for a, s in zip(found["article_ids"], found["scores"], strict=True)
            if a in contents
        ],
    ]
    fig, axes = plt.subplots(1, len(shown), figsize=(2 * len(shown), 2.4))
    for ax, (title, content) in zip(axes, shown, strict=True):
        ax.imshow(Image.open(io.BytesIO(content)).convert("RGB"))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    print(f"chart: {save_figure(fig, reports / 'search_by_photo.png')}")
else:
    print("no article_images table: run the image tasks (ingest_images, train_image_similarity) first")
