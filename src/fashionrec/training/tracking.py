"""MLflow set-up: local sqlite tracking and registry by default, the workspace's on Databricks."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_name(*parts: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and space: `map@12` becomes `map_at_12`."""
    return _BAD_CHARS.sub("_", ".".join(p.replace("@", "_at_") for p in parts))


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Artifacts beside a local sqlite database (`<db folder>/mlartifacts/<experiment>`), not in the
    working directory's `./mlruns`, MLflow's default: a test's or a demo's models stay with its
    database. None elsewhere (the server or workspace decides)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    folder = Path(tracking_uri[len(prefix) :]).resolve().parent / "mlartifacts"
    return (folder / re.sub(r"[^A-Za-z0-9_\-.]", "_", experiment.strip("/"))).as_uri()


@contextmanager
def tracked_run(
    tracking_uri: str, experiment: str, run_name: str, tags: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """An MLflow run on `tracking_uri` (e.g. sqlite:///mlflow.db, or "databricks")."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=artifact_location(tracking_uri, experiment))
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()}) as run:
        yield run
