"""Image similarity: a TensorFlow Similarity metric-learning model over product photos, and visual neighbours."""
