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
    backtest = load_bundle(REPO_ROOT).job("fashionrec_backtest", "dev")
    assert [t.key for t in backtest.ordered()] == ["ingest", "backtest"]
    for task in [*job.tasks, *backtest.tasks]:
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


JOB_TASKS = [
    "ingest",
    "ingest_images",
    "train_image_similarity",
    "index_images",
    "features",
    "train_retrieval",
    "build_index",
    "train_ranker",
    "evaluate",
    "batch_score",
    "register",
]


# Settings that name a place or a cluster's size: the bundle's variables hold the workspace's, the task
# parameters the local machine's, so they differ by design.
DEPLOYMENT_SETTINGS = {
    "artifacts_dir",
    "catalog",
    "schema",
    "lakehouse",
    "data_path",
    "images_path",
    "real_images_path",
    "checkpoint_dir",
    "file_source",
    "experiment",
    "mlflow_tracking_uri",
    "reports_dir",
    "workers",
    "parallelism",
    "max_evals",
}


def _bundle_settings() -> list[tuple[str, str, type, str]]:
    """(task key, parameter name, its params class, the bundle variable's default) for every task
    parameter the bundle passes as `${var.<name>}` with a default."""
    import re

    import fashionrec.config as config

    variables = yaml.safe_load((REPO_ROOT / "databricks.yml").read_text())["variables"]
    found = []
    for resource in sorted((REPO_ROOT / "resources").glob("*.yml")):
        jobs = yaml.safe_load(resource.read_text()).get("resources", {}).get("jobs") or {}
        for job in jobs.values():
            for task in job["tasks"]:
                python = task.get("spark_python_task")
                if python is None:
                    continue
                entry = (resource.parent / python["python_file"]).resolve().read_text()
                params_class = getattr(config, re.search(r"parse_params\((\w+)", entry).group(1))
                arguments = python.get("parameters", [])
                for flag, value in zip(arguments[::2], arguments[1::2], strict=True):
                    variable = re.fullmatch(r"\$\{var\.(\w+)\}", str(value))
                    default = variables[variable.group(1)].get("default") if variable else None
                    if default is not None:
                        found.append((task["task_key"], flag, params_class, str(default)))
    return found


def test_each_setting_has_one_default_shared_by_the_bundle_and_the_task_parameters():
    """A model setting's default lives in the task's typed parameters; the bundle's variable that feeds it
    holds the same value (places and cluster sizes aside)."""
    from fashionrec.config import parse_params

    settings = _bundle_settings()
    assert len(settings) > 50, settings
    checked, differ = 0, []
    for task, flag, params_class, default in settings:
        name = flag.removeprefix("--").replace("-", "_")
        if name in DEPLOYMENT_SETTINGS:
            continue
        checked += 1
        bundle_value = getattr(parse_params(params_class, [flag, default]), name)
        if bundle_value != getattr(params_class(), name):
            differ.append((task, name, bundle_value, getattr(params_class(), name)))
    assert checked > 10 and not differ, differ


def test_the_pipeline_config_is_the_task_defaults_with_the_chosen_window_and_live_method(job_run):
    """pipeline.json (what every snapshot carries and the core runs by) holds the ranking parameters'
    defaults, the already-bought window and live method chosen on validation, and nothing else."""
    from dataclasses import replace

    from fashionrec.config import RankingParams
    from fashionrec.recommender.layout import CONFIG_FILE
    from fashionrec.recommender.pipeline import PipelineConfig

    written = json.loads((job_run / "artifacts" / CONFIG_FILE).read_text())
    config = PipelineConfig.from_dict(written)
    expected = PipelineConfig.of(RankingParams(), config.rules.already_bought_weeks)
    assert replace(config, live=expected.live, objective="") == expected
    assert config.live.name and config.objective
    with pytest.raises(ValueError, match="incomplete"):
        PipelineConfig.from_dict({**written, "candidates": {"two_tower": 1}})
    with pytest.raises(ValueError, match="unknown field"):
        PipelineConfig.from_dict({**written, "rulez": {}})


