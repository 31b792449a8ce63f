"""Small helpers for tests that edit Kaggle-format CSV files."""

from __future__ import annotations

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
