"""Distributed launch, hyperparameter search and MLflow logging helpers shared by the model stages."""
