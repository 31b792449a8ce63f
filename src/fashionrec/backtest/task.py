"""Task `backtest`: walk-forward evaluation of every method over the last K weeks.

For each fold week W (the `validation_weeks` before the reported `weeks`, then the reported ones):
- features as of each week use only purchases before it (the features package's point-in-time functions);
- candidates, filters and ranker features come from the recommender core that batch scoring and serving
  run (`ranking.frames.week_frame`), so the backtest measures the pipeline that is shipped;
- the ranker learns from the `train_weeks` weeks before W-1 and stops early, picks its objective and the
  already-bought window on W-1; it ranks W's buyers;
- the baselines, blends of "own recent articles first, then the ranker", and the oracle (synthetic data)
  are scored on the same buyers;
- the live method of W is the best by pooled MAP@k over the folds before W (`backtest.scoring.choose`), so
  its score on W is out of sample: the safety net is measured, not assumed.
Every fold's lists go to the Delta table `backtest_lists` (test_week, method, customer_id, article_ids).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config import BacktestParams, Tables
from fashionrec.evaluation.pooled import Pooled, bootstrap_indices, pooled, ratio, scores
from fashionrec.evaluation.report import save_figure
from fashionrec.evaluation.task import BASELINES, baseline_methods, oracle_method
from fashionrec.features.article import article_features
from fashionrec.features.weeks import first_day, week_col
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import overwrite_table, pin_tables
from fashionrec.ranking.choose import Fitted, choose_live, fit_and_choose, ranker_choices, with_positives
from fashionrec.ranking.frames import (
    WeekInputs,
    candidate_frame,
    candidate_hit_rate,
    open_week,
    week_lists,
    week_truth,
)
from fashionrec.ranking.model import fit
from fashionrec.ranking.task import OPTIONAL_INPUTS, served_lengths, write_config
from fashionrec.recommender.layout import FEATURES, RANKER_DIR
from fashionrec.recommender.live import BASELINE, PIPELINE, LiveChoice, live_methods
from fashionrec.recommender.pipeline import PipelineConfig
from fashionrec.training.tracking import metric_name, tracked_run
from fashionrec.training.tuning import absolute_tracking_uri

log = logging.getLogger(__name__)

LIVE = "live"
# Each reported week's best baseline on that week's buyers (chosen after the fact: a bar no method could
# pick in advance); every lift is also given against it.
BEST_BASELINE = "best_baseline"
# The pipeline refitted with other seeds (`ranker_seeds`): reported, never chosen as the live method.
SEED_PREFIX = "pipeline_seed"
Lists = dict[str, list[str]]


def _fit_fold(
    params: BacktestParams,
    frames: dict[int, pd.DataFrame],
    truths: dict[int, Lists],
    week: int,
    seeds: Sequence[int],
) -> dict[int, tuple[Fitted | None, dict[str, Any]]]:
    """The fold's ranker for each seed (XGBoost's row and column sampling), all on one training set: trained
    on the weeks before W-1, early stopping and choices on W-1 (`ranking.choose.fit_and_choose`, as in
    train_ranker)."""
    train_weeks = [w for w in range(week - 1 - params.train_weeks, week - 1) if w in frames]
    valid_week = week - 1
    if not train_weeks or valid_week not in frames:
        return {seed: (None, {"why": "not enough earlier weeks with buyers"}) for seed in seeds}
    train = with_positives(pd.concat([frames[w] for w in train_weeks], ignore_index=True))
    valid = frames[valid_week]
    positives = with_positives(valid)
    if train.empty or positives.empty:
        why = "no purchase among the candidates of the training or validation weeks"
        return {seed: (None, {"why": why}) for seed in seeds}
    settings = ranker_choices(params)[0]
    fits: dict[int, tuple[Fitted | None, dict[str, Any]]] = {}
    for seed in seeds:
        booster = replace(settings, seed=seed)
        fitted, _ = fit_and_choose(
            params,
            valid,
            truths[valid_week],
            lambda objective, booster=booster: fit(train, positives, FEATURES, objective, booster),
        )
        chosen = {
            "objective": fitted.ranker.objective,
            "already_bought_weeks": fitted.window,
            "rounds": fitted.rounds,
            "train_rows": len(train),
            "val_map": round(fitted.val_map, 5),
        }
        fits[seed] = (fitted, chosen)
    return fits


def fold_folder(params: BacktestParams, week: int) -> Path:
    """Where a fold's ranker and pipeline config are kept, laid out as the artifacts folder is
    (`ranking/ranker`, `ranking/pipeline.json`): the model that fold would have served."""
    return Path(params.artifacts_dir) / "backtest" / str(first_day(week))


def with_towers(source: Path, fold: Path) -> None:
    """The fold's folder gets the towers and index its week was served with (when the two-tower source is
    on), so that it holds all the served model of that fold needs."""
    towers = source / "retrieval"
    if source.resolve() != fold.resolve() and towers.is_dir():
        shutil.rmtree(fold / "retrieval", ignore_errors=True)
        shutil.copytree(towers, fold / "retrieval")


def _fold_methods(
    params: BacktestParams,
    snapshot: dict[str, DataFrame],
    frames: dict[int, pd.DataFrame],
    truths: dict[int, Lists],
    inputs: WeekInputs,
) -> tuple[dict[str, Lists], PipelineConfig, dict[str, Any]]:
    """Every method's top-k for the buyers of the fold's week: the servable ones as the core answers
    them with the fold's ranker (`ranking.frames.week_lists`; the baseline too, with the business
    rules), the Spark baselines, the oracle; and the fold's pipeline config (its already-bought window;
    the caller chooses the live method)."""
    week = inputs.week
    spark = snapshot[Tables.TRANSACTIONS].sparkSession
    tx, customers = snapshot[Tables.TRANSACTIONS], snapshot[Tables.CUSTOMERS]
    buyers = sorted(truths[week])
    targets = spark.createDataFrame([(c,) for c in buyers], "customer_id string")
    methods: dict[str, Lists] = dict(baseline_methods(tx, customers, targets, week, params.k))
    first = ranker_choices(params)[0].seed  # the settings' own seed: the pipeline's ranker
    seeds = range(first, first + params.ranker_seeds)
    fits = _fit_fold(params, frames, truths, week, seeds)
    fitted, chosen = fits[first]
    folder = fold_folder(params, week)
    with_towers(inputs.artifacts_dir, folder)
    config = PipelineConfig.of(params, fitted.window if fitted else 0)
    if fitted is None:  # no ranker: every servable method is the baseline as served
        served = week_lists(inputs, config, None, {BASELINE: params.k})
        methods |= dict.fromkeys(live_methods(params.cutoffs), served[BASELINE])
    else:
        ranker_dir = fitted.ranker.save(folder / RANKER_DIR)
        methods |= week_lists(inputs, config, ranker_dir, served_lengths(params))
    for seed in seeds[1:]:
        other, _ = fits[seed]
        if other is None:
            methods[f"{SEED_PREFIX}{seed}"] = methods[PIPELINE]
            continue
        other_dir = other.ranker.save(folder / f"seed{seed}" / RANKER_DIR)
        other_config = PipelineConfig.of(params, other.window)
        lists = week_lists(inputs, other_config, other_dir, {PIPELINE: params.k})
        methods[f"{SEED_PREFIX}{seed}"] = lists[PIPELINE]
    oracle = oracle_method(params.data_path, tx, targets, week, params.k)
    if oracle is not None:
        methods["oracle"] = oracle
    return methods, config, chosen


class FoldTowers:
    """The artifacts folder each week's snapshot reads the two-tower source from: with the source on,
    towers trained as of the latest retraining week at or before it (`retrieval.as_of`), trained when first
    needed; with it off, the task's artifacts folder."""

    def __init__(self, params: BacktestParams, snapshot: dict[str, DataFrame], first_week: int) -> None:
        self.params, self.snapshot, self.first_week = params, snapshot, first_week
        self.trained: dict[int, Path] = {}
        self.trainings: list[dict[str, Any]] = []

    def artifacts_for(self, week: int) -> Path:
        params = self.params
        if params.two_tower_candidates == 0:
            return Path(params.artifacts_dir)
        every = params.two_tower_retrain_weeks
        start = self.first_week + (week - self.first_week) // every * every
        if start not in self.trained:
            from fashionrec.retrieval.as_of import train_towers_as_of  # imports TensorFlow
            from fashionrec.retrieval.train import HyperParams

            folder = Path(params.artifacts_dir) / "backtest" / "towers" / str(first_day(start))
            figures = train_towers_as_of(
                self.snapshot[Tables.TRANSACTIONS],
                self.snapshot[Tables.CUSTOMERS],
                self.snapshot[Tables.ARTICLES],
                start,
                folder,
                HyperParams(epochs=params.two_tower_epochs),
                params.two_tower_train_weeks,
                params.seed,
            )
            self.trainings.append({"as_of": str(first_day(start)), **figures})
            print(
                f"  backtest: towers as of {first_day(start)}: {figures['training_examples']} purchases, "
                f"{figures['seconds']} s",
                flush=True,
            )
            self.trained[start] = folder
        return self.trained[start]


