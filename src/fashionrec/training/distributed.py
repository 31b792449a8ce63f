"""Data-parallel training on Spark: one TensorFlow worker per Spark barrier-mode task.

`run_on_barrier(spark, fn, workers)` starts `workers` tasks together (barrier mode: all or none), each
binds a free port, the addresses are exchanged with `BarrierTaskContext.allGather`, and each task sets
`TF_CONFIG` for `tf.distribute.MultiWorkerMirroredStrategy` before calling `fn(WorkerContext)`. The same
code trains on a multi-GPU Databricks job cluster and on two local workers in the tests.

Why not Horovod: horovod 0.28.1 does not build against TensorFlow 2.21 and Databricks deprecated
HorovodRunner in favour of `tf.distribute`; `horovod_available()` reports whether it imports.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pyspark.sql import SparkSession

T = TypeVar("T")


@dataclass(frozen=True)
class WorkerContext:
    """What a training function needs to know about its place in the cluster."""

    index: int
    workers: int
    addresses: tuple[str, ...]

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def tf_config(self) -> dict[str, Any]:
        return {"cluster": {"worker": list(self.addresses)}, "task": {"type": "worker", "index": self.index}}

    def all_gather(self, message: str) -> list[str]:
        """Exchange a string with every worker (only inside a barrier task; single-worker: itself)."""
        if self.workers == 1:
            return [message]
        from pyspark import BarrierTaskContext

        return list(BarrierTaskContext.get().allGather(message))


SINGLE = WorkerContext(index=0, workers=1, addresses=())


def _free_port() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1" if _local_host() else "", 0))
    return sock, sock.getsockname()[1]


def _local_host() -> bool:
    return os.environ.get("FASHIONREC_SPARK_MASTER", "local").startswith("local")


def _host() -> str:
    return "127.0.0.1" if _local_host() else socket.gethostbyname(socket.gethostname())


def run_on_barrier(spark: SparkSession, fn: Callable[[WorkerContext], T], workers: int) -> list[T]:
    """Run `fn` on `workers` Spark barrier tasks with TF_CONFIG set; results in worker order.

    With `workers == 1` it runs `fn` in this process (no strategy needed, no Spark task start-up).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        return [fn(SINGLE)]
    slots = spark.sparkContext.defaultParallelism
    if workers > slots:
        raise ValueError(
            f"{workers} training workers need {workers} concurrent Spark task slots, the cluster has {slots}"
        )

    def task(_: Any) -> Any:
        from pyspark import BarrierTaskContext

        context = BarrierTaskContext.get()
        sock, port = _free_port()
        addresses = tuple(context.allGather(f"{_host()}:{port}"))
        sock.close()  # released just before TensorFlow binds it
        worker = WorkerContext(index=context.partitionId(), workers=workers, addresses=addresses)
        os.environ["TF_CONFIG"] = json.dumps(worker.tf_config())
        result = fn(worker)
        context.barrier()
        yield worker.index, result

    rdd = spark.sparkContext.parallelize(range(workers), workers).barrier().mapPartitions(task)
    return [result for _, result in sorted(rdd.collect(), key=lambda pair: pair[0])]


def horovod_available() -> bool:
    try:
        import horovod.tensorflow  # noqa: F401
    except Exception:  # ImportError, or a broken build raising something else at import
        return False
    return True
