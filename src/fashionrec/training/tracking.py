"""MLflow set-up: local sqlite tracking and registry by default, the workspace's on Databricks."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import mlflow

_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_name(*parts: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and space: `map@12` becomes `map_at_12`."""
    return _BAD_CHARS.sub("_", ".".join(p.replace("@", "_at_") for p in parts))


@contextmanager
def tracked_run(
    tracking_uri: str, experiment: str, run_name: str, tags: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """An MLflow run on `tracking_uri` (e.g. sqlite:///mlflow.db, or "databricks")."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()}) as run:
        yield run
