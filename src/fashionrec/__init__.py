"""fashionrec: personal top-12 fashion recommendations on a Databricks lakehouse.

One package per stage (data, lake, features, retrieval, similarity, ranking, serving, evaluation,
training); `jobs/` holds the thin task entry points that the bundle and the local runner both call.
"""

__version__ = "0.1.0"
