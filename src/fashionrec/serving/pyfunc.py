"""The recommender as one MLflow pyfunc model: query tower + FAISS index + candidate sources + filters +
XGBoost ranker + visual neighbours + the feature snapshot, behind `mlflow models serve` or Databricks
Model Serving.

Request rows (dataframe_split or dataframe_records), one of:
- `customer_id` with optional `k` (1..100, default 12), `exclude` (article ids) and `as_of` (a date in the
  snapshot's week: the model answers for one week and says so rather than pretend otherwise);
- `article_id` with optional `k`: that article's visual neighbours ("similar items");
- `image` (a base64-encoded JPEG or PNG, at most 1 MiB and 4096 pixels a side) with optional `k`: the
  catalogue articles whose photos look closest (search by photo; `serving.photo`).
Answer rows: `id`, `article_ids`, `scores`, `sources` (per article), `fallback` (popular items for a
customer without history). Bad input raises an MlflowException with INVALID_PARAMETER_VALUE, which the
scoring server turns into HTTP 400 with the reason.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import AnyType, Array

from fashionrec.serving.requests import bad_request, parse_requests
from fashionrec.similarity.encoder import ENCODER_DIR

# The runtime's own pins, shipped inside the package (the model environment holds no build-side library).
REQUIREMENTS = Path(__file__).resolve().with_name("requirements.txt")
MODEL_FILES = ("retrieval/towers", "retrieval/index.npz", "ranking/ranker", "ranking/pipeline.json")
OPTIONAL_MODEL_FILES = (str(ENCODER_DIR),)  # the image encoder, when the image tasks ran

SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec(DataType.string, "customer_id", required=False),
            ColSpec(DataType.string, "article_id", required=False),
            ColSpec(DataType.string, "image", required=False),
            # `k` and `exclude` reach the model as sent (AnyType): MLflow would turn `true` or 12.5 into an
            # integer before the model could reject them.
            ColSpec(AnyType(), "k", required=False),
            ColSpec(AnyType(), "exclude", required=False),
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


def online_store_from_env() -> Any:
    """The online store named by FASHIONREC_ONLINE_STORE (the serving endpoint's environment: a SQLite
    file, or a postgresql:// URL for Lakebase), or None: the model then answers from its snapshot alone."""
    import os

    from fashionrec.online.store import ENVIRONMENT_VARIABLE, open_store

    url = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    return open_store(url) if url else None


def freeze_long_lived_objects() -> None:
    """The snapshot's millions of long-lived objects would make each full garbage collection a pause of
    most of a second in the middle of some request; they live as long as the server, so freeze them."""
    gc.collect()
    gc.freeze()


class PhotoLoader:
    """Loads search by photo (`serving.photo.PhotoSearch`) on a background thread started by the model's
    first request (`start`), not while the model loads: a server that loads the model once and forks its
    workers (`serving.server`) must fork before any thread runs, and TensorFlow must load in each worker
    after the fork. `get` waits for it and returns None when the model was registered without it (or it
    failed to load: the error is logged)."""

    def __init__(self, models_dir: str, snapshot_dir: str) -> None:
        from fashionrec.serving.photo import PhotoSearch

        self._folders = (models_dir, snapshot_dir)
        self._search: Any = None
        self._ready = threading.Event()
        self._started = threading.Lock()
        self._available = PhotoSearch.available(models_dir, snapshot_dir)
        if not self._available:
            self._ready.set()

    def start(self) -> None:
        """Start loading in the background, once (cheap after the first call)."""
        if self._ready.is_set() or not self._started.acquire(blocking=False):
            return

        def load() -> None:
            from fashionrec.serving.photo import PhotoSearch

            try:
                self._search = PhotoSearch.from_folders(*self._folders)
                freeze_long_lived_objects()
            except Exception:
                log = logging.getLogger(__name__)
                if not all(Path(folder).is_dir() for folder in self._folders):
                    # A temporary copy removed under the loader: MLflow loads a model being logged from
                    # one to check its input example, and removes it when that request is answered.
                    log.info("search by photo not loaded: the model's folders were removed while it loaded")
                else:
                    log.exception("search by photo failed to load")
            finally:
                self._ready.set()

        # Not a daemon: the interpreter waits for it at exit, rather than tear TensorFlow down under an
        # import in progress (which aborts the process).
        threading.Thread(target=load, name="photo-search-loader").start()

    def get(self) -> Any:
        self.start()
        self._ready.wait()
        return self._search


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """Loads everything once in `load_context`; `predict` answers from memory."""

    def load_context(self, context: Any) -> None:
        from fashionrec.recommender.core import Recommender

        self.recommender = Recommender(
            context.artifacts["snapshot"], context.artifacts["models"], online_store=online_store_from_env()
        )
        # Search by photo needs TensorFlow and the image encoder (seconds to load): they load in the
        # background from the first request on, so the server answers customers and articles at once and
        # a photo request waits for them only while they load.
        self.photos = PhotoLoader(context.artifacts["models"], context.artifacts["snapshot"])
        self._gallery_lock = threading.Lock()
        self._in_gallery: set[str] = set()  # new articles added to the photo search
        freeze_long_lived_objects()

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        from fashionrec.recommender.core import UnknownArticleError

        self.photos.start()
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
            if request["image"] is not None:
                answers[i] = self._photo_answer(i, request["image"], request["k"])
            rows.append(answers[i])
        return _answer_frame(rows)

    def _photo_answer(self, row: int, photo: np.ndarray, k: int) -> dict[str, Any]:
        search = self.photos.get()
        if search is None:
            raise bad_request(
                f"row {row}: this model has no photo search (no image model or image embeddings were "
                "registered with it: run the image tasks before register)"
            )
        recommender = self.recommender
        if recommender.online is not None:  # articles added since the snapshot are searchable too
            recommender.sync([])
            with self._gallery_lock:
                added = [n for a, n in recommender.new_articles.items() if a not in self._in_gallery]
                added = [n for n in added if n.embedding is not None and len(n.embedding) == search.dimension]
                search.add(
                    [n.article_id for n in added], np.stack([n.embedding for n in added]) if added else None
                )
                self._in_gallery.update(n.article_id for n in added)
        similar = search.search(photo, k)
        return {
            "id": f"image {row}",
            "article_ids": [a for a, _ in similar],
            "scores": [s for _, s in similar],
            "sources": ["photo"] * len(similar),
            "fallback": False,
        }


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
    """Copy only what serving needs (towers, index, ranker, pipeline config, the image encoder when there is
    one) out of the artifacts folder."""
    root = Path(artifacts_dir)
    for name in (*MODEL_FILES, *OPTIONAL_MODEL_FILES):
        source, target = root / name, into / name
        if not source.exists():
            if name in OPTIONAL_MODEL_FILES:
                continue
            raise FileNotFoundError(f"{source} is missing: run train_retrieval, build_index and train_ranker")
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
    return into


def example_request(snapshot_dir: str | Path, k: int = 12) -> pd.DataFrame:
    """One request row for a customer of the snapshot with purchases (the smallest id of the purchases
    file's first non-empty row group, so the same snapshot always gives the same example, cheaply at any
    size); without purchases, the smallest customer id."""
    purchases = pq.ParquetFile(Path(snapshot_dir) / "purchases.parquet")
    for group in range(purchases.num_row_groups):
        ids = purchases.read_row_group(group, columns=["customer_id"]).column("customer_id").to_pandas()
        if len(ids):
            break
    else:
        ids = pd.read_parquet(Path(snapshot_dir) / "customers.parquet", columns=["customer_id"])[
            "customer_id"
        ]
    return pd.DataFrame({"customer_id": [str(ids.min())], "k": [k]})


def log_recommender(
    snapshot_dir: str | Path, artifacts_dir: str | Path, input_example: pd.DataFrame | None = None
) -> Any:
    """Log the pyfunc model to the active MLflow run (name `recommender`); returns the ModelInfo.

    The example request (default: `example_request`) is stored with the model (`serving_input_example.json`,
    shown by Databricks Model Serving's query page); MLflow checks it against the signature (an error) and
    answers it once while logging (a warning if the model cannot)."""
    if input_example is None:
        input_example = example_request(snapshot_dir)
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
            pip_requirements=str(REQUIREMENTS),
            metadata={"snapshot_week_start": meta["week_start"], "model_version": meta["model_version"]},
        )
