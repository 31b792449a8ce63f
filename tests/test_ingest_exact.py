"""Ingest reads the real Kaggle files exactly: every stored value equals what Python's `csv` module reads
from the same file, field by field, for every row (real rows kept under tests/, and ../shared if here)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fashionrec.config import IngestParams, TableLocator
from fashionrec.data.schema import ARTICLES, CUSTOMERS, TRANSACTIONS, TableSpec
from fashionrec.lake.ingest import run_ingest
from fashionrec.lake.tables import read_table
from tests.conftest import HM_ROWS, HM_SAMPLE, needs_shared


def _expected(spec: TableSpec, path: Path) -> list[dict]:
    """The file's rows as Python's csv module reads them, typed as the bronze table stores them."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    typed = []
    for row in rows:
        values = {}
        for column in spec.columns:
            text = row[column.name].strip()
            if text == "":
                values[column.name] = None
            elif column.kind == "int":
                values[column.name] = int(float(text))
            elif column.kind == "float":
                values[column.name] = float(text)
            elif column.kind == "date":
                values[column.name] = text
            else:
                values[column.name] = text
        typed.append(values)
    return typed


def _stored(spark, tables: TableLocator, spec: TableSpec) -> list[dict]:
    frame = read_table(spark, tables, spec.table).select(*spec.column_names)
    rows = [r.asDict() for r in frame.collect()]
    for row in rows:
        if "t_dat" in row:
            row["t_dat"] = row["t_dat"].isoformat()
    return rows


def _key(row: dict) -> tuple:
    return tuple("" if v is None else str(v) for v in row.values())


def check_exact(spark, folder: Path, lakehouse: Path) -> dict:
    figures = run_ingest(IngestParams(lakehouse=str(lakehouse), data_path=str(folder)), spark)
    tables = TableLocator(lakehouse=str(lakehouse))
    for spec in (ARTICLES, CUSTOMERS, TRANSACTIONS):
        expected = _expected(spec, folder / spec.default_file)
        stored = _stored(spark, tables, spec)
        assert figures["table_rows"][spec.table] == len(expected), spec.table
        assert sorted(stored, key=_key) == sorted(expected, key=_key), spec.table
    assert figures["table_rows"].get("quarantine", 0) == 0
    return figures


def test_real_rows_in_the_repository_are_stored_exactly(spark, lakehouse):
    figures = check_exact(spark, HM_ROWS, lakehouse)
    tables = TableLocator(lakehouse=str(lakehouse))
    articles = read_table(spark, tables, "articles")
    quoted = articles.where("detail_desc LIKE '%13\" laptops%'").first()
    assert quoted is not None and '""' not in quoted["detail_desc"]  # `""` in the file is one quote
    assert articles.where("length(article_id) != 10 OR article_id NOT LIKE '0%'").count() == 0
    customers = read_table(spark, tables, "customers")
    assert customers.where("FN IS NULL").count() > 0 and customers.where("FN = 1.0").count() > 0
    assert figures["table_rows"]["transactions"] == 30


@pytest.mark.parametrize("folder", ["hm_format_sample"])
def test_the_shared_real_sample_is_stored_exactly(spark, lakehouse, folder):
    needs_shared(HM_SAMPLE)
    check_exact(spark, HM_SAMPLE.parent / folder, lakehouse)
