"""Task `register`: the recommender (pyfunc) into the MLflow Model Registry, with champion/challenger.

The new version becomes `champion` only if its test-week MAP@12 is at least the current champion's;
otherwise it is `challenger` and the task says why. The serving endpoint (resources/serving.yml) and
`make serve` follow the `champion` alias. A version records a fingerprint of its inputs; when the
champion's is the same (a daily refresh with no new data), nothing is logged or registered.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pyspark.sql import SparkSession

from fashionrec import __version__
from fashionrec.config import RegisterParams, Tables
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version
from fashionrec.recommender.core import write_query_embeddings
from fashionrec.recommender.layout import QUALITY_FILE
from fashionrec.serving.pyfunc import log_recommender
from fashionrec.snapshot.answers import write_answers
from fashionrec.snapshot.build import build_snapshot, scoring_snapshot
from fashionrec.snapshot.gallery import write_gallery
from fashionrec.training.tracking import tracked_run
from fashionrec.training.tuning import absolute_tracking_uri

SNAPSHOT_DIR = Path("serving") / "snapshot"
METRIC_TAG = "test_map_at_12"
INPUTS_TAG = "serving_inputs"  # fingerprint of what the version was built from (`serving_inputs`)


def _champion(client: MlflowClient, name: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None


def registered_name(params: RegisterParams) -> str:
    """catalog.schema.name in Unity Catalog; the bare name in a workspace or local registry."""
    return f"{params.catalog}.{params.schema}.{params.model_name}" if params.catalog else params.model_name


def decide(
    new_map: float, champion_map: float | None, baseline_map: float | None = None, baseline: str = "baseline"
) -> tuple[str, str]:
    """(alias, reason) for a new version given the champion's MAP@12 (None: no champion yet) and the best
    baseline's on the same test week: a version below the best baseline never replaces a champion (the
    first version is served all the same, since there is nothing else to serve, and the reason says so)."""
    below = baseline_map is not None and new_map < baseline_map
    if champion_map is None:
        note = f" (below best baseline {baseline}'s {baseline_map:.4f})" if below else ""
        return "champion", f"first registered version{note}"
    if below:
        return "challenger", f"test MAP@12 {new_map:.4f} < best baseline {baseline}'s {baseline_map:.4f}"
    if new_map >= champion_map:
        return "champion", f"test MAP@12 {new_map:.4f} >= champion's {champion_map:.4f}"
    return "challenger", f"test MAP@12 {new_map:.4f} < champion's {champion_map:.4f}: champion kept"


def serving_inputs(spark: SparkSession, params: RegisterParams, quality: str) -> str:
    """A fingerprint of everything a registered version is built from: the scoring state (target week,
    table versions, histories' end, models' content hash), the test quality, the image embeddings'
    version and this package's version. The same fingerprint means the same model and snapshot."""
    state = {k: v for k, v in scoring_snapshot(spark, params.tables).items() if k != "generated_at"}
    parts = {
        "state": state,
        "quality": quality,
        "image_embeddings": current_version(spark, params.tables, Tables.IMAGE_EMBEDDINGS),
        "package": __version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_register(params: RegisterParams, spark: SparkSession | None = None) -> dict[str, Any]:
    spark = spark or get_spark("fashionrec-register")
    started = time.perf_counter()
    artifacts = Path(params.artifacts_dir)
    quality_path = artifacts / QUALITY_FILE
    if not quality_path.exists():
        raise FileNotFoundError(f"{quality_path} is missing: run train_ranker first")
    quality = json.loads(quality_path.read_text())
    new_map = float(quality["map@12"])
    inputs = serving_inputs(spark, params, quality_path.read_text())
    tracking_uri = absolute_tracking_uri(params.mlflow_tracking_uri)
    name = registered_name(params)
    registry_uri = "databricks-uc" if params.catalog and tracking_uri == "databricks" else tracking_uri
    client = MlflowClient(tracking_uri, registry_uri=registry_uri)
    champion = _champion(client, name)
    if champion is not None and champion.tags.get(INPUTS_TAG) == inputs:
        return {  # a daily refresh with no new data: the champion already serves exactly this
            "model_name": name,
            "version": int(champion.version),
            "alias": "champion",
            "reason": f"unchanged: champion version {champion.version} was built from the same inputs",
            "committed": False,
            "test_map@12": round(new_map, 5),
            "live_method": quality.get("live_method", "pipeline"),
            "model_uri": f"models:/{name}@champion",
            "seconds": round(time.perf_counter() - started, 1),
        }
    snapshot = build_snapshot(spark, params.tables, artifacts, artifacts / SNAPSHOT_DIR)
    gallery = write_gallery(spark, params.tables, artifacts, artifacts / SNAPSHOT_DIR)
    # The served model then starts without embedding every customer (or loading TensorFlow for it), and
    # answers a customer's default request with batch scoring's list for the same snapshot.
    embedded = write_query_embeddings(artifacts / SNAPSHOT_DIR, artifacts)
    stored = write_answers(spark, params.tables, artifacts / SNAPSHOT_DIR, artifacts)

    with tracked_run(tracking_uri, params.experiment, "register", {"task": "register"}) as run:
        mlflow.log_params(
            {
                "snapshot_week": snapshot["week_start"],
                "version.transactions": snapshot["transactions_version"],
                "version.popularity_snapshot": snapshot["global_version"],
                "scoring_model_version": snapshot["model_version"],
            }
        )
        mlflow.log_metric("test.map_at_12", new_map)
        info = log_recommender(artifacts / SNAPSHOT_DIR, artifacts)
        run_id = run.info.run_id
    mlflow.set_registry_uri(registry_uri)
    champion_map = None
    if champion is not None:
        tagged = champion.tags.get(METRIC_TAG)
        champion_map = float(tagged) if tagged is not None else None
    version = mlflow.register_model(info.model_uri, name, tags={METRIC_TAG: str(new_map), INPUTS_TAG: inputs})
    baseline_map = quality.get("best_baseline_map@12")
    alias, reason = decide(
        new_map,
        champion_map,
        None if baseline_map is None else float(baseline_map),
        quality.get("best_baseline", ""),
    )
    client.set_registered_model_alias(name, alias, version.version)
    return {
        "model_name": name,
        "version": int(version.version),
        "alias": alias,
        "reason": reason,
        "committed": True,
        "test_map@12": round(new_map, 5),
        "live_method": quality.get("live_method", "pipeline"),
        "best_baseline": quality.get("best_baseline"),
        "champion_before": int(champion.version) if champion is not None else None,
        "snapshot_week": snapshot["week_start"],
        "snapshot_rows": snapshot["rows"],
        "photo_search_articles": gallery,  # None: registered without search by photo
        "stored_query_embeddings": embedded,
        "stored_answers": stored,  # None: batch scoring ran with another model (every answer computed)
        "model_uri": f"models:/{name}@champion",
        "mlflow_run_id": run_id,
        "seconds": round(time.perf_counter() - started, 1),
    }
