"""Small helpers for tests: Kaggle-format CSV files, a private copy of the whole-graph run."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def last_day(transactions: Path) -> str:
    return max(line.split(",", 1)[0] for line in read_lines(transactions)[1:])


def recommendation_rows(spark, lakehouse: Path) -> dict[str, tuple]:
    """The `recommendations` table: customer id → (article ids, scores, fallback)."""
    rows = spark.read.format("delta").load(str(lakehouse / "recommendations")).collect()
    return {r["customer_id"]: (list(r["article_ids"]), list(r["scores"]), r["fallback"]) for r in rows}


def warm_and_cold(rows: dict[str, tuple]) -> tuple[list[str], str]:
    """Two customers with a personal list and one with the fallback list, from `recommendation_rows`."""
    warm = sorted(c for c, (_, _, fallback) in rows.items() if not fallback)[:2]
    cold = sorted(c for c, (_, _, fallback) in rows.items() if fallback)[0]
    return warm, cold


def land_next_day(
    spark, lakehouse: Path, tiny_data: Path, landing: Path, customers: list[str]
) -> tuple[str, dict]:
    """A daily file lands in `landing` and is ingested: one purchase each by `customers` on the day after the
    tiny set's last one. Returns (day, the ingest summary)."""
    from datetime import date, timedelta

    from fashionrec.config import IngestParams
    from fashionrec.lake.ingest import run_ingest

    tx_file = tiny_data / "transactions_train.csv"
    day = (date.fromisoformat(last_day(tx_file)) + timedelta(days=1)).isoformat()
    article = read_lines(tx_file)[1].split(",")[2]
    (landing / "transactions").mkdir(parents=True)
    write_lines(
        landing / "transactions" / f"{day}.csv",
        [read_lines(tx_file)[0], *(f"{day},{c},{article},0.0250,2" for c in customers)],
    )
    return day, run_ingest(IngestParams(lakehouse=str(lakehouse), data_path=str(landing)), spark)


def folder_fingerprint(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` → (size, modification time in ns): what a test that only reads leaves as
    it found it."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def copy_job_run(source: Path, target: Path) -> Path:
    """A private copy of the whole-graph run (lakehouse, artifacts, MLflow registry) for a test that writes,
    so that the session's `job_run` stays as the job graph left it. The registry stores absolute artifact
    locations: they are moved to the copy, so new runs and model versions land in it."""
    shutil.copytree(source, target)
    old, new = str(source), str(target)
    with sqlite3.connect(target / "mlflow.db") as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in db.execute(f'PRAGMA table_info("{table}")').fetchall():
                name, kind = column[1], str(column[2]).upper()
                if "CHAR" in kind or "TEXT" in kind:
                    db.execute(
                        f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?) WHERE instr("{name}", ?) > 0',
                        (old, new, old),
                    )
    return target