def test_local_runner_runs_the_job_graph_and_writes_the_summary(job_run, tiny_data):
    tmp_path = job_run
    summary = tmp_path / "reports" / "latest_run.json"
    written = json.loads(summary.read_text())
    assert written["run"]["status"] == "succeeded"
    ingest = written["tasks"]["ingest"]
    assert (
        ingest["table_rows"]["transactions"]
        == len((tiny_data / "transactions_train.csv").read_text().splitlines()) - 1
    )
    assert (tmp_path / "lakehouse" / "transactions" / "_delta_log").is_dir()
    articles = len((tiny_data / "articles.csv").read_text().splitlines()) - 1
    assert written["tasks"]["ingest_images"]["inserted"] == articles
    assert written["tasks"]["ingest_images"]["images_of_known_articles"] == articles
    assert list(written["tasks"]) == JOB_TASKS

    # Images: a model trained on article_images, every article's neighbours, precision beside baselines.
    visual = written["tasks"]["index_images"]
    assert visual["embeddings"] == articles and (tmp_path / "reports" / "similar_articles.png").exists()
    assert {"learned (TF Similarity)", "raw pixels 24x24", "random"} <= {
        row["method"] for row in visual["neighbour_precision"]
    }
    assert written["tasks"]["evaluate"]["oracle_map@12"] > 0
    assert (tmp_path / "reports" / "map_test.png").exists()

    # Retrieval: a Hyperopt trial as a nested MLflow run, towers and index on disk, candidates scored.
    trained = written["tasks"]["train_retrieval"]
    assert len(trained["tuning_trials"]) == 1
    assert (tmp_path / "artifacts" / "retrieval" / "towers" / "query_tower" / "saved_model.pb").exists()
    assert (tmp_path / "artifacts" / "retrieval" / "index.npz").exists()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(trained["mlflow_run_id"])
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children) == 1 and all("val.recall_at_100" in c.data.metrics for c in children)
    assert (
        "val.recall_at_100" in parent.data.metrics and "version.retrieval_training_set" in parent.data.params
    )
    index = written["tasks"]["build_index"]
    assert index["index"]["kind"] == "exact" and index["customers_evaluated"] > 0
    methods = {row["method"] for row in index["metrics"]}
    assert {"two_tower", "decayed_popularity", "oracle"} <= methods
    assert "two_tower" in {row["method"] for row in written["tasks"]["evaluate"]["metrics"]}

    # Ranking: the full pipeline is scored beside the baselines, and every customer has a list.
    ranker = written["tasks"]["train_ranker"]
    assert ranker["chosen"]["objective"] in ("rank:ndcg", "binary:logistic")
    assert {"full_pipeline", "two_tower_only", "repurchase_then_popular"} <= {
        m["method"] for m in ranker["metrics"]
    }
    recall = ranker["candidate_recall_test"]
    assert 0 < recall["union"] <= 1
    assert (
        recall["union_without_two_tower"] <= recall["union"]
        and recall["union_without_visual"] <= recall["union"]
    )
    assert 0 < max(ranker["candidate_hit_rate_test"].values()) <= 1
    assert ranker["filters_test"]["candidates"] >= ranker["filters_test"]["kept"] > 0
    assert (tmp_path / "reports" / "ranker_importance.png").exists()
    assert "full_pipeline" in {row["method"] for row in written["tasks"]["evaluate"]["metrics"]}
    # The yardstick is a baseline, never one of the model stages it measures.
    assert written["tasks"]["evaluate"]["best_baseline"] not in ("full_pipeline", "two_tower", "oracle")
    scored = written["tasks"]["batch_score"]
    customers = len((tiny_data / "customers.csv").read_text().splitlines()) - 1
    assert scored["mode"] == "full (first run)" and scored["recommendations_rows"] == customers
    assert 0 < scored["fallback_rows"] < customers
    registered = written["tasks"]["register"]
    assert registered["alias"] == "champion" and registered["version"] == 1
    # The safety net: the live method is chosen on validation, scored on the test week beside the
    # baselines, and it is what the registry compares.
    allowed = {
        "pipeline",
        "repurchase_then_popular",
        *(f"repurchase_{c}_then_pipeline" for c in (1, 2, 4, 6, 12)),
    }
    assert ranker["live_method"] in allowed and "validation buyers" in ranker["live_why"]
    assert "live" in {m["method"] for m in ranker["metrics"]}
    assert registered["live_method"] == ranker["live_method"]
    assert registered["test_map@12"] == pytest.approx(ranker["live_map@12"], abs=1e-5)


