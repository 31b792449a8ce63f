"""Point-in-time features, time-based splits, ground truth and training sets (Spark, no TensorFlow)."""
