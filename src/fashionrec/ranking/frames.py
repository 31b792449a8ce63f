"""The ranker's rows for one target week, from the recommender core: train_ranker and the backtest call it.

For week W the driver writes a snapshot as of W (`snapshot.build.write_global_part`: everything
computed from purchases strictly before W), Spark computes the target customers' rows as of W, and the
core proposes, filters and describes their candidates in `mapInPandas` (`snapshot.spark`). Labels are
what each customer bought in W. Batch scoring and serving run the same core on the same kind of snapshot,
so the ranker is asked about exactly the rows it learned from.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec.config import Tables
from fashionrec.features.weeks import week_col
from fashionrec.recommender.layout import ABSENT_RANK, RANDOM_SOURCE, SOURCES
from fashionrec.recommender.pipeline import PipelineConfig
from fashionrec.snapshot.build import GlobalInputs, customer_rows, purchase_rows, write_global_part
from fashionrec.snapshot.spark import ALREADY_BOUGHT_COLUMNS, candidate_rows, method_lists

FRAMES_DIR = Path("ranking") / "frames"  # under artifacts_dir: per-week snapshots, removed after use
ROWS_PER_TASK = 5_000  # target customers per Spark task (each task loads the core once)


def week_truth(tx: DataFrame, week: int) -> DataFrame:
    """(customer_id, article_ids) of everyone who bought in `week`."""
    return (
        tx.where(week_col(F.col("t_dat")) == week)
        .groupBy("customer_id")
        .agg(F.array_distinct(F.collect_list("article_id")).alias("article_ids"))
    )


def with_labels(frame: pd.DataFrame, actual: dict[str, list[str]]) -> pd.DataFrame:
    """label 1 for the candidates the customer bought in the target week, else 0."""
    bought = {(c, a) for c, ids in actual.items() for a in ids}
    labels = [int((c, a) in bought) for c, a in zip(frame["customer_id"], frame["article_id"], strict=True)]
    return frame.assign(label=labels)


# Sources whose own contribution is reported (the learned ones: union recall with and without them).
ABLATION_SOURCES = ("two_tower", "visual")


def sources_where(frame: pd.DataFrame, keep: Callable[[Sequence[str]], bool]) -> np.ndarray:
    """Boolean array over `frame`'s rows: does the row's `sources` list satisfy `keep`? An array, not a
    Series: pandas reads an empty object-dtype Series as a column selection, and an empty frame indexed
    with one loses every column."""
    return np.fromiter((bool(keep(s)) for s in frame["sources"]), dtype=bool, count=len(frame))


def candidate_recall(frame: pd.DataFrame, actual: dict[str, list[str]]) -> dict[str, float]:
    """Share of the target week's purchases (distinct customer × article) each source covers, the union,
    and the union without each of ABLATION_SOURCES, before the business rules; and the candidates per
    customer."""
    total = sum(len(set(ids)) for ids in actual.values())
    hits = frame[frame["label"] == 1]
    out = {}
    for source in SOURCES:
        out[source] = round(int((hits[f"rank_{source}"] < ABSENT_RANK).sum()) / max(total, 1), 4)
    proposed = sources_where(hits, lambda s: RANDOM_SOURCE not in s)
    out["union"] = round(int(proposed.sum()) / max(total, 1), 4)
    for source in ABLATION_SOURCES:  # the union without one source: what only that source finds
        others = sources_where(
            hits, lambda s, source=source: any(x not in (source, RANDOM_SOURCE) for x in s)
        )
        out[f"union_without_{source}"] = round(int(others.sum()) / max(total, 1), 4)
    per_customer = frame.groupby("customer_id").size().mean() if len(frame) else 0.0
    out["candidates_per_customer"] = round(float(per_customer), 1)
    return out


def candidate_hit_rate(frame: pd.DataFrame) -> dict[str, float]:
    """Share of each source's candidates (rows with a `label`) that the customer bought: how much one of
    its articles is worth. Recall says what a source finds; this says what a slot spent on it is worth,
    which is what the ranker weighs (and what differed most between the generated and the real world,
    docs/journal.md). Sources without candidates are left out."""
    out = {}
    for source in SOURCES:
        proposed = frame[f"rank_{source}"] < ABSENT_RANK
        if proposed.any():
            out[source] = round(float(frame.loc[proposed, "label"].mean()), 4)
    return out


def cold_start_reach(
    frame: pd.DataFrame,
    actual: dict[str, list[str]],
    sold_before: set[str],
    lists: dict[str, list[str]],
    k: int,
) -> dict[str, float]:
    """Purchases of new articles (never sold before the week): the share that reaches the candidates
    (after the business rules) with every source, without the visual source, and the served top-k.
    New articles have no sales to be retrieved by, so visual neighbours of what a customer bought are
    their way in."""
    wanted = {(c, a) for c, ids in actual.items() for a in set(ids) if a not in sold_before}
    pairs = zip(frame["customer_id"], frame["article_id"], strict=True)
    wanted_rows = np.fromiter(((c, a) in wanted for c, a in pairs), dtype=bool, count=len(frame))
    sourced = sources_where(frame, lambda s: any(x != RANDOM_SOURCE for x in s))
    proposed = frame[wanted_rows & sourced]
    with_visual = set(zip(proposed["customer_id"], proposed["article_id"], strict=True))
    others = proposed[sources_where(proposed, lambda s: any(x not in ("visual", RANDOM_SOURCE) for x in s))]
    without_visual = set(zip(others["customer_id"], others["article_id"], strict=True))
    served = {(c, a) for c, a in wanted if a in lists.get(c, [])[:k]}
    total = max(len(wanted), 1)
    return {
        "new_article_purchases": len(wanted),
        "in_candidates": round(len(with_visual) / total, 4),
        "in_candidates_without_visual": round(len(without_visual) / total, 4),
        f"in_top{k}": round(len(served) / total, 4),
    }


def filter_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Candidate rows removed by each business rule (a row can fail several) and rows kept."""
    reasons = frame["removed_by"].explode().dropna().value_counts()
    kept = int(frame["removed_by"].map(len).eq(0).sum())
    return {"candidates": len(frame), **{r: int(n) for r, n in reasons.items()}, "kept": kept}


