"""Task `train_ranker`: candidates and features for the training weeks, the validation week and the test
week; XGBoost ranker (objective and already-bought window chosen on validation); the live method chosen on
validation buyers; MAP@12 of the served lists on the test week beside every baseline and the oracle.

Weeks: the two-tower model is trained on purchases before the validation week, so its scores are
in-sample on earlier weeks (more confident than on unseen ones) and honest on the validation week. The
ranker therefore learns from 70% of the validation week's buyers (labels: what they bought that week)
and stops early, picks its objective and the already-bought window on the other 30% (`ranking.choose`),
and the live method is chosen on them too; it is judged on the test week. `train_weeks` adds earlier
target weeks, without the two-tower's in-sample rank and score (`without_in_sample_two_tower`): the ranker
learns the other signals from every week and how far to trust the two-tower from the validation week
alone.

Every list of a servable method (the ranker's, the blends, the baseline as served, the fallback) is the
core's answer (`ranking.frames.week_lists`), so the figures are those of the code that is served.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
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

from fashionrec.config import RankingParams, Tables
from fashionrec.evaluation.pooled import scores
from fashionrec.evaluation.report import map_bar_chart, metric_rows, save_figure
from fashionrec.evaluation.task import BASELINES, baseline_methods, evaluate_methods, oracle_method
from fashionrec.features.splits import Splits
from fashionrec.features.weeks import before_week, first_day
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import overwrite_table, pin_tables
from fashionrec.ranking.choose import (
    Fitted,
    choose_live,
    fit_and_choose,
    ranked_lists,
    ranker_choices,
    with_positives,
)
from fashionrec.ranking.frames import (
    WeekInputs,
    candidate_frame,
    candidate_hit_rate,
    cold_start_reach,
    open_week,
    sources_where,
    week_frame,
    week_lists,
    week_truth,
)
from fashionrec.ranking.model import fit, fit_distributed
from fashionrec.recommender.layout import ABSENT_RANK, CONFIG_FILE, FEATURES, QUALITY_FILE, RANKER_DIR
from fashionrec.recommender.live import BASELINE, PIPELINE, LiveChoice, live_methods
from fashionrec.recommender.pipeline import PipelineConfig
from fashionrec.recommender.rank import rank_frame
from fashionrec.recommender.ranker import Ranker
from fashionrec.training.tracking import metric_name, tracked_run
from fashionrec.training.tuning import absolute_tracking_uri

__all__ = ["CONFIG_FILE", "QUALITY_FILE", "RANKER_DIR", "run_train_ranker"]
RECALL_DEPTH = 100  # the ranker's list is scored to this depth too (recall@100: candidate quality)


def _sample(truth: DataFrame, n: int, seed: int) -> DataFrame:
    return truth.orderBy(F.xxhash64("customer_id", F.lit(seed))).limit(n)


def without_in_sample_two_tower(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of a week the two-tower model trained on, without what it knows in sample: candidates only it
    proposed are dropped and its rank and score become "not proposed". The ranker then learns how far to
    trust the two-tower from the validation week alone (out of sample), and everything else from every
    training week."""
    out = frame[~sources_where(frame, lambda s: list(s) == ["two_tower"])].copy()
    out["rank_two_tower"] = float(ABSENT_RANK)
    out["score_two_tower"] = np.nan
    out["n_sources"] = out["sources"].map(lambda s: float(len([x for x in s if x != "two_tower"])))
    out["sources"] = out["sources"].map(lambda s: [x for x in s if x != "two_tower"])
    return out


def _customer_share(customers: pd.Series, share: float, seed: int) -> pd.Series:
    """A stable pseudo-random `share` of customers (by a hash of id and seed)."""
    hashed = pd.util.hash_pandas_object(customers + f"/{seed}", index=False).to_numpy()
    return pd.Series((hashed % 10_000) < share * 10_000, index=customers.index)


def importance_chart(ranker: Ranker, path: Path) -> Path:
    gain = sorted(ranker.importance().items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(gain) + 1.2))
    ax.barh([k for k, _ in gain], [v for _, v in gain], color="#1f77b4")
    ax.set_xlabel("total gain")
    ax.set_title(f"XGBoost ranker feature importance ({ranker.objective})")
    return save_figure(fig, path)


RANKING_INPUTS = (
    Tables.TRANSACTIONS,
    Tables.CUSTOMERS,
    Tables.ARTICLES,
    Tables.ARTICLE_FEATURES,
    Tables.SPLITS,
    Tables.GROUND_TRUTH,
)
OPTIONAL_INPUTS = (Tables.ARTICLE_AVAILABILITY, Tables.SIMILAR_ARTICLES)


