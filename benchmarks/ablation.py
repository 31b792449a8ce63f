"""What the learned candidate sources add to the pipeline: on the demo's test week, the ranking stage run
with every source, without the two-tower source and without the visual one; union candidate recall and the
pipeline's MAP@12 of each, with the MAP ratio's 95% interval paired by customer.

Each variant retrains the ranker (`train_ranker`, as the job runs it) on a copy of the demo's lakehouse and
artifacts, so the demo itself is left as it was. `python -m benchmarks --only ablation` after `make demo`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from pyspark.sql import functions as F

from fashionrec.config import RankingParams, Tables
from fashionrec.evaluation.metrics import average_precision_at_k
from fashionrec.evaluation.pooled import bootstrap_indices, pooled, ratio
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import read_table
from fashionrec.ranking.task import run_train_ranker

ROOT = Path(__file__).resolve().parents[1]
K = 12
VARIANTS = {
    "every source": {},
    "without two_tower": {"two_tower_candidates": 0},
    "without visual": {"visual_candidates": 0},
}


def _variant(lakehouse: Path, artifacts: Path, reports: Path, changes: dict[str, int]) -> dict[str, Any]:
    """The ranking stage with `changes`; its test-week lists and candidate recall."""
    spark = get_spark("fashionrec-ablation")
    params = RankingParams(
        lakehouse=str(lakehouse),
        artifacts_dir=str(artifacts),
        reports_dir=str(reports),
        data_path=str(ROOT / "data" / "small"),
        mlflow_tracking_uri=f"sqlite:///{reports / 'mlflow.db'}",
        **changes,
    )
    figures = run_train_ranker(params, spark)
    lists = read_table(spark, params.tables, Tables.RANKED_CANDIDATES).where(F.col("split") == "test")
    return {
        "lists": {r["customer_id"]: list(r["article_ids"]) for r in lists.collect()},
        "recall": figures["candidate_recall_test"],
    }


def run(scale: str = "small") -> dict[str, Any]:
    lakehouse, artifacts = ROOT / "lakehouse", ROOT / "artifacts"
    if not (lakehouse / Tables.RANKED_CANDIDATES).exists() or not (artifacts / "retrieval").exists():
        raise RuntimeError("no demo lakehouse with a trained pipeline here: run `make demo` first")
    spark = get_spark("fashionrec-ablation")
    truth = read_table(spark, RankingParams(lakehouse=str(lakehouse)).tables, Tables.GROUND_TRUTH)
    actual = {r["customer_id"]: list(r["article_ids"]) for r in truth.where("split = 'test'").collect()}
    customers = sorted(actual)
    results = {}
    with tempfile.TemporaryDirectory(prefix="ablation-") as folder:
        for name, changes in VARIANTS.items():
            work = Path(folder) / name.replace(" ", "_")
            shutil.copytree(lakehouse, work / "lakehouse")
            shutil.copytree(
                artifacts, work / "artifacts", ignore=shutil.ignore_patterns("backtest", "frames")
            )
            print(f"  ablation: {name}", flush=True)
            results[name] = _variant(work / "lakehouse", work / "artifacts", work / "reports", changes)
            shutil.rmtree(work)
    scores = {
        name: [average_precision_at_k(actual[c], r["lists"].get(c, []), K) for c in customers]
        for name, r in results.items()
    }
    indices = bootstrap_indices(len(customers), 1000, 0)
    full = scores["every source"]
    table = []
    for name, values in scores.items():
        p = pooled(values, indices)
        row = {
            "variant": name,
            "union_recall": results[name]["recall"]["union"],
            f"map@{K}": round(p.mean, 5),
            "ci95": f"{p.low:.4f}–{p.high:.4f}",
        }
        if name != "every source":
            r = ratio(values, full, indices)
            row["x every source"] = f"{r.mean:.3f} ({r.low:.3f}–{r.high:.3f})"
        table.append(row)
    recall = results["every source"]["recall"]
    return {
        "customers": len(customers),
        "variants": table,
        "union_without_two_tower (same candidates)": recall.get("union_without_two_tower"),
        "union_without_visual (same candidates)": recall.get("union_without_visual"),
    }