def _weekly_frames(
    params: BacktestParams,
    snapshot: dict[str, DataFrame],
    weeks: list[int],
    keep: set[int],
    towers: FoldTowers,
) -> tuple[dict[int, pd.DataFrame], dict[int, Lists], dict[int, dict[str, float]], dict[int, WeekInputs]]:
    """Labelled candidate rows and the buyers' purchases of each week (features as of that week); the
    snapshots of the `keep` weeks with buyers stay open for their lists (the caller closes them)."""
    spark = snapshot[Tables.TRANSACTIONS].sparkSession
    tx = snapshot[Tables.TRANSACTIONS]
    config = PipelineConfig.of(params, already_bought_weeks=0)
    frames, truths, recalls, kept = {}, {}, {}, {}
    for position, week in enumerate(weeks, 1):
        truth = week_truth(tx, week).persist()
        inputs = open_week(spark, snapshot, week, truth, config, towers.artifacts_for(week))
        try:
            if inputs.actual:
                frame, recall, _ = candidate_frame(inputs, params.random_negatives, params.seed)
                frames[week], truths[week], recalls[week] = frame, inputs.actual, recall
        finally:
            if week in keep and inputs.actual:
                kept[week] = inputs
            else:
                inputs.close()
        truth.unpersist()
        print(
            f"  backtest: candidates of week {first_day(week)} ({position}/{len(weeks)}), "
            f"{len(inputs.actual)} buyers",
            flush=True,
        )
    return frames, truths, recalls, kept


