"""Import TensorFlow the one way this project supports: Keras 2 (tf-keras), quiet logs.

TensorFlow Recommenders 0.7.7 and TensorFlow Similarity 0.17.1 need Keras 2; TensorFlow 2.21 ships
Keras 3 unless TF_USE_LEGACY_KERAS=1 is set *before* the first import. Spark task processes do not
inherit the driver's environment changes, so every module that needs TensorFlow calls this.
"""

from __future__ import annotations

import os
from types import ModuleType


def import_tensorflow() -> ModuleType:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    # Without a GPU driver the CUDA build of TensorFlow logs a failed cuInit as an error on every
    # import; that is the only native error on a CPU machine, so hide it there (Python errors still raise).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if os.path.exists("/dev/nvidia0") else "3")
    import tensorflow as tf

    # `tf.keras` is a lazy module: ask a layer class where it really lives (Keras 3: `keras.src...`).
    keras_home = tf.keras.layers.Dense.__module__
    if not keras_home.startswith("tf_keras") and os.environ["TF_USE_LEGACY_KERAS"] == "1":
        raise RuntimeError(
            "TensorFlow was imported before TF_USE_LEGACY_KERAS=1 was set, so it uses Keras 3; "
            "import fashionrec's TensorFlow code first or export TF_USE_LEGACY_KERAS=1 "
            f"(tf.keras.layers.Dense is from {keras_home})"
        )
    return tf
