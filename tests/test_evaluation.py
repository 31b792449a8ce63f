"""The evaluate task: baselines and the oracle on the test week, printed and logged to a real MLflow."""

from __future__ import annotations

import mlflow
import pytest

from fashionrec.config import EvaluateParams
from fashionrec.evaluation.task import run_evaluate


@pytest.fixture(scope="module")
def evaluation(spark, tiny_lake, tiny_data, tmp_path_factory):
    tables, _ = tiny_lake
    root = tmp_path_factory.mktemp("evaluate")
    params = EvaluateParams(
        lakehouse=tables.lakehouse,
        data_path=str(tiny_data),
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        reports_dir=str(root / "reports"),
    )
    return params, run_evaluate(params, spark)


def test_every_baseline_and_the_oracle_are_scored(evaluation):
    _, figures = evaluation
    methods = {row["method"] for row in figures["metrics"]}
    assert methods == {
        "popular_last_week",
        "decayed_popularity",
        "repurchase_then_popular",
        "repurchase_all_then_popular",
        "age_band_popular",
        "oracle",
    }
    rows = {row["method"]: row for row in figures["metrics"]}
    for row in rows.values():
        assert 0.0 <= row["map@12"] <= 1.0
        assert row["recall@12"] <= row["recall@100"] + 1e-12
    # The generator's true propensities must rank better than a list that ignores the customer.
    assert rows["oracle"]["map@12"] > rows["popular_last_week"]["map@12"]
    assert rows["oracle"]["share_of_oracle"] == pytest.approx(1.0)
    assert figures["customers_evaluated"] > 0


def test_metrics_chart_and_table_are_logged_to_mlflow(evaluation):
    params, figures = evaluation
    mlflow.set_tracking_uri(params.mlflow_tracking_uri)
    run = mlflow.get_run(figures["mlflow_run_id"])
    assert run.data.metrics["oracle.map_at_12"] == pytest.approx(figures["oracle_map@12"])
    assert run.data.params["split"] == "test"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"map_test.png", "metrics_test.json"} <= artifacts


def test_age_band_baseline_ranks_each_bands_sales_and_falls_back_for_unknown_ages(spark):
    from datetime import date

    from fashionrec.evaluation.baselines import age_band_popular
    from fashionrec.features.weeks import week_of

    day = date(2020, 9, 14)  # a sale in the week before the target week
    sales = [("young", "a"), ("young", "a"), ("young", "b"), ("old", "c"), ("nobody", "d")]
    transactions = spark.createDataFrame(
        [(day, c, a) for c, a in sales], "t_dat date, customer_id string, article_id string"
    )
    customers = spark.createDataFrame(
        [("young", 22.0), ("young_too", 24.0), ("old", 61.0), ("nobody", None), ("new", 23.0)],
        "customer_id string, age double",
    )
    lists = age_band_popular(transactions, customers, customers, week_of(date(2020, 9, 16)), 3, ["f1", "a"])
    assert lists["young_too"] == ["a", "b", "f1"]  # the 20-24 band's sales, then the fallback
    assert lists["new"] == ["a", "b", "f1"]
    assert lists["old"] == ["c", "f1", "a"]
    assert lists["nobody"] == ["f1", "a"]  # unknown age: the fallback only


def test_repurchase_baselines_look_back_twelve_weeks_or_the_whole_history(spark):
    """The 12-week list forgets an article bought half a year ago; the whole-history list keeps it, newest
    first; both then fill from their popular list."""
    from datetime import date, timedelta

    from fashionrec.evaluation.baselines import repurchase
    from fashionrec.features.weeks import week_of

    target = date(2020, 9, 16)
    bought = [(target - timedelta(days=7 * 26), "old"), (target - timedelta(days=3), "new")]
    transactions = spark.createDataFrame(
        [(day, "c1", a) for day, a in bought], "t_dat date, customer_id string, article_id string"
    )
    customers = spark.createDataFrame([("c1",), ("c2",)], "customer_id string")
    week = week_of(target)
    assert repurchase(transactions, customers, week, 3, ["p"])["c1"] == ["new", "p"]
    whole = repurchase(transactions, customers, week, 3, ["p", "new"], weeks_back=None)
    assert whole == {"c1": ["new", "old", "p"], "c2": ["p", "new"]}
