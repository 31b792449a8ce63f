"""Train on real Spark executors with fake GPUs: run as a script by tests/test_cluster.py.

One Python process can hold only one SparkContext, and the test session's is `local[*]`, so this probe
starts its own: Spark's `local-cluster` master (a standalone master and workers inside the driver JVM,
each executor its own JVM with its own Python workers), with GPU scheduling fed by a discovery script
that gives every worker a different fake GPU address. It runs the project's data-parallel two-tower
training (`run_on_barrier` + `train_worker`) and a Hyperopt SparkTrials search there, and writes what
each task saw (process, GPU address, CUDA_VISIBLE_DEVICES, weights) to a JSON file.

    python tests/cluster_probe.py SPEC.pkl OUT.json [--master local-cluster[2,1,1024]]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

# Each worker runs this once at start-up; mkdir is atomic, so every worker claims a different address.
DISCOVERY_SCRIPT = """#!/usr/bin/env bash
for i in 0 1 2 3 4 5 6 7; do
  if mkdir "{claims}/gpu$i" 2>/dev/null; then echo '{{"name": "gpu", "addresses": ["'$i'"]}}'; exit 0; fi
done
exit 1
"""


def spark_home(folder: Path) -> Path:
    """A SPARK_HOME linking the pip package's bin/jars: local-cluster workers write their `work` folders
    under SPARK_HOME, which should be a scratch folder, not the virtual environment."""
    import pyspark

    package = Path(pyspark.__file__).parent
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("bin", "jars", "python"):
        if (package / name).exists() and not (folder / name).exists():
            (folder / name).symlink_to(package / name)
    return folder


def start_spark(master: str, scratch: Path):
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["SPARK_HOME"] = str(spark_home(scratch / "spark_home"))
    claims = scratch / "gpu_claims"
    claims.mkdir(parents=True, exist_ok=True)
    script = scratch / "fake_gpus.sh"
    script.write_text(DISCOVERY_SCRIPT.format(claims=claims))
    script.chmod(0o755)
    builder = (
        SparkSession.builder.master(master)
        .appName("fashionrec-cluster-probe")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.python.worker.reuse", "false")  # as on the bundle's GPU cluster
    )
    if master.startswith("local-cluster"):
        builder = (
            builder.config("spark.worker.resource.gpu.amount", "1")
            .config("spark.worker.resource.gpu.discoveryScript", str(script))
            .config("spark.executor.resource.gpu.amount", "1")
            .config("spark.task.resource.gpu.amount", "1")
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def train_on_barrier(spark, spec, workers: int) -> list[dict]:
    from fashionrec.retrieval.train import HyperParams, train_worker
    from fashionrec.training.distributed import run_on_barrier

    hp = HyperParams(embedding_dim=16, batch_size=128, epochs=2)

    def work(worker):
        result = train_worker(spec, hp, worker)
        return {
            "index": result.index,
            "pid": os.getpid(),
            "gpus": list(result.gpus),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "examples": result.examples,
            "losses": result.losses,
            "weights_sha256": result.weights_sha256,
        }

    return run_on_barrier(spark, work, workers)


def tune(spark) -> list[dict]:
    from hyperopt import STATUS_OK
    from hyperopt import hp as space

    from fashionrec.training.tuning import search

    def objective(values):
        from fashionrec.training.distributed import task_gpus

        return {
            "loss": (values["x"] - 1.0) ** 2,
            "status": STATUS_OK,
            "pid": os.getpid(),
            "gpus": list(task_gpus()),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    return search(spark, objective, {"x": space.uniform("x", -2.0, 2.0)}, max_evals=2, parallelism=2).trials


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--master", default="local-cluster[2,1,1024]")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    spec = pickle.loads(args.spec.read_bytes())
    started = time.perf_counter()
    spark = start_spark(args.master, args.out.parent / "probe")
    up = time.perf_counter()
    workers = train_on_barrier(spark, spec, args.workers)
    trained = time.perf_counter()
    trials = tune(spark)
    tuned = time.perf_counter()
    report = {
        "master": args.master,
        "driver_pid": os.getpid(),
        "workers": workers,
        "trials": trials,
        "seconds": {
            "start": round(up - started, 1),
            "train": round(trained - up, 1),
            "tune": round(tuned - trained, 1),
        },
    }
    spark.stop()
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["seconds"]))


if __name__ == "__main__":
    main()
