"""Each notebook runs top to bottom as a script against a real lakehouse.

Notebooks run in this process (`runpy`, as `__main__`) so they share the test session's Spark, the way a
notebook shares the cluster's: a fresh interpreter and JVM per notebook would only add start-up time.
"""

from __future__ import annotations

import runpy

from tests.conftest import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"


def run_notebook(path, monkeypatch, capsys, **parameters: str) -> str:
    """Run a notebook as a script with its widgets set through FASHIONREC_* variables; returns stdout."""
    assert path.read_text().startswith("# Databricks notebook source")
    for name, value in parameters.items():
        monkeypatch.setenv(f"FASHIONREC_{name.upper()}", value)
    runpy.run_path(str(path), run_name="__main__")
    return capsys.readouterr().out


def test_every_notebook_has_a_test():
    # call_recommender: in test_serving; rescore_backtest: in test_backtest (beside their fixtures)
    tested = {"explore_lakehouse.py", "compare_retrieval.py", "call_recommender.py", "rescore_backtest.py"}
    assert {p.name for p in NOTEBOOKS.glob("*.py")} == tested


def test_a_notebook_parameter_is_a_widget_on_databricks_and_an_environment_variable_locally(monkeypatch):
    from fashionrec.runner.widgets import widget_reader

    class Widgets:  # the two calls of Databricks' `dbutils.widgets` a notebook makes
        def __init__(self) -> None:
            self.values: dict[str, str] = {"epochs": "5"}

        def text(self, name: str, default: str) -> None:
            self.values.setdefault(name, default)

        def get(self, name: str) -> str:
            return self.values[name]

    monkeypatch.setenv("FASHIONREC_EPOCHS", "3")
    monkeypatch.delenv("FASHIONREC_SCHEMA", raising=False)
    local = widget_reader(None)
    assert (local("epochs", "2"), local("schema", "fashionrec")) == ("3", "fashionrec")
    dbutils = type("DBUtils", (), {"widgets": Widgets()})()
    on_databricks = widget_reader(dbutils)  # the widget wins over the environment there
    assert (on_databricks("epochs", "2"), on_databricks("schema", "fashionrec")) == ("5", "fashionrec")
    assert dbutils.widgets.values["schema"] == "fashionrec"  # the widget is created with its default


def test_every_notebook_finds_its_tables_through_the_same_three_widgets(monkeypatch):
    from fashionrec.runner.widgets import table_location, widget_reader

    monkeypatch.setenv("FASHIONREC_CATALOG", "main")
    monkeypatch.delenv("FASHIONREC_LAKEHOUSE", raising=False)
    monkeypatch.delenv("FASHIONREC_SCHEMA", raising=False)
    location = table_location(widget_reader(None), lakehouse="backtests/x/lakehouse")
    assert location == {"lakehouse": "backtests/x/lakehouse", "catalog": "main", "schema": "fashionrec"}
    for notebook in NOTEBOOKS.glob("*.py"):
        assert "**table_location(parameter" in notebook.read_text(), notebook.name


def test_explore_notebook_shows_tables_and_the_latest_evaluation(
    job_run, spark, monkeypatch, capsys, tmp_path
):
    out = run_notebook(
        NOTEBOOKS / "explore_lakehouse.py",
        monkeypatch,
        capsys,
        lakehouse=str(job_run / "lakehouse"),
        mlflow_tracking_uri=f"sqlite:///{job_run / 'mlflow.db'}",
        reports_dir=str(tmp_path),
    )
    assert "transactions" in out and "recommendations" in out and "version" in out
    assert "train_ranker run" in out and "full_pipeline" in out and "oracle" in out
    assert (tmp_path / "explore_map12.png").stat().st_size > 0


def test_compare_retrieval_notebook_trains_each_setting(tiny_lake, spark, monkeypatch, capsys, tmp_path):
    tables, _ = tiny_lake
    out = run_notebook(
        NOTEBOOKS / "compare_retrieval.py",
        monkeypatch,
        capsys,
        lakehouse=tables.lakehouse,
        epochs="1",
        reports_dir=str(tmp_path),
    )
    table = out[out.index("setting") :]
    for setting in ("defaults", "no log-Q correction", "256 random negatives", "best sellers"):
        assert setting in table
    assert (tmp_path / "retrieval_settings.png").stat().st_size > 0