def _chart(
    per_week: pd.DataFrame,
    summary: dict[str, dict[str, float]],
    sources: pd.DataFrame,
    path: Path,
    k: int,
) -> Path:
    """Per-week MAP@k, pooled MAP@k with intervals, and each candidate source's recall beside its hit
    rate (`sources`: one row per source, columns `recall` and `hit_rate`)."""
    shown = [m for m in (BASELINE, PIPELINE, LIVE, "popular_last_week") if m in per_week.columns]
    fig, (left, right, third) = plt.subplots(
        1, 3, figsize=(19, 4.8), gridspec_kw={"width_ratios": [1.2, 1, 1]}
    )
    for method in shown:
        left.plot(per_week.index, per_week[method], marker="o", label=method)
    left.set_title(f"MAP@{k} per test week")
    left.tick_params(axis="x", rotation=45)
    left.legend()
    names = sorted(summary, key=lambda m: summary[m]["map"])
    means = [summary[m]["map"] for m in names]
    errors = [
        [summary[m]["map"] - summary[m]["low"] for m in names],
        [summary[m]["high"] - summary[m]["map"] for m in names],
    ]
    colours = [
        "#d62728" if m == LIVE else "#7f7f7f" if m in (BASELINE, BEST_BASELINE) else "#1f77b4" for m in names
    ]
    right.barh(names, means, xerr=errors, color=colours, capsize=3)
    right.set_title(f"pooled MAP@{k}, 95% bootstrap interval")
    # Two scales: on real data a source finds a few % of the purchases, and under 1% of its candidates sell.
    rows = np.arange(len(sources))
    third.barh(rows - 0.2, sources["recall"], height=0.4, color="#1f77b4")
    third.set_xlabel("recall: share of the purchases it proposed", color="#1f77b4")
    rate = third.twiny()
    rate.barh(rows + 0.2, sources["hit_rate"], height=0.4, color="#ff7f0e")
    rate.set_xlabel("hit rate: share of its candidates bought", color="#ff7f0e")
    third.set_yticks(rows, sources.index)
    third.set_title("candidate sources, reported weeks", pad=32)
    return save_figure(fig, path)


def _mean(values: dict[str, float]) -> float:
    return float(np.mean(list(values.values()))) if values else 0.0


def _lift_text(lift: Pooled) -> str:
    return f"{lift.mean:.2f}x ({lift.low:.2f}–{lift.high:.2f})"


