"""Walk-forward backtest: the pure scoring helpers by hand, and the task on the tiny data set."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from fashionrec.config import BacktestParams, TableLocator
from fashionrec.evaluation.metrics import average_precision_at_k
from fashionrec.evaluation.pooled import bootstrap_indices, choose, pooled, ratio, scores
from fashionrec.recommender.live import blend, live_lists, own_recent


def test_blend_puts_the_own_articles_first_without_repeats():
    assert blend(["a", "b", "c"], ["b", "x", "y", "z"], 2, 4) == ["a", "b", "x", "y"]
    assert blend([], ["x", "y"], 3, 12) == ["x", "y"]
    assert blend(["a", "a", "b"], ["a", "c"], 3, 12) == ["a", "b", "c"]


def test_live_lists_and_own_recent_articles():
    own, ranked, popular = ["a", "b"], ["x", "a", "y"], ["p", "q"]
    assert live_lists("pipeline", own, ranked, popular, 2) == ["x", "a"]
    assert live_lists("repurchase_then_popular", own, ranked, popular, 3) == ["a", "b", "p"]
    assert live_lists("repurchase_1_then_pipeline", own, ranked, popular, 3) == ["a", "x", "y"]
    with pytest.raises(ValueError, match="unknown live method"):
        live_lists("magic", own, ranked, popular, 3)
    history = [("old", 10), ("a", 150), ("b", 160), ("a", 155), ("c", 160), ("late", 200)]
    # window [200 - 84, 200): "old" is too old, "late" is not before the week; b and c tie on day, b
    # and c once each: by id; then a.
    assert own_recent(history, first_day=200, k=12) == ["b", "c", "a"]
    # The whole history keeps "old"; the whole-history baseline fills from last week's best sellers.
    assert own_recent(history, first_day=200, k=12, weeks=None) == ["b", "c", "a", "old"]
    everything = live_lists("repurchase_all_then_popular", own, ranked, popular, 4, ["a", "old"], ["w", "a"])
    assert everything == ["a", "old", "w"]


def test_the_bar_moves_to_the_other_baseline_only_when_it_is_surely_better():
    from fashionrec.ranking.choose import choose_live

    noisy = {
        "repurchase_then_popular": [0.1, 0.0, 0.2, 0.0],
        "repurchase_all_then_popular": [0.3, 0.0, 0.0, 0.1],
    }
    assert choose_live(noisy, "repurchase_then_popular", 2, 4, 0.9, 1000, 0)[0] == "repurchase_then_popular"
    steady = {
        "repurchase_then_popular": [0.1] * 40,
        "repurchase_all_then_popular": [0.2] * 40,
        "pipeline": [0.21] * 40,
    }
    live, why = choose_live(steady, "repurchase_then_popular", 2, 4, 0.9, 1000, 0)
    # The whole-history baseline is surely better, so it becomes the bar, and the ranker's small lift over
    # it (5%) is sure on these constant scores too.
    assert why.startswith("bar repurchase_all_then_popular") and live == "pipeline"
    assert choose_live({**steady, "pipeline": [0.0] * 40}, "repurchase_then_popular", 2, 4, 0.9, 1000, 0)[
        0
    ] == ("repurchase_all_then_popular")


def test_scores_count_missing_predictions_as_empty():
    actual = {"c1": ["a"], "c2": ["b", "c"], "c3": []}
    assert scores(actual, {"c1": ["a", "z"]}) == {"c1": 1.0, "c2": 0.0}


def test_pooled_mean_interval_and_paired_ratio():
    indices = bootstrap_indices(4, 2000, seed=0)
    p = pooled([0.0, 1.0, 0.0, 1.0], indices)
    assert p.mean == 0.5 and 0.0 <= p.low < 0.5 < p.high <= 1.0 and p.n == 4
    r = ratio([0.2, 0.4, 0.2, 0.4], [0.1, 0.2, 0.1, 0.2], indices)
    assert r.mean == pytest.approx(2.0) and r.low == pytest.approx(2.0) and r.high == pytest.approx(2.0)


def test_choose_keeps_the_default_unless_the_lift_is_sure():
    noisy = {"base": [0.1, 0.0, 0.2, 0.0], "model": [0.3, 0.0, 0.0, 0.1]}  # higher mean, not sure
    assert choose(noisy, "base", minimum=2, weeks=1)[0] == "base"  # too few weeks
    live, why = choose(noisy, "base", minimum=2, weeks=4)
    assert live == "base" and "not sure" in why
    steady = {"base": [0.1] * 40, "model": [0.2] * 40}
    assert choose(steady, "base", minimum=2, weeks=4)[0] == "model"
    assert choose({"base": [0.2], "model": [0.2]}, "base", minimum=1, weeks=1)[0] == "base"


@pytest.fixture(scope="module")
def backtest(spark, tiny_ingest, tmp_path_factory):
    import shutil

    from fashionrec.backtest.task import run_backtest

    source, _ = tiny_ingest
    root = tmp_path_factory.mktemp("backtest")
    for table in ("articles", "customers", "transactions", "article_availability"):
        if (source / table).exists():
            shutil.copytree(source / table, root / "lakehouse" / table)
    params = BacktestParams(
        lakehouse=str(root / "lakehouse"),
        weeks=2,
        validation_weeks=0,
        min_choice_weeks=1,
        train_weeks=1,
        rounds=30,
        # Fewer candidate sources keep the test's Spark plans small; the sources are tested in test_ranking.
        same_product_candidates=0,
        age_band_candidates=0,
        visual_candidates=0,
        objective="binary:logistic",
        already_bought_weeks=0,
        data_path=str(root / "no-truth"),
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        reports_dir=str(root / "reports"),
        artifacts_dir=str(root / "artifacts"),
        bootstrap_samples=200,
        ranker_seeds=2,
    )
    return params, run_backtest(params, spark)


def test_backtest_reports_every_method_pooled_and_per_week(backtest):
    params, figures = backtest
    assert len(figures["reported_weeks"]) == 2 and figures["validation_weeks"] == []
    methods = {row["method"] for row in figures["pooled"]}
    assert {"repurchase_then_popular", "pipeline", "live", "popular_last_week"} <= methods
    assert {f"repurchase_{c}_then_pipeline" for c in params.cutoffs} <= methods
    assert len(figures["per_week"]) == 2
    written = json.loads((Path(params.reports_dir) / "backtest.json").read_text())
    assert written["customer_weeks"] == figures["customer_weeks"] > 0
    rates = figures["candidate_hit_rate"]
    assert rates and all(0 <= r <= 1 for r in rates.values())
    assert rates["repurchase"] > 0  # tiny's shoppers buy again: some repurchase candidate is bought
    # The two-tower source is served from towers trained as of the first frame week, on earlier purchases.
    (trained,) = figures["two_tower_trainings"]
    assert written["two_tower_trainings"] == figures["two_tower_trainings"]
    assert trained["as_of"] < min(figures["reported_weeks"]) and trained["training_examples"] > 0
    assert "two_tower" in figures["candidate_recall"]
    fold = Path(params.artifacts_dir) / "backtest" / figures["reported_weeks"][0]
    assert (fold / "retrieval" / "index.npz").exists() and (fold / "retrieval" / "towers").is_dir()


def test_backtest_lists_rescore_to_the_reported_figures(spark, backtest):
    """Anyone can re-score the stored lists: pooled MAP@12 from the table equals the report."""
    from fashionrec.features.weeks import week_of
    from fashionrec.lake.tables import read_table
    from fashionrec.ranking.frames import week_truth

    params, figures = backtest
    tables = TableLocator(lakehouse=params.lakehouse)
    lists = read_table(spark, tables, "backtest_lists")
    tx = read_table(spark, tables, "transactions")
    by_method: dict[str, list[float]] = {}
    for day in figures["reported_weeks"]:
        actual = {
            r["customer_id"]: list(r["article_ids"])
            for r in week_truth(tx, week_of(date.fromisoformat(day))).collect()
        }
        for row in lists.where(f"test_week = '{day}'").collect():
            ap = average_precision_at_k(actual[row["customer_id"]], row["article_ids"], 12)
            by_method.setdefault(row["method"], []).append(ap)
    pooled_table = {row["method"]: row["map@12"] for row in figures["pooled"]}
    for method in ("repurchase_then_popular", "pipeline", "live"):
        assert np.mean(by_method[method]) == pytest.approx(pooled_table[method], abs=1e-5), method


def test_a_backtest_weeks_live_lists_are_the_served_models_answers(spark, backtest, tmp_path):
    """For a sample of a reported week's buyers, the backtest's `live` list is what the served model (the
    pyfunc, loaded with that fold's ranker and pipeline config and a snapshot as of the week) answers
    for them `as_of` that week: every offline list of a servable method comes from the served code."""
    from types import SimpleNamespace

    import pandas as pd

    from fashionrec.backtest.task import fold_folder
    from fashionrec.lake.tables import pin_tables, read_table
    from fashionrec.ranking.frames import global_inputs
    from fashionrec.ranking.task import OPTIONAL_INPUTS
    from fashionrec.recommender.layout import CONFIG_FILE
    from fashionrec.recommender.pipeline import PipelineConfig
    from fashionrec.serving.pyfunc import RecommenderModel
    from fashionrec.snapshot.build import customer_rows, purchase_rows, write_global_part, write_rows
    from fashionrec.weeks import week_of

    params, figures = backtest
    day = figures["reported_weeks"][-1]
    week, fold = week_of(date.fromisoformat(day)), fold_folder(params, week_of(date.fromisoformat(day)))
    config = PipelineConfig.from_dict(json.loads((fold / CONFIG_FILE).read_text()))
    assert config.live.name == figures["live_choices"][day]["live"]
    tables = TableLocator(lakehouse=params.lakehouse)
    pinned, _ = pin_tables(spark, tables, ("transactions", "customers", "articles"), OPTIONAL_INPUTS)
    inputs = global_inputs(pinned)
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    write_global_part(inputs, week, config.to_dict(), snapshot)
    write_rows(
        customer_rows(inputs.global_tx, inputs.customers, inputs.articles, week), snapshot, "customers"
    )
    write_rows(purchase_rows(inputs.global_tx, week), snapshot, "purchases")
    model = RecommenderModel()
    model.load_context(SimpleNamespace(artifacts={"snapshot": str(snapshot), "models": str(fold)}))

    stored = read_table(spark, tables, "backtest_lists").where(f"test_week = '{day}' AND method = 'live'")
    live = {r["customer_id"]: list(r["article_ids"]) for r in stored.collect()}
    sample = sorted(live)[:40]
    assert len(sample) >= 10
    answers = model.predict(None, pd.DataFrame({"customer_id": sample, "as_of": [day] * len(sample)}))
    assert list(answers["id"]) == sample
    for customer, articles in zip(answers["id"], answers["article_ids"], strict=True):
        assert list(articles) == live[customer], customer


def test_live_method_is_chosen_on_earlier_weeks_only(backtest):
    _, figures = backtest
    choices = figures["live_choices"]
    first = min(choices)
    assert choices[first]["live"] == "repurchase_then_popular"  # no earlier week: the default
    assert all(c["live"] != "oracle" for c in choices.values())
    assert all(not c["live"].startswith("pipeline_seed") for c in choices.values())


def test_backtest_reports_the_pipeline_of_each_ranker_seed(backtest):
    """ranker_seeds=2: the pipeline refitted with seed 43 is scored beside it, and the spread names both."""
    _, figures = backtest
    lifts = {row["method"]: row["x repurchase_then_popular"] for row in figures["pooled"]}
    assert "pipeline_seed43" in lifts
    values = [float(lifts[m].split()[0]) for m in ("pipeline", "pipeline_seed43")]
    spread = figures["pipeline_seed_spread"]
    assert spread.startswith(f"{min(values):.2f}-{max(values):.2f}x") and spread.endswith("(2 seeds)")


def test_seed_spread_by_hand():
    from types import SimpleNamespace

    from fashionrec.backtest.task import _seed_spread

    lift = {
        m: SimpleNamespace(mean=v) for m, v in {"pipeline": 1.2, "pipeline_seed43": 0.9, "live": 3.0}.items()
    }
    assert _seed_spread(lift, ["pipeline", "pipeline_seed43", "live"]) == "0.90-1.20x, mean 1.05x (2 seeds)"
    assert _seed_spread(lift, ["pipeline", "live"]) is None


def test_rescore_notebook_reproduces_the_report_from_the_table(
    spark, backtest, monkeypatch, capsys, tmp_path
):
    """notebooks/rescore_backtest.py scores `backtest_lists` from the table and the transactions alone."""
    from tests.test_notebooks import NOTEBOOKS, run_notebook

    params, figures = backtest
    out = run_notebook(
        NOTEBOOKS / "rescore_backtest.py",
        monkeypatch,
        capsys,
        lakehouse=params.lakehouse,
        last_weeks=str(len(figures["reported_weeks"])),
        reports_dir=str(tmp_path),
    )
    # The pooled table's rows: "<method> <map@12> <95% interval> <lift> (<interval>)".
    row = re.compile(r"^\s*(\S+) +(\d\.\d+) +\d\.\d+-\d\.\d+ ", re.MULTILINE)
    printed = {method: float(value) for method, value in row.findall(out)}
    reported = {row["method"]: row["map@12"] for row in figures["pooled"]}
    for method in ("pipeline", "live", "repurchase_then_popular"):
        assert printed[method] == pytest.approx(reported[method], abs=1e-5), (method, out)
    assert "interleave_pipeline_baseline" in out and "(AP@12" in out
    assert (tmp_path / "backtest_rescored.png").stat().st_size > 0
