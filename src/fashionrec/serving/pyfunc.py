"""The recommender as one MLflow pyfunc model: query tower + FAISS index + candidate sources + filters +
XGBoost ranker + visual neighbours + the feature snapshot, behind `mlflow models serve` or Databricks
Model Serving.

Request rows (dataframe_split or dataframe_records), one of:
- `customer_id` with optional `k` (1..100, default 12), `exclude` (article ids) and `as_of` (a date in the
  snapshot's week: the model answers for one week and says so rather than pretend otherwise);
- `article_id` with optional `k`: that article's visual neighbours ("similar items").
Answer rows: `id`, `article_ids`, `scores`, `sources` (per article), `fallback` (popular items for a
customer without history). Bad input raises an MlflowException with INVALID_PARAMETER_VALUE, which the
scoring server turns into HTTP 400 with the reason.
"""

from __future__ import annotations

import gc
import json
import math
import shutil
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array

from fashionrec.features.weeks import week_of

MAX_K = 100
REQUIREMENTS = Path(__file__).resolve().parents[3] / "requirements.txt"
MODEL_FILES = ("retrieval/towers", "retrieval/index.npz", "ranking/ranker", "ranking/pipeline.json")

SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec(DataType.string, "customer_id", required=False),
            ColSpec(DataType.string, "article_id", required=False),
            ColSpec(DataType.long, "k", required=False),
            ColSpec(Array(DataType.string), "exclude", required=False),
            ColSpec(DataType.string, "as_of", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec(DataType.string, "id"),
            ColSpec(Array(DataType.string), "article_ids"),
            ColSpec(Array(DataType.double), "scores"),
            ColSpec(Array(DataType.string), "sources"),
            ColSpec(DataType.boolean, "fallback"),
        ]
    ),
)


def bad_request(message: str) -> MlflowException:
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any, field: str, row: int) -> str | None:
    if _missing(value):
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"row {row}: {field} must be a non-empty string, got {value!r}")
    return value.strip()


def _k(value: Any, row: int, default: int) -> int:
    if _missing(value):
        return default
    if isinstance(value, bool) or not float(value).is_integer():
        raise bad_request(f"row {row}: k must be an integer from 1 to {MAX_K}, got {value!r}")
    k = int(value)
    if not 1 <= k <= MAX_K:
        raise bad_request(f"row {row}: k must be from 1 to {MAX_K}, got {k}")
    return k


