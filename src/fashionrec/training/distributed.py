"""Data-parallel training on Spark: one TensorFlow worker per Spark barrier-mode task.

`run_on_barrier(spark, fn, workers)` starts `workers` tasks together (barrier mode: all or none), each
binds a free port, the addresses are exchanged with `BarrierTaskContext.allGather`, and each task sets
`TF_CONFIG` for `tf.distribute.MultiWorkerMirroredStrategy` before calling `fn(WorkerContext)`. The same
code trains on a multi-GPU Databricks job cluster and on two local workers in the tests.

GPUs: when the cluster schedules GPU resources (`spark.task.resource.gpu.amount`), each task reads the
addresses Spark assigned to it (`TaskContext.resources()`) and makes only those visible to TensorFlow
(`CUDA_VISIBLE_DEVICES`) before TensorFlow touches a device, so two tasks on one multi-GPU node never share
a GPU; the collective is NCCL on GPUs and ring on CPUs. Without GPU resources nothing changes. Hyperopt
trials (`training.tuning.search`) bind their task's GPU the same way.

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
    gpus: tuple[str, ...] = ()  # the GPU addresses Spark gave this task (all that TensorFlow sees)

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

# Set by `expose_gpus` the first time in this process: a Python worker that Spark reuses for a task with
# another GPU cannot switch, because CUDA reads CUDA_VISIBLE_DEVICES once, at TensorFlow's first GPU use.
_exposed: tuple[str, ...] | None = None


def task_gpus() -> tuple[str, ...]:
    """The GPU addresses Spark assigned to the running task; () outside a task or without GPU scheduling."""
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:
        return ()
    gpu = context.resources().get("gpu")
    return tuple(gpu.addresses) if gpu is not None else ()


def expose_gpus(gpus: tuple[str, ...]) -> None:
    """Make only `gpus` visible to TensorFlow in this process (no-op for an empty tuple).

    Must run before TensorFlow's first device use; raises if this Python worker already exposed others.
    """
    global _exposed
    if not gpus:
        return
    if _exposed is not None and _exposed != gpus:
        raise RuntimeError(
            f"this Spark Python worker already gave TensorFlow GPU(s) {','.join(_exposed)} and cannot switch to "
            f"{','.join(gpus)}: set spark.python.worker.reuse=false on GPU training clusters"
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    _exposed = gpus


def bind_task_gpus() -> tuple[str, ...]:
    """Expose the running task's GPUs to TensorFlow and return their addresses."""
    gpus = task_gpus()
    expose_gpus(gpus)
    return gpus


def multi_worker_strategy(worker: WorkerContext) -> Any:
    """`MultiWorkerMirroredStrategy` for several workers (NCCL on GPUs, ring on CPUs); None for one.

    Must be created before any other TensorFlow op of the process.
    """
    if worker.workers == 1:
        return None
    from fashionrec.training.tf_env import import_tensorflow

    tf = import_tensorflow()
    implementation = tf.distribute.experimental.CommunicationImplementation
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=implementation.NCCL if worker.gpus else implementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def mixed_precision_policy(requested: bool, on_cpu: bool = False) -> str:
    """Set Keras' global dtype policy: mixed_bfloat16 when requested and a GPU is visible, else float32.

    bfloat16 keeps float32's exponent range, so no loss scaling is needed (the two-tower's custom train
    step has none); Ampere and later GPUs (A10G, A100, H100) compute it natively. On a CPU it only slows
    training down, so it stays off there unless `on_cpu` (the tests' way to run the mixed graph).
    """
    from fashionrec.training.tf_env import import_tensorflow

    tf = import_tensorflow()
    use = requested and (on_cpu or bool(tf.config.list_physical_devices("GPU")))
    policy = "mixed_bfloat16" if use else "float32"
    tf.keras.mixed_precision.set_global_policy(policy)
    return policy


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
        gpus = bind_task_gpus()
        sock, port = _free_port()
        addresses = tuple(context.allGather(f"{_host()}:{port}"))
        sock.close()  # released just before TensorFlow binds it
        worker = WorkerContext(index=context.partitionId(), workers=workers, addresses=addresses, gpus=gpus)
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
