"""The bundle is valid for Databricks (typed models of databricks-bundles) and for the local runner."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from databricks.bundles.jobs import Job as DatabricksJob

from fashionrec.runner.bundle import BundleError, load_bundle
from fashionrec.runner.local import run_job
from tests.conftest import REPO_ROOT


def test_every_job_parses_with_the_databricks_models():
    for path in sorted((REPO_ROOT / "resources").glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        for key, job in (doc.get("resources", {}).get("jobs") or {}).items():
            parsed = DatabricksJob.from_dict(job)
            assert parsed.tasks, f"{path}: job {key} has no tasks"


def test_entry_files_exist_and_define_main():
    job = load_bundle(REPO_ROOT).job("fashionrec", "dev")
    assert job.ordered()[0].key == "ingest"
    for task in job.tasks:
        assert task.python_file.exists(), task.python_file
        assert "def main(argv" in task.python_file.read_text()


def test_targets_resolve_variables():
    bundle = load_bundle(REPO_ROOT)
    assert bundle.default_target() == "dev"
    local = bundle.resolve_variables("local")
    assert local["catalog"] == "" and local["lakehouse_dir"] == "lakehouse"
    assert bundle.resolve_variables("prod")["catalog"] == "main"
    with pytest.raises(BundleError, match="unknown target"):
        bundle.resolve_variables("staging")
    with pytest.raises(BundleError, match="unknown variable"):
        bundle.resolve_variables("local", {"catalogue": "x"})


def _write_bundle(root: Path, tasks: list[dict]) -> None:
    (root / "resources").mkdir(parents=True)
    (root / "databricks.yml").write_text(
        yaml.safe_dump(
            {"bundle": {"name": "t"}, "include": ["resources/*.yml"], "targets": {"local": {"default": True}}}
        )
    )
    (root / "resources" / "job.yml").write_text(
        yaml.safe_dump({"resources": {"jobs": {"j": {"tasks": tasks}}}})
    )


def test_dependency_order_and_cycles(tmp_path):
    def task(key, *deps):
        return {
            "task_key": key,
            "depends_on": [{"task_key": d} for d in deps],
            "spark_python_task": {"python_file": f"{key}.py"},
        }

    _write_bundle(tmp_path / "ok", [task("c", "b"), task("a"), task("b", "a")])
    assert [t.key for t in load_bundle(tmp_path / "ok").job("j", "local").ordered()] == ["a", "b", "c"]
    _write_bundle(tmp_path / "cycle", [task("a", "b"), task("b", "a")])
    with pytest.raises(BundleError, match="cycle"):
        load_bundle(tmp_path / "cycle").job("j", "local").ordered()


def test_local_runner_runs_the_job_graph_and_writes_the_summary(spark, tiny_data, tmp_path):
    summary = tmp_path / "reports" / "latest_run.json"
    result = run_job(
        REPO_ROOT,
        target="local",
        variables={
            "data_path": str(tiny_data),
            "lakehouse_dir": str(tmp_path / "lakehouse"),
            "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "reports_dir": str(tmp_path / "reports"),
            "artifacts_dir": str(tmp_path / "artifacts"),
            "max_evals": "2",
            "retrieval_epochs": "2",
        },
        summary_path=summary,
        quiet=True,
    )
    assert result.failed is None
    written = json.loads(summary.read_text())
    assert written["run"]["status"] == "succeeded"
    ingest = written["tasks"]["ingest"]
    assert (
        ingest["table_rows"]["transactions"]
        == len((tiny_data / "transactions_train.csv").read_text().splitlines()) - 1
    )
    assert (tmp_path / "lakehouse" / "transactions" / "_delta_log").is_dir()
    assert list(written["tasks"]) == ["ingest", "features", "train_retrieval", "build_index", "evaluate"]
    assert written["tasks"]["evaluate"]["oracle_map@12"] > 0
    assert (tmp_path / "reports" / "map_test.png").exists()

    # Retrieval: two Hyperopt trials as nested MLflow runs, towers and index on disk, candidates scored.
    trained = written["tasks"]["train_retrieval"]
    assert len(trained["tuning_trials"]) == 2
    assert (tmp_path / "artifacts" / "retrieval" / "towers" / "query_tower" / "saved_model.pb").exists()
    assert (tmp_path / "artifacts" / "retrieval" / "index.npz").exists()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(trained["mlflow_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 2 and all("val.recall_at_100" in c.data.metrics for c in children)
    assert (
        "val.recall_at_100" in parent.data.metrics and "version.retrieval_training_set" in parent.data.params
    )
    index = written["tasks"]["build_index"]
    assert index["index"]["kind"] == "exact" and index["customers_evaluated"] > 0
    methods = {row["method"] for row in index["metrics"]}
    assert {"two_tower", "decayed_popularity", "oracle"} <= methods
    assert "two_tower" in {row["method"] for row in written["tasks"]["evaluate"]["metrics"]}


def test_local_runner_reports_a_failing_task(spark, tmp_path):
    summary = tmp_path / "latest_run.json"
    result = run_job(
        REPO_ROOT,
        target="local",
        variables={"data_path": str(tmp_path / "nowhere"), "lakehouse_dir": str(tmp_path / "lh")},
        summary_path=summary,
        quiet=True,
    )
    assert result.failed == "ingest"
    written = json.loads(summary.read_text())
    assert written["run"]["status"] == "failed"
    assert "nowhere" in written["tasks"]["ingest"]["error"]