def live_choice(
    params: RankingParams, actual: dict[str, list[str]], methods: dict[str, dict[str, list[str]]]
) -> LiveChoice:
    """The live method on the validation buyers that did not train the ranker (`ranking.choose.choose_live`:
    the baseline, or the other served baseline where surely better, unless another method surely beats
    it), or the one `live_method` names."""
    if params.live_method != "auto":
        return LiveChoice(params.live_method, "set by the live_method parameter")
    per_method = {name: list(scores(actual, lists, params.k).values()) for name, lists in methods.items()}
    name, why = choose_live(per_method, BASELINE, 1, 1, params.live_confidence, 1000, params.seed)
    return LiveChoice(name, f"on {len(actual)} validation buyers: {why}")


def served_lengths(params: RankingParams, extra: dict[str, int] | None = None) -> dict[str, int]:
    """Every live method at the pipeline's k (list lengths for `week_lists`), with `extra` overriding."""
    return {**dict.fromkeys(live_methods(params.cutoffs), params.k), **(extra or {})}


@dataclass
class ValidationOutcome:
    fitted: Fitted
    config: PipelineConfig  # the chosen window and live method
    choices: list[dict[str, Any]]
    train_rows: int
    distributed: bool
    figures_weeks: dict[str, Any]
    recall: dict[str, float]


def _training_weeks(
    spark: SparkSession, params: RankingParams, snapshot: dict[str, DataFrame], val_week: int
) -> tuple[list[pd.DataFrame], dict[str, Any]]:
    """The ranker's rows of the `train_weeks` weeks before validation (a sample of their buyers), without
    the two-tower's in-sample knowledge."""
    tx, base = snapshot[Tables.TRANSACTIONS], PipelineConfig.of(params, already_bought_weeks=0)
    parts, figures = [], {}
    for week in range(val_week - params.train_weeks, val_week):  # may be empty (train_weeks 0)
        truth = _sample(week_truth(tx, week), params.max_train_customers, params.seed).persist()
        frame, recall, _ = week_frame(
            spark, snapshot, week, truth, base, params.artifacts_dir, params.random_negatives, params.seed
        )
        truth.unpersist()
        parts.append(without_in_sample_two_tower(frame))
        figures[str(first_day(week))] = {"rows": len(frame), "positives": int(frame["label"].sum()), **recall}
    return parts, figures


def fit_on_validation(
    spark: SparkSession, params: RankingParams, snapshot: dict[str, DataFrame], val_week: int
) -> ValidationOutcome:
    """Train the ranker, choose its objective and already-bought window, save it, and choose the live
    method among the core's lists for the validation buyers that did not train it."""
    train_parts, figures_weeks = _training_weeks(spark, params, snapshot, val_week)
    val_truth = (
        snapshot[Tables.GROUND_TRUTH].where(F.col("split") == "val").select("customer_id", "article_ids")
    )
    val_truth = val_truth.persist()
    base = PipelineConfig.of(params, already_bought_weeks=0)  # the window is chosen below
    inputs = open_week(spark, snapshot, val_week, val_truth, base, params.artifacts_dir)
    try:
        val, recall, _ = candidate_frame(inputs)
        val_actual = dict(inputs.actual)
        if params.validation_train_share > 0:
            # The two-tower scores are out of sample on the validation week: learn from part of its buyers
            # and keep the rest for early stopping and the choices below.
            learn = _customer_share(val["customer_id"], params.validation_train_share, params.seed)
            train_parts.append(val[learn])
            val = val[~learn]
            held = set(val["customer_id"])
            val_actual = {c: a for c, a in val_actual.items() if c in held}
        train = with_positives(pd.concat(train_parts, ignore_index=True))
        booster = ranker_choices(params)[0]
        distributed = len(train) > params.distributed_above_rows
        positives = with_positives(val)

        def fit_one(objective: str) -> tuple[Ranker, int]:
            if distributed:
                return fit_distributed(
                    spark.createDataFrame(train[["qid", "label", *FEATURES]]),
                    spark.createDataFrame(positives[["qid", "label", *FEATURES]]),
                    FEATURES,
                    objective,
                    booster,
                    spark.sparkContext.defaultParallelism,
                )
            return fit(train, positives, FEATURES, objective, booster)

        fitted, choices = fit_and_choose(params, val, val_actual, fit_one)
        ranker_dir = fitted.ranker.save(Path(params.artifacts_dir) / RANKER_DIR)
        chosen = replace(PipelineConfig.of(params, fitted.window), objective=fitted.ranker.objective)
        lists = week_lists(inputs, chosen, ranker_dir, served_lengths(params), customers=list(val_actual))
        live = live_choice(params, val_actual, lists)
    finally:
        inputs.close()
        val_truth.unpersist()
    return ValidationOutcome(
        fitted, replace(chosen, live=live), choices, len(train), distributed, figures_weeks, recall
    )


