"""Two executor processes versus one JVM: the same two-worker barrier training and two-trial SparkTrials
search (`tests/cluster_probe.py`, fake GPUs from a discovery script) on `local[2]` (one JVM, Python
workers forked by it) and on `local-cluster[2,1,1024]` (two executor JVMs, each with its own Python
workers, as on a real cluster). Data: the `tiny` generated set. `python -m benchmarks --only executors`."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MASTERS = ("local[2]", "local-cluster[2,1,1024]")
REPEATS = 2


def _spec(folder: Path) -> Path:
    """The tiny data set generated, ingested and featurised; the two-tower training spec pickled."""
    from fashionrec.config import FeaturesParams, IngestParams, RetrievalParams
    from fashionrec.data.synthetic import generate
    from fashionrec.features.pipeline import run_features
    from fashionrec.lake.ingest import run_ingest
    from fashionrec.lake.session import get_spark
    from fashionrec.retrieval.task import training_spec

    data, lakehouse = folder / "data", str(folder / "lakehouse")
    generate("tiny", data, seed=7, progress=False)
    spark = get_spark("fashionrec-bench-executors")
    run_ingest(IngestParams(lakehouse=lakehouse, data_path=str(data)), spark)
    run_features(FeaturesParams(lakehouse=lakehouse, feature_weeks=3), spark)
    spec, _ = training_spec(spark, RetrievalParams(lakehouse=lakehouse))
    spark.stop()
    path = folder / "spec.pkl"
    path.write_bytes(pickle.dumps(spec))
    return path


def run(scale: str) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-executors-") as tmp:
        spec = _spec(Path(tmp))
        for repeat in range(REPEATS):
            for master in MASTERS:
                out = Path(tmp) / f"report-{repeat}.json"
                subprocess.run(
                    [
                        sys.executable,
                        str(REPO / "tests" / "cluster_probe.py"),
                        str(spec),
                        str(out),
                        "--master",
                        master,
                    ],
                    check=True,
                    capture_output=True,
                )
                seconds = json.loads(out.read_text())["seconds"]
                rows.append(
                    {
                        "master": master,
                        "repeat": repeat + 1,
                        **seconds,
                        "total": round(sum(seconds.values()), 1),
                    }
                )
    return {"scale": "tiny (fixed)", "table": rows}
