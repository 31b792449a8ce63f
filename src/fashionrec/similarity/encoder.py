"""Load the saved image encoder and embed pixels: TensorFlow only (importing TensorFlow Similarity costs
seconds that every Spark task embedding images would pay)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Under the artifacts folder: the saved encoder that `train_image_similarity` writes and serving loads.
ENCODER_DIR = Path("similarity") / "model"


def load(folder: str | Path) -> Any:
    from fashionrec.training.tf_env import import_tensorflow

    return import_tensorflow().saved_model.load(str(folder))


def embed_saved(encoder: Any, pixels: np.ndarray, batch: int = 512) -> np.ndarray:
    """Unit-length embeddings of uint8 images (n, size, size, 3) from a loaded encoder."""
    import tensorflow as tf

    parts = [encoder(tf.constant(pixels[i : i + batch])).numpy() for i in range(0, len(pixels), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def embed_photo(encoder: Any, photo: np.ndarray) -> np.ndarray:
    """The unit vector of one photo of any size ((h, w, 3) uint8; the encoder resizes it), as search by
    photo embeds a request's photo: a new article embedded this way is its own photo's closest match."""
    import tensorflow as tf

    return encoder(tf.constant(photo[np.newaxis])).numpy()[0]