def global_inputs(snapshot: dict[str, DataFrame]) -> GlobalInputs:
    """The snapshot's inputs from pinned tables; the article_features table when it is among them."""
    return GlobalInputs(
        snapshot[Tables.TRANSACTIONS],
        snapshot[Tables.CUSTOMERS],
        snapshot[Tables.ARTICLES],
        snapshot.get(Tables.ARTICLE_AVAILABILITY),
        snapshot.get(Tables.SIMILAR_ARTICLES),
        snapshot.get(Tables.ARTICLE_FEATURES),
    )


def _qid(frame: pd.DataFrame, week: int) -> pd.DataFrame:
    frame = frame.sort_values("customer_id", kind="stable").reset_index(drop=True)
    codes, _ = pd.factorize(frame["customer_id"])
    return frame.assign(qid=week * 10_000_000 + codes, week=week)


@dataclass
class WeekInputs:
    """A target week's snapshot (its global half, written to `folder`) and its target customers' rows as of
    the week: what the core needs on Spark for the ranker's rows (`candidate_frame`) and for the served
    lists (`week_lists`). `close` removes the folder."""

    week: int
    folder: Path
    artifacts_dir: Path
    customers: DataFrame
    purchases: DataFrame
    tasks: int
    actual: dict[str, list[str]]

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def open_week(
    spark: SparkSession,
    snapshot: dict[str, DataFrame],
    week: int,
    truth: DataFrame,
    config: PipelineConfig,
    artifacts_dir: str | Path,
    personal_tx: DataFrame | None = None,
) -> WeekInputs:
    """Write the snapshot of `week` for the pipeline `config` and define the rows of the buyers in `truth`
    (customer_id, article_ids). The customers' own purchases come from `personal_tx` when given
    (incremental scoring's newer version), else from the snapshot's transactions."""
    inputs = global_inputs(snapshot)
    actual = {r["customer_id"]: list(r["article_ids"]) for r in truth.collect()}
    folder = Path(artifacts_dir) / FRAMES_DIR / f"{week}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        write_global_part(inputs, week, config.to_dict(), folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    targets = truth.select("customer_id")
    own = personal_tx if personal_tx is not None else inputs.global_tx
    tx = own.join(targets, "customer_id", "left_semi")
    people = inputs.customers.join(targets, "customer_id", "left_semi")
    tasks = max(min(spark.sparkContext.defaultParallelism, -(-len(actual) // ROWS_PER_TASK)), 1)
    return WeekInputs(
        week,
        folder,
        Path(artifacts_dir),
        customer_rows(tx, people, inputs.articles, week),
        purchase_rows(tx, week),
        tasks,
        actual,
    )


def candidate_frame(
    inputs: WeekInputs, random_negatives: int = 0, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, float], dict[str, int]]:
    """Labelled ranker rows of the week's buyers: the rows the snapshot's business rules keep, the
    candidate recall per source and the rows each rule removed."""
    rows = candidate_rows(
        inputs.folder,
        inputs.artifacts_dir,
        inputs.customers,
        inputs.purchases,
        inputs.tasks,
        random_negatives,
        seed + inputs.week,
    )
    frame = with_labels(rows.toArrow().to_pandas(), inputs.actual)
    recall = candidate_recall(frame, inputs.actual)
    counts = filter_counts(frame)
    kept = frame[frame["removed_by"].map(len) == 0].drop(columns=["removed_by"])
    return _qid(kept.reset_index(drop=True), inputs.week), recall, counts


def week_frame(
    spark: SparkSession,
    snapshot: dict[str, DataFrame],
    week: int,
    truth: DataFrame,
    config: PipelineConfig,
    artifacts_dir: str | Path,
    random_negatives: int = 0,
    seed: int = 0,
    personal_tx: DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, float], dict[str, int]]:
    """`candidate_frame` of the buyers in `truth` as of `week` (`open_week`), the snapshot removed after."""
    inputs = open_week(spark, snapshot, week, truth, config, artifacts_dir, personal_tx)
    try:
        return candidate_frame(inputs, random_negatives, seed)
    finally:
        inputs.close()


def week_lists(
    inputs: WeekInputs,
    config: PipelineConfig,
    ranker_dir: str | Path | None,
    lengths: dict[str, int],
    customers: Sequence[str] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """method → {customer: list} for the live methods of `lengths` (method → list length): the served
    model's answers for the week's buyers (or `customers` among them), by the core with `config` and the
    ranker in `ranker_dir` (None: the baseline's lists alone)."""
    spark = inputs.customers.sparkSession
    people, purchases = inputs.customers, inputs.purchases
    if customers is not None:
        chosen = spark.createDataFrame([(c,) for c in sorted(customers)], "customer_id string")
        people = people.join(chosen, "customer_id", "left_semi")
        purchases = purchases.join(chosen, "customer_id", "left_semi")
    rows = method_lists(
        inputs.folder,
        inputs.artifacts_dir,
        people,
        purchases,
        inputs.tasks,
        lengths,
        config.to_dict(),
        ranker_dir,
    ).toArrow()
    out: dict[str, dict[str, list[str]]] = {method: {} for method in lengths}
    for customer, method, articles in zip(
        rows.column("customer_id").to_pylist(),
        rows.column("method").to_pylist(),
        rows.column("article_ids").to_pylist(),
        strict=True,
    ):
        out[method][customer] = list(articles)
    return out


def bought_within(frame: pd.DataFrame, weeks: int) -> np.ndarray:
    """The core's already-bought verdict for a window of `weeks` (0: off) on candidate rows
    (`snapshot.spark.ALREADY_BOUGHT_COLUMNS`)."""
    if weeks <= 0:
        return np.zeros(len(frame), dtype=bool)
    return frame[ALREADY_BOUGHT_COLUMNS[weeks]].to_numpy(dtype=bool)