def _seed_spread(lift: dict[str, Any], names: list[str]) -> str | None:
    """The pipeline's lift over the baseline for each ranker seed, e.g. "1.03-1.17x, mean 1.09x (5 seeds)":
    on a few hundred customer-weeks the seed alone moves it as far as a setting does (docs/journal.md).
    None with one seed."""
    values = [lift[PIPELINE].mean] + [lift[m].mean for m in names if m.startswith(SEED_PREFIX)]
    if len(values) < 2:
        return None
    return f"{min(values):.2f}-{max(values):.2f}x, mean {np.mean(values):.2f}x ({len(values)} seeds)"


def _lists_frame(spark: SparkSession, folds: dict[int, dict[str, Lists]], k: int) -> DataFrame:
    rows = [
        (first_day(week), method, customer, list(ids[:k]))
        for week, methods in folds.items()
        for method, lists in methods.items()
        for customer, ids in lists.items()
    ]
    return spark.createDataFrame(
        rows, "test_week date, method string, customer_id string, article_ids array<string>"
    )


def run_backtest(params: BacktestParams, spark: SparkSession | None = None) -> dict[str, Any]:
    spark = spark or get_spark("fashionrec-backtest")
    started = time.perf_counter()
    snapshot, versions = pin_tables(
        spark, params.tables, (Tables.TRANSACTIONS, Tables.CUSTOMERS, Tables.ARTICLES), OPTIONAL_INPUTS
    )
    tx = snapshot[Tables.TRANSACTIONS]
    last = tx.agg(F.max(week_col(F.col("t_dat")))).first()[0]
    folds = list(range(last - params.weeks - params.validation_weeks + 1, last + 1))
    reported = folds[-params.weeks :]
    frame_weeks = list(range(folds[0] - params.train_weeks - 1, last + 1))
    # Every week's article features in one pass (each as of its own week), not one pass per week.
    features = article_features(
        tx, snapshot[Tables.CUSTOMERS], snapshot[Tables.ARTICLES], frame_weeks
    ).persist()
    towers = FoldTowers(params, snapshot, frame_weeks[0])
    try:
        frames, truths, recalls, open_weeks = _weekly_frames(
            params, {**snapshot, Tables.ARTICLE_FEATURES: features}, frame_weeks, set(folds), towers
        )
    finally:
        features.unpersist()
    try:
        return _run_folds(
            params,
            snapshot,
            versions,
            folds,
            reported,
            frames,
            truths,
            recalls,
            open_weeks,
            started,
            towers.trainings,
        )
    finally:
        for inputs in open_weeks.values():
            inputs.close()