def test_registering_unchanged_inputs_again_commits_nothing(spark, job_run, tmp_path):
    """The daily job registers every day; on a day without new data the champion already serves the same
    snapshot, so no run is logged and no version is created."""
    from fashionrec.config import RegisterParams
    from fashionrec.serving.register import run_register
    from tests.helpers import copy_job_run

    job_run = copy_job_run(job_run, tmp_path / "run")

    params = RegisterParams(
        lakehouse=str(job_run / "lakehouse"),
        artifacts_dir=str(job_run / "artifacts"),
        mlflow_tracking_uri=f"sqlite:///{job_run / 'mlflow.db'}",
    )
    again = run_register(params, spark)
    assert again["committed"] is False and again["version"] == 1 and again["reason"].startswith("unchanged")


def test_incremental_batch_scoring_equals_a_full_recompute(spark, job_run, tiny_data, tmp_path):
    from fashionrec.config import ScoringParams
    from fashionrec.ranking.score import run_batch_score
    from tests.helpers import copy_job_run, land_next_day, recommendation_rows, warm_and_cold

    job_run = copy_job_run(job_run, tmp_path / "run")

    lakehouse, artifacts = job_run / "lakehouse", str(job_run / "artifacts")
    params = ScoringParams(lakehouse=str(lakehouse), artifacts_dir=artifacts)
    before = recommendation_rows(spark, lakehouse)

    again = run_batch_score(params, spark)  # no new data: nothing scored, nothing committed
    assert again["mode"] == "incremental" and again["customers_scored"] == 0 and not again["committed"]
    assert recommendation_rows(spark, lakehouse) == before

    # A daily file lands: purchases on the target week's first day by two warm customers and a cold one.
    warm, cold = warm_and_cold(before)
    # The landing folder holds only the new day: the tables exist already.
    day, landed = land_next_day(spark, lakehouse, tiny_data, job_run / "data", [*warm, cold])
    assert [(Path(r["source_file"]).name, r["inserted"]) for r in landed["ingest"]] == [(f"{day}.csv", 3)]

    incremental = run_batch_score(params, spark)
    assert incremental["mode"] == "incremental" and incremental["customers_scored"] == 3
    merged = spark.sql(f"DESCRIBE HISTORY delta.`{lakehouse / 'recommendations'}` LIMIT 1").first()
    metrics = merged["operationMetrics"]  # deletion vectors: the 3 old rows marked, no file rewritten
    assert merged["operation"] == "MERGE" and int(metrics["numTargetDeletionVectorsAdded"]) > 0
    assert int(metrics["numTargetFilesRemoved"]) == 0
    assert incremental["week"] == day and incremental["history_through"] == day
    after = recommendation_rows(spark, lakehouse)
    assert after[cold][2] is False  # no longer a fallback list: the customer has history now
    unchanged = set(before) - {*warm, cold}
    assert all(after[c] == before[c] for c in unchanged)

    full = run_batch_score(
        ScoringParams(
            lakehouse=str(lakehouse),
            artifacts_dir=artifacts,
            full=True,
            global_version=incremental["global_version"],
        ),
        spark,
    )
    assert full["mode"] == "full (--full)" and full["customers_scored"] == len(before)
    recomputed = recommendation_rows(spark, lakehouse)
    assert set(recomputed) == set(after)
    for customer, (ids, scores, fallback) in recomputed.items():
        assert ids == after[customer][0] and fallback == after[customer][2], customer
        assert scores == pytest.approx(after[customer][1], rel=1e-5, abs=1e-6)


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


