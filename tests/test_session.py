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
