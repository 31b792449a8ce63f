"""Task `train_ranker`: candidates and features for the training weeks, the validation week and the test
week; XGBoost ranker (objective and already-bought window chosen on validation); MAP@12 of the full
pipeline on the test week beside retrieval alone, every baseline and the oracle.

Weeks: the two-tower model is trained on purchases before the validation week, so its scores are
in-sample on earlier weeks (more confident than on unseen ones) and honest on the validation week. The
ranker therefore learns from 70% of the validation week's buyers (labels: what they bought that week)
and stops early, picks its objective and the already-bought window on the other 30%; it is judged on the
test week. `train_weeks` adds earlier target weeks, without the two-tower's in-sample rank and score
(`without_in_sample_two_tower`): the ranker learns the other signals from every week and how far to trust
the two-tower from the validation week alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
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
from fashionrec.evaluation import baselines as baseline_lists
from fashionrec.evaluation.metrics import average_precision_at_k
from fashionrec.evaluation.pooled import choose, scores
from fashionrec.evaluation.report import map_bar_chart, metric_rows, save_figure
from fashionrec.evaluation.task import baseline_methods, evaluate_methods, oracle_method
from fashionrec.features.splits import Splits
from fashionrec.features.weeks import before_week, first_day
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, overwrite_table, read_table
from fashionrec.ranking.filters import FilterRules
from fashionrec.ranking.frames import (
    candidate_counts,
    candidate_hit_rate,
    cold_start_reach,
    pipeline_config,
    sources_where,
    week_frame,
    week_truth,
)
from fashionrec.ranking.live import BASELINE, BLEND_CUTOFFS, PIPELINE, LiveChoice, blend_name, live_lists
from fashionrec.ranking.model import OBJECTIVES, BoosterParams, Ranker, fit, fit_distributed
from fashionrec.ranking.rank import rank_frame
from fashionrec.recommender.layout import ABSENT_RANK, CONFIG_FILE, FEATURES, QUALITY_FILE, RANKER_DIR
from fashionrec.training.tracking import metric_name, tracked_run
from fashionrec.training.tuning import absolute_tracking_uri

__all__ = ["CONFIG_FILE", "QUALITY_FILE", "RANKER_DIR", "run_train_ranker"]
ALREADY_BOUGHT_CHOICES = (0, 1, 4)


def ranker_choices(params: RankingParams) -> tuple[BoosterParams, tuple[str, ...], tuple[int, ...]]:
    """(trees, objectives, already-bought windows) to choose among on validation: every objective and
    window when the parameters say `auto` / -1, else the one they name. The job and the backtest share it,
    so both choose among the same rankers."""
    booster = BoosterParams(
        max_depth=params.max_depth,
        learning_rate=params.learning_rate,
        rounds=params.rounds,
        min_child_weight=params.min_child_weight,
    )
    objectives = OBJECTIVES if params.objective == "auto" else (params.objective,)
    windows = ALREADY_BOUGHT_CHOICES if params.already_bought_weeks < 0 else (params.already_bought_weeks,)
    return booster, objectives, windows


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


def with_positives(frame: pd.DataFrame) -> pd.DataFrame:
    """Groups with at least one purchase: the only ones a ranking objective learns from."""
    has = frame.groupby("customer_id")["label"].transform("max") > 0
    return frame[has]


def _customer_share(customers: pd.Series, share: float, seed: int) -> pd.Series:
    """A stable pseudo-random `share` of customers (by a hash of id and seed)."""
    hashed = pd.util.hash_pandas_object(customers + f"/{seed}", index=False).to_numpy()
    return pd.Series((hashed % 10_000) < share * 10_000, index=customers.index)


def map_at_k(actual: dict[str, list[str]], predicted: dict[str, list[str]], k: int) -> float:
    """Kaggle MAP@k over the customers of `actual` (missing predictions count as empty lists)."""
    scores = [average_precision_at_k(a, predicted.get(c, []), k) for c, a in actual.items()]
    return float(np.mean(scores)) if scores else 0.0


def ranked_lists(ranked: pd.DataFrame) -> dict[str, list[str]]:
    return dict(zip(ranked["customer_id"], ranked["article_ids"], strict=True))


def bought_within(frame: pd.DataFrame, weeks: int) -> pd.Series:
    """The already-bought rule on feature columns: a purchase in the last `weeks` weeks."""
    if weeks <= 0:
        return pd.Series(False, index=frame.index)
    return (frame["n_bought_article"] > 0) & (frame["days_since_article"] <= 7 * weeks)


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


def pinned_snapshot(
    spark: SparkSession, params: RankingParams, names: tuple[str, ...] = RANKING_INPUTS
) -> tuple[dict[str, DataFrame], dict[str, int]]:
    """The tables `names` (and the optional availability and visual neighbours) read at their current
    versions, so one run reads one consistent state; and those versions (lineage)."""
    versions = {t: current_version(spark, params.tables, t) for t in names}
    missing = [t for t, v in versions.items() if v is None]
    if missing:
        raise ValueError(
            f"table(s) {', '.join(missing)} not found in {params.tables.describe()}: run the earlier tasks first"
        )
    for table in (Tables.ARTICLE_AVAILABILITY, Tables.SIMILAR_ARTICLES):  # optional inputs
        version = current_version(spark, params.tables, table)
        if version is not None:
            versions[table] = version
    snapshot = {t: read_table(spark, params.tables, t, version=v) for t, v in versions.items()}
    return snapshot, versions  # type: ignore[return-value]


def live_methods(
    tx: DataFrame, targets: DataFrame, week: int, ranked: dict[str, list[str]], k: int
) -> dict[str, dict[str, list[str]]]:
    """Every method the live choice is made among, for the customers of `targets` in `week`: the ranker's
    list, the blends of own recent articles and the ranker, and repurchase-then-popular."""
    own = baseline_lists.repurchase(tx, targets, week, k, fallback=[])
    popular = baseline_lists.decayed_popularity(tx, week, k)
    customers = [r["customer_id"] for r in targets.select("customer_id").collect()]
    names = [PIPELINE, BASELINE, *map(blend_name, BLEND_CUTOFFS)]
    return {
        name: {c: live_lists(name, own.get(c, []), ranked.get(c, []), popular, k) for c in customers}
        for name in names
    }


def choose_live(
    params: RankingParams, actual: dict[str, list[str]], methods: dict[str, dict[str, list[str]]]
) -> LiveChoice:
    """The live method on the validation buyers that did not train the ranker: repurchase-then-popular
    unless another method beats it surely (`evaluation.pooled.choose`), or the one `live_method` names."""
    if params.live_method != "auto":
        return LiveChoice(params.live_method, "set by the live_method parameter")
    per_method = {name: list(scores(actual, lists, params.k).values()) for name, lists in methods.items()}
    name, why = choose(per_method, BASELINE, 1, 1, params.live_confidence, 1000, params.seed)
    return LiveChoice(name, f"on {len(actual)} validation buyers: {why}")


def run_train_ranker(params: RankingParams, spark: SparkSession | None = None) -> dict[str, Any]:
    spark = spark or get_spark("fashionrec-train-ranker")
    started = time.perf_counter()
    snapshot, versions = pinned_snapshot(spark, params)
    splits = Splits.from_frame(snapshot[Tables.SPLITS])
    val_week, test_week = splits.target_week("val"), splits.target_week("test")
    truth_table = snapshot[Tables.GROUND_TRUTH]
    tx = snapshot[Tables.TRANSACTIONS]
    base_rules = FilterRules(0, params.filter_out_of_stock, params.filter_region, params.filter_age)

    train_parts, figures_weeks = [], {}
    for week in range(val_week - params.train_weeks, val_week):  # may be empty (train_weeks 0)
        truth = _sample(week_truth(tx, week), params.max_train_customers, params.seed).persist()
        frame, recall, _ = week_frame(
            spark,
            snapshot,
            week,
            truth,
            pipeline_config(params, base_rules),
            params.artifacts_dir,
            params.random_negatives,
            params.seed,
        )
        truth.unpersist()
        train_parts.append(without_in_sample_two_tower(frame))
        figures_weeks[str(first_day(week))] = {
            "rows": len(frame),
            "positives": int(frame["label"].sum()),
            **recall,
        }
    val_truth = truth_table.where(F.col("split") == "val").select("customer_id", "article_ids").persist()
    val, val_recall, _ = week_frame(
        spark, snapshot, val_week, val_truth, pipeline_config(params, base_rules), params.artifacts_dir
    )
    val_actual = {r["customer_id"]: list(r["article_ids"]) for r in val_truth.collect()}
    val_truth.unpersist()
    if params.validation_train_share > 0:
        # The two-tower scores are out of sample on the validation week: learn from part of its buyers
        # and keep the rest for early stopping and the choices below.
        learn = _customer_share(val["customer_id"], params.validation_train_share, params.seed)
        train_parts.append(val[learn])
        val = val[~learn]
        val_actual = {c: a for c, a in val_actual.items() if c in set(val["customer_id"])}
    train = with_positives(pd.concat(train_parts, ignore_index=True))

    booster, objectives, windows = ranker_choices(params)
    distributed = len(train) > params.distributed_above_rows
    choices, best = [], None
    for objective in objectives:
        if distributed:
            ranker, rounds = fit_distributed(
                spark.createDataFrame(train[["qid", "label", *FEATURES]]),
                spark.createDataFrame(with_positives(val)[["qid", "label", *FEATURES]]),
                FEATURES,
                objective,
                booster,
                spark.sparkContext.defaultParallelism,
            )
        else:
            ranker, rounds = fit(train, with_positives(val), FEATURES, objective, booster)
        for window in windows:
            kept = val[~bought_within(val, window)]
            score = map_at_k(
                val_actual, ranked_lists(rank_frame(kept, ranker, params.k, params.max_per_type)), params.k
            )
            choices.append(
                {
                    "objective": objective,
                    "already_bought_weeks": window,
                    "rounds": rounds,
                    "val_map@12": round(score, 5),
                }
            )
            if best is None or score > best[0]:
                best = (score, ranker, window)
    assert best is not None
    _, ranker, window = best
    ranker.save(Path(params.artifacts_dir) / RANKER_DIR)
    rules = FilterRules(window, params.filter_out_of_stock, params.filter_region, params.filter_age)
    val_ranked = ranked_lists(
        rank_frame(val[~bought_within(val, window)], ranker, params.k, params.max_per_type)
    )
    val_targets = spark.createDataFrame([(c,) for c in sorted(val_actual)], "customer_id string")
    live = choose_live(params, val_actual, live_methods(tx, val_targets, val_week, val_ranked, params.k))
    config = {**pipeline_config(params, rules), "objective": ranker.objective, "live": asdict(live)}
    config_path = Path(params.artifacts_dir) / CONFIG_FILE
    tmp = config_path.with_name(config_path.name + ".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(config_path)

    # Test week: the chosen rules through the Spark path, then the same ranking function as batch scoring.
    test_truth = truth_table.where(F.col("split") == "test").select("customer_id", "article_ids").persist()
    test, test_recall, filter_removed = week_frame(
        spark, snapshot, test_week, test_truth, pipeline_config(params, rules), params.artifacts_dir
    )
    actual = {r["customer_id"]: list(r["article_ids"]) for r in test_truth.collect()}
    test_hit_rate = candidate_hit_rate(test)
    ranked = rank_frame(test, ranker, max(params.k, 100), params.max_per_type)
    pipeline = ranked_lists(ranked)
    no_diversity = ranked_lists(rank_frame(test, ranker, params.k, 0))
    retrieval_only = ranked_lists(
        test[test["rank_two_tower"] < 999]
        .sort_values(["customer_id", "rank_two_tower"])
        .groupby("customer_id")["article_id"]
        .agg(list)
        .reset_index()
        .rename(columns={"article_id": "article_ids"})
    )
    targets = test_truth.select("customer_id")
    methods = baseline_methods(tx, snapshot[Tables.CUSTOMERS], targets, test_week, 100)
    # Buyers without purchases before the week get no candidates: served, they get the fallback (the
    # age band's best sellers), so that is what the pipeline's list is for them here too.
    pipeline = {c: pipeline.get(c) or methods["age_band_popular"][c] for c in actual}
    methods |= {
        "full_pipeline": pipeline,
        "full_pipeline_no_diversity": no_diversity,
        "two_tower_only": retrieval_only,
        "live": live_methods(tx, targets, test_week, pipeline, params.k)[live.name],
    }
    sold_before = {
        r["article_id"] for r in before_week(tx, test_week).select("article_id").distinct().collect()
    }
    cold_start = cold_start_reach(test, actual, sold_before, pipeline, params.k)
    oracle = oracle_method(params.data_path, tx, targets, test_week, 100)
    if oracle is not None:
        methods["oracle"] = oracle
    articles = snapshot[Tables.ARTICLES].select("article_id", "product_type_name").collect()
    results = evaluate_methods(
        actual, methods, params.k, len(articles), {r["article_id"]: r["product_type_name"] for r in articles}
    )
    test_truth.unpersist()
    rows = metric_rows(results)
    key = f"map@{params.k}"
    stored = spark.createDataFrame(
        [("test", c, ids[: params.k]) for c, ids in pipeline.items()],
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

    baselines = [
        m
        for m in results
        if m not in ("oracle", "full_pipeline", "full_pipeline_no_diversity", "two_tower_only", "live")
    ]
    best_baseline = max(baselines, key=lambda m: results[m][key])
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
                "train_rows": len(train),
                "distributed": distributed,
                **{f"candidates.{k}": v for k, v in asdict(candidate_counts(params)).items()},
            }
        )
        for method, metrics in results.items():
            mlflow.log_metrics({metric_name(method, m): v for m, v in metrics.items()})
        mlflow.log_metrics({metric_name("candidate_recall", s): v for s, v in test_recall.items()})
        mlflow.log_metrics({metric_name("candidate_hit_rate", s): v for s, v in test_hit_rate.items()})
        mlflow.log_metrics({metric_name("cold_start", s): float(v) for s, v in cold_start.items()})
        mlflow.xgboost.log_model(ranker.booster, name="ranker")
        for path in (chart, importance, reports / "ranking_test.json", config_path):
            mlflow.log_artifact(str(path))
        run_id = run.info.run_id

    oracle_map = results.get("oracle", {}).get(key)
    return {
        "split": f"test week {first_day(test_week)}",
        "training_weeks": figures_weeks,
        "train_rows": len(train),
        "trainer": "xgboost.spark" if distributed else "xgboost (single node)",
        "choices_on_validation": choices,
        "chosen": {"objective": ranker.objective, "already_bought_weeks": window},
        "candidate_recall_val": val_recall,
        "candidate_recall_test": test_recall,
        "candidate_hit_rate_test": test_hit_rate,
        "cold_start_test": cold_start,
        "filters_test": filter_removed,
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
        "live_vs_best_baseline": f"{live_map / max(results[best_baseline][key], 1e-9):.2f}x",
        "full_pipeline_map@12": round(pipeline_map, 5),
        "best_baseline": best_baseline,
        "margin_over_best_baseline": f"{pipeline_map / max(results[best_baseline][key], 1e-9):.2f}x",
        "share_of_oracle": round(pipeline_map / oracle_map, 3) if oracle_map else None,
        "diversity_map_cost": round(results["full_pipeline_no_diversity"][key] - pipeline_map, 5),
        "predictions_table_version": predictions_version,
        "chart": str(chart),
        "importance_chart": str(importance),
        "mlflow_run_id": run_id,
        "seconds": round(time.perf_counter() - started, 1),
    }
