"""GPU binding of training tasks: what a task exposes to TensorFlow (the cluster run is in test_retrieval)."""

from __future__ import annotations

import pytest

from fashionrec.training import distributed
from fashionrec.training.distributed import SINGLE, expose_gpus, multi_worker_strategy, task_gpus


@pytest.fixture()
def fresh_process_state(monkeypatch):
    """This test process stands in for a new Spark Python worker: nothing exposed yet, env restored after."""
    monkeypatch.setattr(distributed, "_exposed", None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_outside_a_spark_task_there_are_no_assigned_gpus():
    assert task_gpus() == ()


def test_a_task_exposes_only_its_own_gpus_and_cannot_switch_later(fresh_process_state, monkeypatch):
    import os

    expose_gpus(())  # CPU cluster: nothing changes
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    expose_gpus(("3",))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    expose_gpus(("3",))  # the same task's GPU again (e.g. a retried step) is fine
    with pytest.raises(RuntimeError, match=r"spark\.python\.worker\.reuse=false"):
        expose_gpus(("1",))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_one_worker_needs_no_multi_worker_strategy():
    assert multi_worker_strategy(SINGLE) is None
