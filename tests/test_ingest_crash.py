"""An ingest killed with SIGKILL in the middle of writing, then run again, leaves the same tables as a run
that was never interrupted: each table commit is atomic (Delta) and the re-run is idempotent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from fashionrec.config import IngestParams, TableLocator
from fashionrec.lake.ingest import run_ingest
from fashionrec.lake.tables import read_table
from tests.conftest import REPO_ROOT

SCRIPT = """
import sys
from fashionrec.config import IngestParams
from fashionrec.lake.ingest import run_ingest
run_ingest(IngestParams(lakehouse=sys.argv[1], data_path=sys.argv[2]))
"""


def _contents(spark, lakehouse, table: str) -> list[tuple]:
    frame = read_table(spark, TableLocator(lakehouse=str(lakehouse)), table)
    columns = [c for c in frame.columns if c != "quarantined_at"]
    return sorted(tuple(r) for r in frame.select(*columns).collect())


def test_ingest_killed_mid_write_then_rerun_equals_a_clean_run(spark, tiny_data, tiny_ingest, tmp_path):
    clean, _ = tiny_ingest
    lakehouse = tmp_path / "lakehouse"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "SPARK_LOCAL_IP": "127.0.0.1"}
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(lakehouse), str(tiny_data)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its JVM too is in this process group
    )
    deadline = time.time() + 300
    target = lakehouse / "transactions"  # the last table written, after articles and customers
    while not (target.exists() and any(target.iterdir())) and process.poll() is None:
        assert time.time() < deadline, "the ingest never started writing transactions"
        time.sleep(0.02)
    alive = process.poll() is None
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert alive, "the ingest finished before it could be killed"
    committed = sorted(p.name for p in (target / "_delta_log").glob("*.json")) if target.exists() else []

    run_ingest(IngestParams(lakehouse=str(lakehouse), data_path=str(tiny_data)), spark)
    for table in ("articles", "customers", "transactions", "quarantine"):
        if (clean / table).exists():
            assert _contents(spark, lakehouse, table) == _contents(spark, clean, table), (table, committed)
    transactions = read_table(spark, TableLocator(lakehouse=str(lakehouse)), "transactions")
    assert transactions.count() == transactions.select("txn_id").distinct().count()
