"""Local Spark listens on this machine only, and tests run without its UI."""

from __future__ import annotations

import os
from pathlib import Path


def test_local_spark_binds_to_loopback_and_tests_run_without_the_ui(spark):
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert conf.get("spark.driver.host") == "127.0.0.1"
    assert os.environ["SPARK_LOCAL_IP"] == "127.0.0.1"  # what the UI and block manager bind to
    assert conf.get("spark.ui.enabled") == "false"
    if Path("/proc/net/tcp").exists():  # the driver's port listens on loopback, not a wildcard address
        port = int(conf.get("spark.driver.port"))
        addresses = [
            line.split()[1].rsplit(":", 1)[0]
            for table in ("/proc/net/tcp", "/proc/net/tcp6")
            if Path(table).exists()
            for line in Path(table).read_text().splitlines()[1:]
            if line.split()[3] == "0A" and int(line.split()[1].rsplit(":", 1)[1], 16) == port
        ]
        assert addresses and all(set(address) - {"0"} for address in addresses), addresses


def test_a_hyperopt_search_runs_its_trials_on_spark_and_finds_the_minimum(spark):
    """`training.tuning.search` on the local session: every trial a Spark task, the best point returned,
    and no PySpark warning per trial (hyperopt starts its threads without a session)."""
    import warnings

    from hyperopt import hp

    from fashionrec.training.tuning import search

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = search(
            spark, lambda v: {"loss": (v["x"] - 1) ** 2, "status": "ok"}, {"x": hp.uniform("x", -3, 3)}, 6
        )
    assert len(found.trials) == 6 and all(t["status"] == "ok" for t in found.trials)
    assert (
        found.best_loss == min(t["loss"] for t in found.trials)
        and abs(found.best["x"] - 1) ** 2 == found.best_loss
    )
    assert not [w for w in caught if "Spark session is not provided" in str(w.message)]