def test_run_summary_keeps_benchmark_figures_across_job_runs(tmp_path):
    from fashionrec.runner.report import record_benchmark, write_summary

    path = tmp_path / "reports" / "latest_run.json"
    write_summary(path, {"job": "fashionrec"}, {"ingest": {"rows": 3}})
    record_benchmark(path, "serving", {"p99_ms": 23.6, "date": "2026-11-24"})
    write_summary(path, {"job": "fashionrec"}, {"register": {"version": 3}}, merge=True)
    summary = json.loads(path.read_text())
    assert summary["tasks"] == {"ingest": {"rows": 3}, "register": {"version": 3}}
    assert summary["benchmarks"]["serving"]["p99_ms"] == 23.6
    write_summary(path, {"job": "fashionrec"}, {"evaluate": {}})  # a full run replaces the tasks only
    summary = json.loads(path.read_text())
    assert list(summary["tasks"]) == ["evaluate"] and "serving" in summary["benchmarks"]


TRAINING_TASKS = {"train_retrieval", "train_image_similarity"}


def _clusters(target: str) -> tuple[dict, dict[str, str]]:
    """The main job's job clusters and each task's cluster key, with the target's variables filled in."""
    values = load_bundle(REPO_ROOT).resolve_variables(target)
    text = (REPO_ROOT / "resources" / "fashionrec_job.yml").read_text()
    for name, value in values.items():
        text = text.replace("${var." + name + "}", str(value))
    job = yaml.safe_load(text)["resources"]["jobs"]["fashionrec"]
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    return clusters, {t["task_key"]: t["job_cluster_key"] for t in job["tasks"]}


@pytest.mark.parametrize("target", ["dev", "prod"])
def test_training_tasks_run_on_the_gpu_cluster_with_one_gpu_per_task(target):
    clusters, task_clusters = _clusters(target)
    assert set(task_clusters.values()) <= set(clusters), "a task names a job cluster the job does not declare"
    for task, key in task_clusters.items():
        assert key == ("gpu" if task in TRAINING_TASKS else "cpu"), task
    gpu = clusters["gpu"]
    assert "gpu-ml" in gpu["spark_version"] and "cpu" not in gpu["spark_version"]
    conf = gpu["spark_conf"]
    assert conf["spark.task.resource.gpu.amount"] == "1"
    assert int(conf["spark.executor.resource.gpu.amount"]) >= 1
    assert conf["spark.python.worker.reuse"] == "false"


def test_one_variable_moves_training_back_to_the_cpu_cluster():
    assert set(_clusters("local")[1].values()) == {"cpu"}  # the local target sets training_cluster: cpu


def test_daily_refresh_job_reuses_the_weekly_tasks_without_training():
    """Two cadences: the daily job runs the weekly job's own ingest, features, batch_score and register
    (same files, same parameters, except that its features leave the training tables to the weekly job)
    and trains nothing; both are scheduled, paused outside prod."""
    bundle = load_bundle(REPO_ROOT)
    weekly, daily = bundle.job("fashionrec", "dev"), bundle.job("fashionrec_refresh", "dev")
    assert [t.key for t in daily.ordered()] == ["ingest", "features", "batch_score", "register"]
    same = {t.key: t for t in weekly.tasks}
    extra = {"features": ("--derived-tables", "false")}
    for task in daily.tasks:
        expected = (same[task.key].python_file, same[task.key].parameters + extra.get(task.key, ()))
        assert (task.python_file, task.parameters) == expected
    ingest = dict(zip(daily.tasks[0].parameters[::2], daily.tasks[0].parameters[1::2], strict=True))
    assert ingest["--file-source"] == "autoloader"
    local = bundle.job("fashionrec_refresh", "local").tasks[0].parameters
    assert local[local.index("--file-source") + 1] == "stream"
    doc = yaml.safe_load((REPO_ROOT / "resources" / "fashionrec_job.yml").read_text())["resources"]["jobs"]
    assert {doc[k]["schedule"]["quartz_cron_expression"] for k in doc} == {
        "${var.training_schedule}",
        "${var.refresh_schedule}",
    }
