"""The XGBoost ranker: fit (single node, or `xgboost.spark` for training sets beyond one machine),
save/load as one folder written atomically, and score pandas batches.

Two objectives compete on the validation week: LambdaMART (`rank:ndcg`, groups = customers) and plain
`binary:logistic`; the task keeps whichever gives the higher validation MAP@12.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

OBJECTIVES = ("rank:ndcg", "binary:logistic")


@dataclass(frozen=True)
class BoosterParams:
    max_depth: int = 6
    learning_rate: float = 0.1
    rounds: int = 300
    early_stopping_rounds: int = 20
    min_child_weight: float = 1.0
    subsample: float = 0.9
    colsample_bytree: float = 0.9
    seed: int = 42


@dataclass
class Ranker:
    booster: xgb.Booster
    objective: str
    features: list[str]

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return self.score_matrix(frame[self.features].to_numpy(dtype=np.float32))

    def score_matrix(self, values: np.ndarray) -> np.ndarray:
        """Scores for rows of features in `self.features` order (NaN = missing). `inplace_predict`
        skips building a DMatrix: the same trees and numbers, a fraction of the cost for small batches."""
        return self.booster.inplace_predict(values, missing=np.nan)

    def single_threaded(self) -> Ranker:
        """Predict on one thread: a serving worker answers many small requests at once, and XGBoost's
        default (all cores per call) only makes them wait for each other."""
        self.booster.set_param({"nthread": 1})
        return self

    def importance(self) -> dict[str, float]:
        gain = self.booster.get_score(importance_type="gain")
        return {f: float(gain.get(f, 0.0)) for f in self.features}

    def save(self, folder: str | Path) -> Path:
        """model.json + meta.json in `folder`, staged beside it and renamed in (readers see old or new)."""
        folder = Path(folder)
        staging = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
        staging.mkdir(parents=True)
        self.booster.save_model(str(staging / "model.json"))
        (staging / "meta.json").write_text(
            json.dumps({"objective": self.objective, "features": self.features}, indent=2)
        )
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Ranker:
        folder = Path(folder)
        if not (folder / "meta.json").exists():
            raise FileNotFoundError(f"no ranker in {folder}: run the train_ranker task first")
        meta = json.loads((folder / "meta.json").read_text())
        booster = xgb.Booster()
        booster.load_model(str(folder / "model.json"))
        return cls(booster, meta["objective"], list(meta["features"]))


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
