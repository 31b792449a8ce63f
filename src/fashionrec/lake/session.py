"""Spark session factory: local Spark with Delta on this machine, the active session on Databricks."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

_REPO_ROOT = Path(__file__).resolve().parents[3]
LOCAL_JAVA_OPTIONS = "-Dlog4j2.level=ERROR -XX:+UseParallelGC"


def on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def delta_jars() -> list[str]:
    """Delta Lake jars fetched by `make setup` (build/pom.xml) into .jars, or $FASHIONREC_JARS."""
    folder = os.environ.get("FASHIONREC_JARS") or str(_REPO_ROOT / ".jars")
    jars = sorted(glob.glob(os.path.join(folder, "*.jar")))
    if not any("delta-spark" in Path(j).name for j in jars):
        raise RuntimeError(
            f"Delta Lake jars not found in {folder}. Run `make setup` (it fetches them from Maven Central "
            "with build/pom.xml), or point FASHIONREC_JARS at a folder holding delta-spark_2.13 and delta-storage."
        )
    return jars


def get_spark(app_name: str = "fashionrec", *, testing: bool = False) -> SparkSession:
    """The session every task uses.

    On Databricks the runtime's session is returned untouched. Locally: `local[*]`, Delta's SQL extension
    and catalog, few shuffle partitions (2 cores here), no UI or console progress under tests.
    Memory: FASHIONREC_DRIVER_MEMORY (default 4g) since local mode runs everything in the driver JVM.
    """
    if on_databricks():
        return SparkSession.builder.getOrCreate()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    cores = os.cpu_count() or 2
    # Python tasks (barrier training, Hyperopt trials, pandas UDFs) must run in this interpreter, the
    # one with fashionrec and its pinned dependencies, not whatever `python3` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Local Spark listens on this machine only: the UI binds to SPARK_LOCAL_IP (all interfaces otherwise)
    # and the driver to spark.driver.bindAddress/host (the host's address otherwise).
    local_ip = os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    partitions = os.environ.get("FASHIONREC_SHUFFLE_PARTITIONS", str(2 * cores if testing else 4 * cores))
    builder = (
        SparkSession.builder.appName(app_name)
        .master(os.environ.get("FASHIONREC_SPARK_MASTER", "local[*]"))
        .config("spark.jars", ",".join(delta_jars()))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.driver.memory", os.environ.get("FASHIONREC_DRIVER_MEMORY", "4g"))
        .config("spark.driver.bindAddress", local_ip)
        .config("spark.driver.host", local_ip)
        .config("spark.sql.shuffle.partitions", partitions)
        .config("spark.default.parallelism", partitions)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.adaptive.enabled", "true")
        # Jobs without a pool share the default pool first in, first out, as without it; a job in a pool
        # of its own (the stream's table writes) leaves free cores to the others (Databricks' default).
        .config("spark.scheduler.mode", "FAIR")
        # Delta rebuilds table state with 50 partitions by default: far too many for a 2-core machine.
        .config("spark.databricks.delta.snapshotPartitions", str(cores))
        .config("spark.databricks.delta.properties.defaults.enableChangeDataFeed", "true")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        # PySpark 4 records the Python call site of every DataFrame/Column call in the JVM (five py4j round
        # trips each) to enrich error messages: about a third of the driver time of this project's jobs on
        # small data. FASHIONREC_DATAFRAME_DEBUGGING=true turns it back on.
        .config(
            "spark.python.sql.dataFrameDebugging.enabled",
            os.environ.get("FASHIONREC_DATAFRAME_DEBUGGING", "false"),
        )
        # The parallel collector: local mode runs batch work in one JVM whose heap churns through Arrow
        # and shuffle buffers; G1's pauses and concurrent cycles took 18% of a test run's wall time
        # (72.6 s of 400 s, GC log), the parallel collector's 11 s.
        .config(
            "spark.driver.extraJavaOptions", os.environ.get("FASHIONREC_JAVA_OPTIONS", LOCAL_JAVA_OPTIONS)
        )
    )
    if testing:
        builder = builder.config("spark.ui.enabled", "false")
    warehouse = os.environ.get("FASHIONREC_SPARK_WAREHOUSE")
    if warehouse:
        builder = builder.config("spark.sql.warehouse.dir", warehouse)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