def _run_folds(
    params: BacktestParams,
    snapshot: dict[str, DataFrame],
    versions: dict[str, int],
    folds: list[int],
    reported: list[int],
    frames: dict[int, pd.DataFrame],
    truths: dict[int, Lists],
    recalls: dict[int, dict[str, float]],
    open_weeks: dict[int, WeekInputs],
    started: float,
    trainings: list[dict[str, Any]],
) -> dict[str, Any]:
    """Each fold's lists and live choice in week order, then the pooled report (with the folds' tower
    `trainings`, when the two-tower source is on)."""
    spark = snapshot[Tables.TRANSACTIONS].sparkSession

    per_fold: dict[int, dict[str, Lists]] = {}
    fold_scores: dict[int, dict[str, dict[str, float]]] = {}
    choices: dict[str, Any] = {}
    servable = live_methods(params.cutoffs)
    for week in folds:
        if week not in open_weeks:
            continue
        methods, config, chosen = _fold_methods(params, snapshot, frames, truths, open_weeks[week])
        earlier = [w for w in folds if w < week and w in fold_scores]
        # Only what the served model can answer is chosen: the live methods, as the core answers them.
        candidates = {m: [s for w in earlier for s in fold_scores[w][m].values()] for m in servable}
        live, why = choose_live(
            candidates,
            params.default_method,
            params.min_choice_weeks,
            len(earlier),
            params.live_confidence,
            params.bootstrap_samples,
            params.seed,
        )
        methods[LIVE] = methods[live]
        write_config(replace(config, live=LiveChoice(live, why)), fold_folder(params, week))
        per_fold[week] = methods
        fold_scores[week] = {m: scores(truths[week], lists, params.k) for m, lists in methods.items()}
        choices[str(first_day(week))] = {"live": live, "why": why, "ranker": chosen}
        print(f"  backtest: week {first_day(week)}: live = {live} ({why})", flush=True)

    weeks_done = [w for w in reported if w in fold_scores]
    best_of_week = {}
    for w in weeks_done:  # the bar of each week: its best baseline on that week's buyers
        best_of_week[str(first_day(w))] = best = max(BASELINES, key=lambda m: _mean(fold_scores[w][m]))
        fold_scores[w][BEST_BASELINE] = fold_scores[w][best]
    names = list(fold_scores[weeks_done[-1]])
    pooled_values = {m: [s for w in weeks_done for s in fold_scores[w][m].values()] for m in names}
    indices = bootstrap_indices(len(pooled_values[BASELINE]), params.bootstrap_samples, params.seed)
    summary = {}
    for method, values in pooled_values.items():
        p = pooled(values, indices)
        summary[method] = {"map": p.mean, "low": p.low, "high": p.high}
    lift = {m: ratio(pooled_values[m], pooled_values[BASELINE], indices) for m in names if m != BASELINE}
    over_best = {m: ratio(pooled_values[m], pooled_values[BEST_BASELINE], indices) for m in names}
    per_week = pd.DataFrame(
        {m: [float(np.mean(list(fold_scores[w][m].values()))) for w in weeks_done] for m in names},
        index=[str(first_day(w)) for w in weeks_done],
    )

    version = overwrite_table(_lists_frame(spark, per_fold, params.k), params.tables, Tables.BACKTEST_LISTS)
    reports = Path(params.reports_dir)
    recall = pd.DataFrame([recalls[w] for w in weeks_done if w in recalls]).mean().round(4).to_dict()
    hit_rate = candidate_hit_rate(pd.concat([frames[w] for w in weeks_done if w in frames]))
    sources = pd.DataFrame({"recall": recall, "hit_rate": hit_rate}).reindex(list(hit_rate))
    chart = _chart(per_week, summary, sources, reports / "backtest.png", params.k)
    key = f"map@{params.k}"
    table = [
        {
            "method": m,
            key: round(summary[m]["map"], 5),
            "ci95": f"{summary[m]['low']:.4f}–{summary[m]['high']:.4f}",
            f"x {BASELINE}": "1.00"
            if m == BASELINE
            else f"{lift[m].mean:.2f} ({lift[m].low:.2f}–{lift[m].high:.2f})",
            "x best baseline": f"{over_best[m].mean:.2f} ({over_best[m].low:.2f}–{over_best[m].high:.2f})",
        }
        for m in sorted(names, key=lambda m: -summary[m]["map"])
    ]
    result = {
        "data": params.data_path,
        "reported_weeks": [str(first_day(w)) for w in weeks_done],
        "validation_weeks": [str(first_day(w)) for w in folds if w not in reported and w in fold_scores],
        "customer_weeks": len(pooled_values[BASELINE]),
        "pooled": table,
        "per_week": per_week.round(5).reset_index(names="week").to_dict("records"),
        "live_choices": choices,
        "live_vs_baseline": _lift_text(lift[LIVE]),
        "pipeline_vs_baseline": _lift_text(lift[PIPELINE]),
        "live_vs_best_baseline": _lift_text(over_best[LIVE]),
        "pipeline_vs_best_baseline": _lift_text(over_best[PIPELINE]),
        "best_baseline_of_week": best_of_week,
        "pipeline_seed_spread": _seed_spread(lift, names),
        "candidate_recall": recall,
        "candidate_hit_rate": hit_rate,
        "backtest_lists_version": version,
        "chart": str(chart),
        **({"two_tower_trainings": trainings} if trainings else {}),
    }
    (reports / "backtest.json").write_text(json.dumps(result, indent=2, default=str))
    with tracked_run(
        absolute_tracking_uri(params.mlflow_tracking_uri), params.experiment, "backtest", {"task": "backtest"}
    ) as run:
        mlflow.log_params({f"version.{t}": v for t, v in versions.items()})
        mlflow.log_params(
            {k: v for k, v in asdict(params).items() if k not in ("lakehouse", "catalog", "schema")}
        )
        for method, values in summary.items():
            mlflow.log_metrics({metric_name(method, key, name): v for name, v in values.items()})
        for step in range(len(weeks_done)):
            mlflow.log_metrics(
                {metric_name(m, key, "week"): float(per_week.iloc[step][m]) for m in names}, step=step
            )
        mlflow.log_artifact(str(chart))
        mlflow.log_artifact(str(reports / "backtest.json"))
        result["mlflow_run_id"] = run.info.run_id
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result
