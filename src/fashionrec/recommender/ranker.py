"""The XGBoost ranker at run time: load the saved model and score feature rows. Training
(`ranking.model`) writes it with `Ranker.save`."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb


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
