"""What the oracle knows that a recommender cannot: on a generated set's last week, the oracle's MAP@12 with
its inputs replaced, one by one, by what the purchases reveal.

The oracle ranks by the generator's own formula (`data.truth`): each shopper's latent taste (index, product
type, colour), their repeat propensity, and the week's true demand per article. Replacing the demand by
observed sales, then the taste by its estimate from the shopper's own purchases (counts smoothed towards
the population with a pseudo-count), gives the MAP of a model that knows the generator's formula exactly
and only the data: a bound for any learned pipeline on this world, to read its share of the oracle against.
`python -m benchmarks --only oracle_gap --scale small` (after `make demo`, which writes `data/small`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fashionrec.data.truth import SyntheticTruth
from fashionrec.data.vocabulary import PRODUCT_TYPES
from fashionrec.evaluation.baselines import decayed_sales
from fashionrec.features.weeks import week_of
from fashionrec.lake.session import get_spark
from fashionrec.ranking.choose import map_at_k

K = 12
SMOOTHING = (3.0, 10.0, 30.0)  # pseudo-counts of the population's shares in the taste estimate


def _observed_demand(before: pd.DataFrame, week: int, position: Mapping[str, int], n: int) -> np.ndarray:
    """The recommender's `decayed_sales` per article (+0.01, so unsold articles stay possible), through the
    one implementation the baselines and features use (`evaluation.baselines.decayed_sales`)."""
    spark = get_spark("fashionrec-oracle-gap")
    sales = decayed_sales(spark.createDataFrame(before[["t_dat", "article_id"]]), week).toPandas()
    demand = np.full(n, 0.01)
    demand[sales["article_id"].map(position).to_numpy()] += sales["decayed_sales"].to_numpy()
    return demand


def _estimated_taste(
    truth: SyntheticTruth, rows: np.ndarray, histories: list[list[int]], alpha: float, all_bought: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index, type and colour preferences from each shopper's purchase counts, relative to the population's
    shares (the generator multiplies preference by what is in the shops, so shares over the population
    estimate preference up to a constant)."""
    n_types = len(PRODUCT_TYPES)
    estimates = []
    for attribute, size in (
        (truth.cell // n_types, truth.index_pref.shape[1]),
        (truth.cell % n_types, truth.type_pref.shape[1]),
        (truth.master, truth.colour_pref.shape[1]),
    ):
        prior = np.bincount(attribute[all_bought], minlength=size) / len(all_bought)
        out = np.ones((len(truth.customer_ids), size))
        for row, bought in zip(rows, histories, strict=True):
            counts = np.bincount(attribute[np.asarray(bought, dtype=np.int64)], minlength=size)
            out[row] = (counts + alpha * prior) / (len(bought) + alpha) / np.maximum(prior, 1e-9)
        estimates.append(out)
    return estimates[0], estimates[1], estimates[2]


def run(scale: str) -> dict[str, Any]:
    folder = Path("data") / ("small" if scale == "full" else scale)
    if not (folder / "truth.npz").exists():
        raise RuntimeError(f"no generated data with truth.npz in {folder}: run `make demo` first")
    tx = pd.read_csv(
        folder / "transactions_train.csv",
        dtype={"customer_id": str, "article_id": str},
        parse_dates=["t_dat"],
    ).sort_values("t_dat", kind="stable")
    truth = SyntheticTruth(folder / "truth.npz")
    start = tx["t_dat"].max().normalize() - pd.Timedelta(days=6)
    week = truth.generated_week(start.date().isoformat())
    before, test = tx[tx["t_dat"] < start], tx[tx["t_dat"] >= start]
    actual = test.groupby("customer_id")["article_id"].agg(lambda s: list(dict.fromkeys(s))).to_dict()
    buyers = sorted(c for c in actual if c in truth.customer_pos)
    history = (
        before[before["customer_id"].isin(buyers)].groupby("customer_id")["article_id"].agg(list).to_dict()
    )
    position = truth.article_pos

    rows: list[dict[str, Any]] = []

    def measure(name: str) -> None:
        score = map_at_k({c: actual[c] for c in buyers}, truth.top_k(buyers, week, history, K), K)
        rows.append({"oracle's inputs": name, f"map@{K}": round(score, 4)})

    measure("true taste, true repeat, the week's true demand (the oracle)")
    truth.popularity[week] = _observed_demand(before, week_of(start.date()), position, len(truth.article_ids))
    measure("true taste, true repeat, observed demand (decayed sales)")
    known = [c for c in buyers if c in history]
    customer_rows = np.array([truth.customer_pos[c] for c in known])
    bought = [[position[a] for a in history[c]] for c in known]
    all_bought = before["article_id"].map(position).to_numpy()
    true_taste = (truth.index_pref, truth.type_pref, truth.colour_pref)
    true_repeat = truth.repeat.copy()
    for alpha in SMOOTHING:
        truth.index_pref, truth.type_pref, truth.colour_pref = _estimated_taste(
            truth, customer_rows, bought, alpha, all_bought
        )
        measure(f"taste from own purchases (pseudo-count {alpha:g}), true repeat, observed demand")
        truth.repeat = np.full_like(true_repeat, true_repeat.mean())
        measure(f"taste from own purchases (pseudo-count {alpha:g}), mean repeat, observed demand")
        truth.repeat = true_repeat
    truth.index_pref, truth.type_pref, truth.colour_pref = (np.ones_like(t) for t in true_taste)
    measure("no taste (the population's), true repeat, observed demand")
    oracle = rows[0][f"map@{K}"]
    for row in rows:
        row["share of oracle"] = round(row[f"map@{K}"] / oracle, 3)
    return {"data": str(folder), "test_week": start.date().isoformat(), "buyers": len(buyers), "table": rows}
