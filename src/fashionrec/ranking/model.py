"""Fitting the XGBoost ranker: single node, or `xgboost.spark` for training sets beyond one machine. The
fitted `Ranker` (save, load, score) is the runtime's (`recommender.ranker`).

Two objectives compete on the validation week: LambdaMART (`rank:ndcg`, groups = customers) and plain
`binary:logistic`; the task keeps whichever gives the higher validation MAP@12.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from fashionrec.config import RankingParams
from fashionrec.recommender.ranker import Ranker

OBJECTIVES = ("rank:ndcg", "binary:logistic")


@dataclass(frozen=True)
class BoosterParams:
    """XGBoost's settings: the task's (`RankingParams`, where their defaults live) and fixed sampling."""

    max_depth: int
    learning_rate: float
    rounds: int
    min_child_weight: float
    seed: int
    early_stopping_rounds: int = 20
    subsample: float = 0.9
    colsample_bytree: float = 0.9

    @classmethod
    def of(cls, params: RankingParams) -> BoosterParams:
        return cls(
            params.max_depth, params.learning_rate, params.rounds, params.min_child_weight, params.seed
        )


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["qid", "customer_id"], kind="stable").reset_index(drop=True)


def _matrix(frame: pd.DataFrame, features: list[str]) -> xgb.DMatrix:
    return xgb.DMatrix(
        frame[features].astype(np.float32),
        label=frame["label"].to_numpy(),
        qid=frame["qid"].to_numpy(),
        feature_names=features,
    )


def _booster_params(objective: str, params: BoosterParams) -> dict[str, Any]:
    out: dict[str, Any] = {
        "objective": objective,
        "eta": params.learning_rate,
        "max_depth": params.max_depth,
        "min_child_weight": params.min_child_weight,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "tree_method": "hist",
        "seed": params.seed,
        "nthread": 0,
    }
    if objective.startswith("rank:"):
        out |= {
            "eval_metric": "map@12",
            "lambdarank_pair_method": "topk",
            "lambdarank_num_pair_per_sample": 12,
        }
    else:
        out["eval_metric"] = "logloss"
    return out


def fit(
    train: pd.DataFrame, valid: pd.DataFrame, features: list[str], objective: str, params: BoosterParams
) -> tuple[Ranker, int]:
    """Train on `train`, stop early on `valid` (both with `qid`, `customer_id`, `label`); (ranker, rounds)."""
    train, valid = _sorted(train), _sorted(valid)
    booster = xgb.train(
        _booster_params(objective, params),
        _matrix(train, features),
        num_boost_round=params.rounds,
        evals=[(_matrix(valid, features), "valid")],
        early_stopping_rounds=params.early_stopping_rounds,
        verbose_eval=False,
    )
    return _best_rounds(booster, objective, features, int(booster.best_iteration) + 1)


def _best_rounds(
    booster: xgb.Booster, objective: str, features: list[str], rounds: int
) -> tuple[Ranker, int]:
    """The ranker of the best validation round. Early stopping keeps the trees it grew after the best
    round, and `inplace_predict` / saved models use every tree: without the cut the served model is
    `early_stopping_rounds` rounds past the one that was chosen."""
    return Ranker(booster[:rounds], objective, features), rounds


def fit_distributed(
    train: Any, valid: Any, features: list[str], objective: str, params: BoosterParams, workers: int
) -> tuple[Ranker, int]:
    """The same model trained by `xgboost.spark` over Spark DataFrames (with `qid`, `label`, features)."""
    from pyspark.sql import functions as F
    from xgboost.spark import SparkXGBClassifier, SparkXGBRanker

    data = train.withColumn("is_val", F.lit(False)).unionByName(valid.withColumn("is_val", F.lit(True)))
    data = data.select(*[F.col(c).cast("float") for c in features], "label", "qid", "is_val")
    common = dict(
        features_col=features,
        label_col="label",
        validation_indicator_col="is_val",
        num_workers=workers,
        max_depth=params.max_depth,
        learning_rate=params.learning_rate,
        n_estimators=params.rounds,
        early_stopping_rounds=params.early_stopping_rounds,
        min_child_weight=params.min_child_weight,
        subsample=params.subsample,
        colsample_bytree=params.colsample_bytree,
        random_state=params.seed,
    )
    booster_params = _booster_params(objective, params)
    if objective.startswith("rank:"):
        estimator: Any = SparkXGBRanker(
            qid_col="qid",
            objective=objective,
            eval_metric=booster_params["eval_metric"],
            **common,
        )
        data = data.repartition(workers, "qid").sortWithinPartitions("qid")
    else:
        estimator = SparkXGBClassifier(eval_metric="logloss", **common)
    model = estimator.fit(data)
    booster = model.get_booster()
    booster.feature_names = features
    best = booster.attr("best_iteration")
    rounds = int(best) + 1 if best is not None else booster.num_boosted_rounds()
    return _best_rounds(booster, objective, features, rounds)
