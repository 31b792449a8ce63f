"""Fit the ranker and choose its objective and already-bought window on validation buyers: the one
selection `train_ranker` and each backtest fold run.

The choice is made on the ranker's candidate rows (`ranking.frames.candidate_frame`) with the runtime's
ranking rule (`recommender.rank.rank_frame`) and the core's already-bought verdicts, so a setting is
judged by the code that serves it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fashionrec.config import RankingParams
from fashionrec.evaluation.metrics import average_precision_at_k
from fashionrec.evaluation.pooled import choose
from fashionrec.ranking.frames import bought_within
from fashionrec.ranking.model import OBJECTIVES, BoosterParams
from fashionrec.recommender.live import SERVED_BASELINES
from fashionrec.recommender.pipeline import ALREADY_BOUGHT_CHOICES
from fashionrec.recommender.rank import rank_frame
from fashionrec.recommender.ranker import Ranker

Lists = dict[str, list[str]]


def ranker_choices(params: RankingParams) -> tuple[BoosterParams, tuple[str, ...], tuple[int, ...]]:
    """(trees, objectives, already-bought windows) to choose among on validation: every objective and
    window when the parameters say `auto` / -1, else the one they name."""
    objectives = OBJECTIVES if params.objective == "auto" else (params.objective,)
    windows = ALREADY_BOUGHT_CHOICES if params.already_bought_weeks < 0 else (params.already_bought_weeks,)
    return BoosterParams.of(params), objectives, windows


def with_positives(frame: pd.DataFrame) -> pd.DataFrame:
    """Groups with at least one purchase: the only ones a ranking objective learns from."""
    has = frame.groupby("customer_id")["label"].transform("max") > 0
    return frame[has]


def map_at_k(actual: Lists, predicted: Lists, k: int) -> float:
    """Kaggle MAP@k over the customers of `actual` (missing predictions count as empty lists)."""
    scores = [average_precision_at_k(a, predicted.get(c, []), k) for c, a in actual.items()]
    return float(np.mean(scores)) if scores else 0.0


def ranked_lists(ranked: pd.DataFrame) -> Lists:
    return dict(zip(ranked["customer_id"], ranked["article_ids"], strict=True))


@dataclass(frozen=True)
class Fitted:
    """The chosen ranker, its already-bought window and how it scored."""

    ranker: Ranker
    window: int
    rounds: int
    val_map: float


def fit_and_choose(
    params: RankingParams,
    valid: pd.DataFrame,
    actual: Lists,
    fit_one: Callable[[str], tuple[Ranker, int]],
) -> tuple[Fitted, list[dict[str, Any]]]:
    """Fit a ranker per objective (`fit_one(objective) -> (ranker, rounds)`, early-stopped on `valid`),
    rank the validation rows with each already-bought window and keep the best by MAP@k on `actual`;
    also every setting's score (ties: the first tried)."""
    _, objectives, windows = ranker_choices(params)
    kept = {window: valid[~bought_within(valid, window)] for window in windows}
    choices: list[dict[str, Any]] = []
    best: Fitted | None = None
    for objective in objectives:
        ranker, rounds = fit_one(objective)
        for window in windows:
            lists = ranked_lists(rank_frame(kept[window], ranker, params.k, params.max_per_type))
            score = map_at_k(actual, lists, params.k)
            choices.append(
                {
                    "objective": objective,
                    "already_bought_weeks": window,
                    "rounds": rounds,
                    f"val_map@{params.k}": round(score, 5),
                }
            )
            if best is None or score > best.val_map:
                best = Fitted(ranker, window, rounds, score)
    assert best is not None, "no objective to fit"
    return best, choices


def choose_live(
    per_method: Mapping[str, Sequence[float]],
    default: str,
    minimum: int,
    weeks: int,
    confidence: float,
    samples: int,
    seed: int,
) -> tuple[str, str]:
    """The live method among the served methods' scores on earlier customer-weeks, and why. First the
    bar: the other served baseline replaces `default` only if it beats it surely; then any method must
    beat the bar surely (`evaluation.pooled.choose`, both times). The bar's test is corrected for the
    whole family of alternatives, as the second one is: moving the bar is one more way to pick a method
    that led by chance (on hm_real_dev, a bar moved at the uncorrected level cost the live method a week;
    docs/journal.md, "One runtime")."""
    baselines = {m: per_method[m] for m in SERVED_BASELINES if m in per_method}
    family = max(1, len(per_method) - 1)
    bar_confidence = 1 - (1 - confidence) / family
    bar, bar_why = choose(baselines, default, minimum, weeks, bar_confidence, samples, seed)
    live, why = choose(per_method, bar, minimum, weeks, confidence, samples, seed)
    return live, why if bar == default else f"bar {bar} ({bar_why}); {why}"