def write_config(config: PipelineConfig, artifacts_dir: str | Path) -> Path:
    """pipeline.json, replaced atomically: what every snapshot carries and the core runs by."""
    path = Path(artifacts_dir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(config.to_dict(), indent=2))
    tmp.replace(path)
    return path


@dataclass
class TestWeek:
    actual: dict[str, list[str]]
    results: dict[str, dict[str, float]]
    pipeline: dict[str, list[str]]
    recall: dict[str, float]
    hit_rate: dict[str, float]
    cold_start: dict[str, float]
    filters: dict[str, int]


def evaluate_test_week(
    spark: SparkSession,
    params: RankingParams,
    snapshot: dict[str, DataFrame],
    test_week: int,
    config: PipelineConfig,
    ranker: Ranker,
) -> TestWeek:
    """Every method on the test week's buyers: the served lists (the core's: the ranker's to depth
    `RECALL_DEPTH`, the blends, the baseline as served, the live method; fallback included), the ablations
    on the ranker's rows, the Spark baselines and the oracle."""
    tx = snapshot[Tables.TRANSACTIONS]
    test_truth = (
        snapshot[Tables.GROUND_TRUTH]
        .where(F.col("split") == "test")
        .select("customer_id", "article_ids")
        .persist()
    )
    inputs: WeekInputs = open_week(spark, snapshot, test_week, test_truth, config, params.artifacts_dir)
    try:
        test, recall, filters = candidate_frame(inputs)
        depth = max(params.k, RECALL_DEPTH)
        served = week_lists(
            inputs, config, Path(params.artifacts_dir) / RANKER_DIR, served_lengths(params, {PIPELINE: depth})
        )
    finally:
        inputs.close()
    actual = inputs.actual
    targets = test_truth.select("customer_id")
    methods = baseline_methods(tx, snapshot[Tables.CUSTOMERS], targets, test_week, RECALL_DEPTH)
    methods |= served  # a servable method is scored as served (the baseline too: with the business rules)
    methods |= {
        "full_pipeline": served[PIPELINE],
        "live": served[config.live.name],
        "full_pipeline_no_diversity": ranked_lists(rank_frame(test, ranker, params.k, 0)),
        "two_tower_only": ranked_lists(
            test[test["rank_two_tower"] < ABSENT_RANK]
            .sort_values(["customer_id", "rank_two_tower"])
            .groupby("customer_id")["article_id"]
            .agg(list)
            .reset_index()
            .rename(columns={"article_id": "article_ids"})
        ),
    }
    del methods[PIPELINE]  # reported as full_pipeline
    sold_before = {
        r["article_id"] for r in before_week(tx, test_week).select("article_id").distinct().collect()
    }
    cold_start = cold_start_reach(test, actual, sold_before, served[PIPELINE], params.k)
    oracle = oracle_method(params.data_path, tx, targets, test_week, RECALL_DEPTH)
    if oracle is not None:
        methods["oracle"] = oracle
    articles = snapshot[Tables.ARTICLES].select("article_id", "product_type_name").collect()
    results = evaluate_methods(
        actual, methods, params.k, len(articles), {r["article_id"]: r["product_type_name"] for r in articles}
    )
    test_truth.unpersist()
    return TestWeek(actual, results, served[PIPELINE], recall, candidate_hit_rate(test), cold_start, filters)


