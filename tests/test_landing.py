"""The landing folder on real Spark and Delta: daily files read once each, equal to one full ingest; an
unchanged run commits nothing; a re-landed file is not double-counted; a changed file is reported and
read again."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from fashionrec.config import IngestParams, TableLocator
from fashionrec.data.daily import ARRIVALS, split_last_days
from fashionrec.lake.ingest import run_ingest
from fashionrec.lake.tables import read_table
from tests.helpers import read_lines, write_lines

BRONZE = ("articles", "customers", "transactions", "article_availability")


def ingest(spark, data: Path, lakehouse: Path):
    return run_ingest(IngestParams(lakehouse=str(lakehouse), data_path=str(data)), spark)


def land(day_file: Path, data: Path, name: str | None = None) -> Path:
    target = data / "transactions" / (name or day_file.name)
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(day_file, target)
    return target


def same_rows(spark, left: Path, right: Path, table: str) -> bool:
    a = read_table(spark, TableLocator(lakehouse=str(left)), table)
    b = read_table(spark, TableLocator(lakehouse=str(right)), table).select(*a.columns)
    return a.exceptAll(b).isEmpty() and b.exceptAll(a).isEmpty()


@pytest.fixture(scope="module")
def daily_lake(spark, tiny_data, tmp_path_factory) -> dict:
    """The tiny set with its last two days held back as daily files: the rest ingested, then each day
    landed and ingested on its own. Test order: the first test reads it, the second goes on changing it."""
    root = tmp_path_factory.mktemp("daily")
    data = root / "data"
    shutil.copytree(tiny_data, data)
    days = [Path(p) for p in split_last_days(data, 2)]
    lakehouse = root / "lakehouse"
    runs = [ingest(spark, data, lakehouse)]
    for day in days:
        land(day, data)
        runs.append(ingest(spark, data, lakehouse))
    return {"data": data, "lakehouse": lakehouse, "days": days, "runs": runs}


def test_daily_files_landed_one_by_one_give_the_tables_of_one_full_ingest(spark, daily_lake, tiny_ingest):
    full_lakehouse, full = tiny_ingest
    data, lakehouse, days = daily_lake["data"], daily_lake["lakehouse"], daily_lake["days"]
    base, *landed = daily_lake["runs"]
    assert [p.parent.name for p in days] == [ARRIVALS] * 2
    assert base["files_read"] == 4 and base["micro_batches"] == 1
    assert base["ignored_files"] == sorted(str(p) for p in days)  # not in the landing layout

    rows = base["table_rows"]["transactions"]
    for day, figures in zip(days, landed, strict=True):
        read = figures["ingest"]
        assert [(r["table"], r["source_file"]) for r in read] == [
            ("transactions", str(data / "transactions" / day.name))
        ]
        assert read[0]["inserted"] == len(read_lines(day)) - 1 and figures["micro_batches"] == 1
        rows += read[0]["inserted"]
        assert figures["table_rows"]["transactions"] == rows
    assert rows == full["table_rows"]["transactions"]
    for table in BRONZE:
        assert same_rows(spark, full_lakehouse, lakehouse, table), table

    unchanged = ingest(spark, data, lakehouse)
    assert unchanged["files_read"] == 0 and unchanged["micro_batches"] == 0
    assert unchanged["changed_files"] == [] and unchanged["versions"] == landed[-1]["versions"]


def test_a_relanded_file_is_not_double_counted_and_a_changed_file_is_reported(spark, daily_lake):
    """Also: a bad row in a daily file is quarantined with that file's path and line."""
    data_copy, lakehouse, days = daily_lake["data"], daily_lake["lakehouse"], daily_lake["days"]
    landed = data_copy / "transactions" / days[0].name
    rows = daily_lake["runs"][-1]["table_rows"]["transactions"]

    time.sleep(0.01)
    land(days[0], data_copy)  # the same file copied in again: a new modification time
    again = ingest(spark, data_copy, lakehouse)
    assert [c["path"] for c in again["changed_files"]] == [str(landed)]
    assert again["ingest"][0]["inserted"] == 0 and again["table_rows"]["transactions"] == rows
    copy = land(days[0], data_copy, name="copy-of-" + days[0].name)  # the same rows under a new name
    renamed = ingest(spark, data_copy, lakehouse)
    assert renamed["changed_files"] == [] and renamed["ingest"][0]["source_file"] == str(copy)
    assert renamed["ingest"][0]["inserted"] == 0 and renamed["table_rows"]["transactions"] == rows

    lines = read_lines(landed)
    extra = lines[1].replace(lines[1].split(",")[3], "0.0999", 1)  # one more purchase that day
    write_lines(landed, [*lines, extra, lines[1].rsplit(",", 1)[0] + ",9"])  # and a bad sales channel
    changed = ingest(spark, data_copy, lakehouse)
    report = changed["changed_files"]
    assert [(c["path"], c["table"]) for c in report] == [(str(landed), "transactions")]
    assert report[0]["now"]["length"] == os.path.getsize(landed) > report[0]["recorded"]["length"]
    read = changed["ingest"][0]
    assert read["changed"] and (read["inserted"], read["quarantined"]) == (1, 1)
    assert changed["table_rows"]["transactions"] == rows + 1
    tables = TableLocator(lakehouse=str(lakehouse))
    assert read_table(spark, tables, "transactions").where(F.col("price") == 0.0999).count() == 1
    bad = read_table(spark, tables, "quarantine").where(F.col("source_file") == str(landed)).first()
    assert (bad["line"], bad["column"], bad["reason"]) == (len(lines) + 2, "sales_channel_id", "not_allowed")
