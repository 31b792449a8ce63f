"""Shared fixtures: one local Spark session and one `tiny` synthetic data set per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("FASHIONREC_DRIVER_MEMORY", "2g")
os.environ.setdefault("FASHIONREC_SHUFFLE_PARTITIONS", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
# Real rows of the Kaggle files kept in the repository: a clone tests the real format without ../shared.
HM_ROWS = REPO_ROOT / "tests" / "data" / "hm_rows"
# Optional extra real data beside the checkout (absent on a bare clone: tests using it skip, saying why).
SHARED = REPO_ROOT.parent / "shared"
HM_SAMPLE = SHARED / "hm_format_sample"


def needs_shared(folder: Path) -> None:
    """Skip the calling test, with the reason, when the optional `../shared` data is not here."""
    if not folder.exists():
        pytest.skip(f"optional real data {folder} is not beside this checkout (a bare clone has none)")


# Fixtures that start Spark (directly or through another): a test that uses one is an integration test.
SPARK_FIXTURES = {"spark", "tiny_ingest", "tiny_lake", "job_run", "ingested_copy"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark integration tests (real Spark, Delta, MLflow, HTTP) apart from unit tests, so
    `pytest -m "not integration"` (`make test-unit`) checks the runtime, metrics and parsing in seconds."""
    for item in items:
        if SPARK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def spark():
    from fashionrec.lake.session import get_spark

    session = get_spark("fashionrec-tests", testing=True)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The `tiny` synthetic data set (Kaggle file formats), generated once; treat as read-only."""
    from fashionrec.data.synthetic import generate

    out = tmp_path_factory.mktemp("tiny") / "data"
    generate("tiny", out, seed=7, progress=False)
    return out


@pytest.fixture()
def data_copy(tiny_data, tmp_path) -> Path:
    """A private copy of the tiny data set that a test may edit."""
    target = tmp_path / "data"
    shutil.copytree(tiny_data, target)
    return target


@pytest.fixture()
def lakehouse(tmp_path) -> Path:
    return tmp_path / "lakehouse"


BRONZE_TABLES = ("articles", "customers", "transactions", "article_availability", "quarantine")


@pytest.fixture(scope="session")
def tiny_ingest(spark, tiny_data, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny data set ingested once into a fresh lakehouse; returns (lakehouse, the ingest's figures).

    Read-only for tests, except for re-ingests of the same files that must change nothing."""
    from fashionrec.config import IngestParams
    from fashionrec.lake.ingest import run_ingest

    lakehouse = tmp_path_factory.mktemp("tiny_lake") / "lakehouse"
    figures = run_ingest(IngestParams(lakehouse=str(lakehouse), data_path=str(tiny_data)), spark)
    return lakehouse, figures


def copy_folders(source: Path, target: Path, names: tuple[str, ...]) -> Path:
    """Copy the named folders of a lakehouse (those that exist) into `target`; returns `target`."""
    for name in names:
        if (source / name).exists():
            shutil.copytree(source / name, target / name)
    return target


@pytest.fixture()
def ingested_copy(tiny_ingest, tmp_path) -> Path:
    """A private lakehouse holding a copy of the ingested tiny bronze tables, as if just ingested.

    Path-based Delta tables keep relative file paths in their log, so a copied folder is the same table."""
    source, _ = tiny_ingest
    return copy_folders(source, tmp_path / "lakehouse", BRONZE_TABLES)


@pytest.fixture(scope="session")
def tiny_lake(spark, tiny_ingest):
    """The tiny data set ingested and featurised once (3 as-of weeks); returns (TableLocator, figures).

    Read-only for tests, except for a re-run of the features task that must change nothing."""
    from fashionrec.config import FeaturesParams, TableLocator
    from fashionrec.features.pipeline import run_features

    lakehouse, _ = tiny_ingest
    figures = run_features(FeaturesParams(lakehouse=str(lakehouse), feature_weeks=3), spark)
    return TableLocator(lakehouse=str(lakehouse)), figures


@pytest.fixture(scope="session")
def job_run(spark, tiny_data, tiny_ingest, tmp_path_factory) -> Iterator[Path]:
    """The whole job graph on the tiny data set, run once by the local runner; returns its folder.

    The lakehouse starts as a copy of the ingested tiny files (their bronze tables, `landed_files` and the
    landing stream's checkpoint), so the graph's ingest task finds nothing new: the first ingest is tested
    on its own (`tiny_ingest`), and the graph spends its time on the later tasks.
    Read-only: a test that lands files, scores or registers works on a copy (`tests.helpers.copy_job_run`);
    the session's end checks that no file here changed.
    """
    tmp_path = tmp_path_factory.mktemp("job")
    ingested, _ = tiny_ingest
    copy_folders(ingested, tmp_path / "lakehouse", (*BRONZE_TABLES, "landed_files", "_checkpoints"))
    from fashionrec.runner.local import run_job
    from tests.helpers import folder_fingerprint

    result = run_job(
        REPO_ROOT,
        target="local",
        variables={
            "data_path": str(tiny_data),
            "images_path": str(tiny_data / "images"),
            "lakehouse_dir": str(tmp_path / "lakehouse"),
            "mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "reports_dir": str(tmp_path / "reports"),
            "artifacts_dir": str(tmp_path / "artifacts"),
            "max_evals": "1",
            "retrieval_epochs": "2",
            "image_epochs": "1",
            "image_steps_per_epoch": "25",
            "ranker_train_weeks": "1",  # the earlier-weeks path at the cost of one week's frame
        },
        summary_path=tmp_path / "reports" / "latest_run.json",
        quiet=True,
    )
    assert result.failed is None, result.failed
    before = folder_fingerprint(tmp_path)
    yield tmp_path
    after = folder_fingerprint(tmp_path)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"tests wrote into the read-only job_run fixture: {changed[:20]}"


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> Iterator[str]:
    """A real PostgreSQL server for the session (skips, saying why, where none is installed)."""
    from tests.postgres_server import postgres_bin, postgres_server

    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed here (no initdb); .ci/run installs it")
    folder = Path(tempfile.mkdtemp(prefix="fashionrec-pg-"))
    os.chmod(folder, 0o755)
    with postgres_server(folder / "server") as url:
        yield url
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def online_store_url(request, tmp_path) -> str:
    """Each online store backend: a fresh SQLite file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'online.db'}"
    import psycopg

    server = request.getfixturevalue("postgres_url")
    name = f"t{abs(hash(request.node.nodeid)) % 10**12}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")
        connection.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}"