def run_train_ranker(params: RankingParams, spark: SparkSession | None = None) -> dict[str, Any]:
    spark = spark or get_spark("fashionrec-train-ranker")
    started = time.perf_counter()
    snapshot, versions = pin_tables(spark, params.tables, RANKING_INPUTS, OPTIONAL_INPUTS)
    splits = Splits.from_frame(snapshot[Tables.SPLITS])
    val_week, test_week = splits.target_week("val"), splits.target_week("test")

    outcome = fit_on_validation(spark, params, snapshot, val_week)
    ranker, config, live = outcome.fitted.ranker, outcome.config, outcome.config.live
    config_path = write_config(config, params.artifacts_dir)
    week = evaluate_test_week(spark, params, snapshot, test_week, config, ranker)
    results, key = week.results, f"map@{params.k}"
    rows = metric_rows(results)
    stored = spark.createDataFrame(
        [("test", c, ids[: params.k]) for c, ids in week.pipeline.items()],
        "split string, customer_id string, article_ids array<string>",
    )
    predictions_version = overwrite_table(stored, params.tables, Tables.RANKED_CANDIDATES)

    reports = Path(params.reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    chart = map_bar_chart(
        rows, reports / "map_pipeline_test.png", f"MAP@{params.k} · test week {first_day(test_week)}"
    )
    importance = importance_chart(ranker, reports / "ranker_importance.png")
    (reports / "ranking_test.json").write_text(json.dumps(rows, indent=2))

    best_baseline = max(BASELINES, key=lambda m: results[m][key])
    pipeline_map = results["full_pipeline"][key]
    live_map = results["live"][key]
    quality_path = Path(params.artifacts_dir) / QUALITY_FILE  # what `register` compares champions by
    tmp = quality_path.with_name(quality_path.name + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "test_week": str(first_day(test_week)),
                key: live_map,  # what is served
                "live_method": live.name,
                "pipeline_map@12": pipeline_map,
                "best_baseline": best_baseline,
                "best_baseline_map@12": results[best_baseline][key],
            }
        )
    )
    tmp.replace(quality_path)
    window = outcome.fitted.window
    with tracked_run(
        absolute_tracking_uri(params.mlflow_tracking_uri),
        params.experiment,
        "train_ranker",
        {"task": "train_ranker"},
    ) as run:
        mlflow.log_params({f"version.{t}": v for t, v in versions.items()})
        mlflow.log_params(
            {
                "objective": ranker.objective,
                "already_bought_weeks": window,
                "live_method": live.name,
                "max_per_type": params.max_per_type,
                "train_rows": outcome.train_rows,
                "distributed": outcome.distributed,
                **{f"candidates.{k}": v for k, v in asdict(config.candidates).items()},
            }
        )
        for method, metrics in results.items():
            mlflow.log_metrics({metric_name(method, m): v for m, v in metrics.items()})
        mlflow.log_metrics({metric_name("candidate_recall", s): v for s, v in week.recall.items()})
        mlflow.log_metrics({metric_name("candidate_hit_rate", s): v for s, v in week.hit_rate.items()})
        mlflow.log_metrics({metric_name("cold_start", s): float(v) for s, v in week.cold_start.items()})
        mlflow.xgboost.log_model(ranker.booster, name="ranker")
        for path in (chart, importance, reports / "ranking_test.json", config_path):
            mlflow.log_artifact(str(path))
        run_id = run.info.run_id

    oracle_map = results.get("oracle", {}).get(key)
    best_map = max(results[best_baseline][key], 1e-9)
    return {
        "split": f"test week {first_day(test_week)}",
        "training_weeks": outcome.figures_weeks,
        "train_rows": outcome.train_rows,
        "trainer": "xgboost.spark" if outcome.distributed else "xgboost (single node)",
        "choices_on_validation": outcome.choices,
        "chosen": {"objective": ranker.objective, "already_bought_weeks": window},
        "candidate_recall_val": outcome.recall,
        "candidate_recall_test": week.recall,
        "candidate_hit_rate_test": week.hit_rate,
        "cold_start_test": week.cold_start,
        "filters_test": week.filters,
        "metrics": [
            {
                k: v
                for k, v in r.items()
                if k in ("method", "map@12", "recall@12", "ndcg@12", "diversity", "share_of_oracle")
            }
            for r in rows
        ],
        "live_method": live.name,
        "live_why": live.why,
        "live_map@12": round(live_map, 5),
        "live_vs_best_baseline": f"{live_map / best_map:.2f}x",
        "full_pipeline_map@12": round(pipeline_map, 5),
        "best_baseline": best_baseline,
        "margin_over_best_baseline": f"{pipeline_map / best_map:.2f}x",
        "share_of_oracle": round(pipeline_map / oracle_map, 3) if oracle_map else None,
        "diversity_map_cost": round(results["full_pipeline_no_diversity"][key] - pipeline_map, 5),
        "predictions_table_version": predictions_version,
        "chart": str(chart),
        "importance_chart": str(importance),
        "mlflow_run_id": run_id,
        "seconds": round(time.perf_counter() - started, 1),
    }