def _exclude(value: Any, row: int) -> set[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return set()
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise bad_request(f"row {row}: exclude must be a list of article ids, got {value!r}")
    return {str(v) for v in value}


def parse_requests(frame: pd.DataFrame, default_k: int, week: int) -> list[dict[str, Any]]:
    """Validated requests, one per row; raises `bad_request` naming the row and the field."""
    if frame.empty:
        raise bad_request("no rows: send at least one customer_id or article_id")
    unknown = set(frame.columns) - {"customer_id", "article_id", "k", "exclude", "as_of"}
    if unknown:
        raise bad_request(
            f"unknown field(s) {sorted(unknown)}: use customer_id, article_id, k, exclude, as_of"
        )
    requests = []
    columns = {name: frame[name].tolist() for name in frame.columns}  # cheaper than to_dict("records")
    for i in range(len(frame)):
        row = {name: values[i] for name, values in columns.items()}
        customer = _text(row.get("customer_id"), "customer_id", i)
        article = _text(row.get("article_id"), "article_id", i)
        if (customer is None) == (article is None):
            raise bad_request(f"row {i}: give exactly one of customer_id and article_id")
        as_of = _text(row.get("as_of"), "as_of", i)
        if as_of is not None:
            try:
                asked = week_of(date.fromisoformat(as_of))
            except ValueError as error:
                raise bad_request(f"row {i}: as_of must be a date YYYY-MM-DD, got {as_of!r}") from error
            if asked != week:
                raise bad_request(
                    f"row {i}: this model answers for the week of its snapshot (week index {week}); "
                    f"as_of {as_of} is another week: register a model built for that week"
                )
        requests.append(
            {
                "customer_id": customer,
                "article_id": article,
                "k": _k(row.get("k"), i, default_k),
                "exclude": _exclude(row.get("exclude"), i),
            }
        )
    return requests


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """Loads everything once in `load_context`; `predict` answers from memory."""

    def load_context(self, context: Any) -> None:
        from fashionrec.serving.online import OnlineRecommender

        self.recommender = OnlineRecommender(context.artifacts["snapshot"], context.artifacts["models"])
        # The snapshot's millions of long-lived objects would make each full garbage collection a pause of
        # most of a second in the middle of some request; they live as long as the server, so freeze them.
        gc.collect()
        gc.freeze()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from fashionrec.serving.online import UnknownArticleError

        recommender = self.recommender
        requests = parse_requests(pd.DataFrame(model_input), recommender.k, recommender.week)
        rows: list[dict[str, Any]] = []
        # Customers sharing k and exclude are answered together (one query-tower call).
        groups: dict[tuple[int, frozenset[str]], list[int]] = {}
        for i, request in enumerate(requests):
            if request["customer_id"] is not None:
                groups.setdefault((request["k"], frozenset(request["exclude"])), []).append(i)
        answers: dict[int, dict[str, Any]] = {}
        for (k, exclude), members in groups.items():
            ids = [requests[i]["customer_id"] for i in members]
            for i, answer in zip(members, recommender.recommend(ids, k, set(exclude)), strict=True):
                answers[i] = {
                    "id": answer.customer_id,
                    "article_ids": answer.article_ids,
                    "scores": [float(s) for s in answer.scores],
                    "sources": answer.sources,
                    "fallback": answer.fallback,
                }
        for i, request in enumerate(requests):
            if request["article_id"] is not None:
                try:
                    similar = recommender.similar_items(request["article_id"], request["k"])
                except UnknownArticleError as error:
                    raise bad_request(f"row {i}: unknown article_id {request['article_id']!r}") from error
                answers[i] = {
                    "id": request["article_id"],
                    "article_ids": [a for a, _ in similar],
                    "scores": [s for _, s in similar],
                    "sources": ["visual"] * len(similar),
                    "fallback": False,
                }
            rows.append(answers[i])
        return _answer_frame(rows)


ANSWER_COLUMNS = ("id", "article_ids", "scores", "sources", "fallback")


def _answer_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The answer rows as a DataFrame, built from object arrays: a few times cheaper than letting pandas
    infer list-valued columns, which mattered at a few milliseconds a request."""
    columns = {}
    for name in ANSWER_COLUMNS:
        values = np.empty(len(rows), dtype=object)
        for i, row in enumerate(rows):
            values[i] = row[name]
        columns[name] = values
    return pd.DataFrame(columns, copy=False)


def stage_model_files(artifacts_dir: str | Path, into: Path) -> Path:
    """Copy only what serving needs (towers, index, ranker, pipeline config) out of the artifacts folder."""
    root = Path(artifacts_dir)
    for name in MODEL_FILES:
        source, target = root / name, into / name
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing: run train_retrieval, build_index and train_ranker")
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    return into


def log_recommender(
    snapshot_dir: str | Path, artifacts_dir: str | Path, input_example: pd.DataFrame | None = None
) -> Any:
    """Log the pyfunc model to the active MLflow run (name `recommender`); returns the ModelInfo."""
    with tempfile.TemporaryDirectory() as tmp:
        models = stage_model_files(artifacts_dir, Path(tmp) / "models")
        meta = json.loads((Path(snapshot_dir) / "meta.json").read_text())
        return mlflow.pyfunc.log_model(
            name="recommender",
            python_model=RecommenderModel(),
            artifacts={"snapshot": str(snapshot_dir), "models": str(models)},
            signature=SIGNATURE,
            input_example=input_example,
            code_paths=[str(Path(__file__).resolve().parents[1])],
            # The project's pins when it runs from a checkout (inference would load TensorFlow to find them).
            pip_requirements=str(REQUIREMENTS) if REQUIREMENTS.exists() else None,
            metadata={"snapshot_week_start": meta["week_start"], "model_version": meta["model_version"]},
        )
