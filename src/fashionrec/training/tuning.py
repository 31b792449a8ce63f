"""Hyperparameter search with Hyperopt `SparkTrials`: each trial is a Spark task and a nested MLflow run.

On a GPU cluster each trial's task holds one GPU (`spark.task.resource.gpu.amount`), and the trial exposes
only that one to TensorFlow, so `parallelism` trials run side by side on as many GPUs.

The objective runs in a Spark Python worker, so it receives everything it needs by value (the tracking
URI made absolute, the parent run id) and opens its own MLflow client there.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from fashionrec.training.distributed import bind_task_gpus


def absolute_tracking_uri(uri: str) -> str:
    """sqlite:///relative.db → sqlite:////abs/path/relative.db, valid from any process's working dir."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


@dataclass(frozen=True)
class TrialTracking:
    tracking_uri: str
    experiment_id: str
    parent_run_id: str


@dataclass
class SearchResult:
    best: dict[str, Any]
    best_loss: float
    trials: list[dict[str, Any]]


def search(
    spark: SparkSession,
    objective: Callable[[dict[str, Any]], dict[str, Any]],
    space: Mapping[str, Any],
    max_evals: int,
    parallelism: int = 1,
    seed: int = 42,
) -> SearchResult:
    """Minimise `objective` (which returns a hyperopt result dict with `loss`) over `space`."""
    import numpy as np
    from hyperopt import SparkTrials, fmin, space_eval, tpe

    def on_the_task_gpu(values: dict[str, Any]) -> dict[str, Any]:
        bind_task_gpus()  # a trial sees only the GPU Spark gave its task (none on CPU clusters)
        return objective(values)

    trials = SparkTrials(parallelism=parallelism, spark_session=spark)
    with warnings.catch_warnings():
        # Hyperopt wraps each trial's thread with pyspark's `inheritable_thread_target` without a session,
        # which PySpark 4 warns about once per trial; the trials use no Spark session tags.
        warnings.filterwarnings("ignore", "Spark session is not provided", UserWarning)
        best = fmin(
            fn=on_the_task_gpu,
            space=dict(space),
            algo=tpe.suggest,
            max_evals=max_evals,
            trials=trials,
            rstate=np.random.default_rng(seed),
            show_progressbar=False,
        )
    ok = [t for t in trials.trials if t["result"].get("status") == "ok"]
    if not ok:
        errors = {t["result"].get("error") for t in trials.trials}
        raise RuntimeError(f"every hyperparameter trial failed: {errors}")
    return SearchResult(
        best=space_eval(dict(space), best),
        best_loss=float(min(t["result"]["loss"] for t in ok)),
        trials=[t["result"] for t in trials.trials],
    )


def start_trial_run(tracking: TrialTracking, run_name: str) -> Any:
    """A nested MLflow run under the search's parent run, from inside a Spark task."""
    import mlflow

    mlflow.set_tracking_uri(tracking.tracking_uri)
    return mlflow.start_run(
        experiment_id=tracking.experiment_id,
        run_name=run_name,
        parent_run_id=tracking.parent_run_id,
        nested=True,
    )
