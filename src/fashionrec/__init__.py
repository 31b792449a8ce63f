"""fashionrec: personal top-12 fashion recommendations on a Databricks lakehouse.

One package per stage (data, lake, features, retrieval, similarity, ranking, serving, evaluation,
training); `jobs/` holds the thin task entry points that the bundle and the local runner both call.
"""

__version__ = "0.2.0"

import os as _os

# TensorFlow Recommenders and TensorFlow Similarity need Keras 2: the switch must be set before anything
# (a library, a test) imports TensorFlow, so it is set when the package is first imported.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
