"""Ingest on real Spark and real Delta: idempotence, increments, updates, CDF, quarantine, failures."""

from __future__ import annotations

import csv
import os
from datetime import date, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from fashionrec.config import IngestParams, TableLocator
from fashionrec.data.readers import SourceFileError
from fashionrec.lake.ingest import run_ingest
from fashionrec.lake.tables import current_version, read_changes, read_table
from tests.helpers import read_lines, write_lines


def ingest(spark, data: Path, lakehouse: Path, **kwargs):
    return run_ingest(IngestParams(lakehouse=str(lakehouse), data_path=str(data), **kwargs), spark)


def by_table(figures):
    return {row["table"]: row for row in figures["ingest"]}


def csv_rows(path: Path) -> int:
    return len(read_lines(path)) - 1


def test_first_ingest_loads_every_row_with_change_data_feed(spark, tiny_data, tiny_ingest):
    lakehouse, figures = tiny_ingest
    tables = TableLocator(lakehouse=str(lakehouse))
    for name, file in [
        ("articles", "articles.csv"),
        ("customers", "customers.csv"),
        ("transactions", "transactions_train.csv"),
    ]:
        assert figures["table_rows"][name] == csv_rows(tiny_data / file)
        assert by_table(figures)[name]["quarantined"] == 0
        props = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {tables.name(name)}").collect()}
        assert props.get("delta.enableChangeDataFeed") == "true"
    articles = read_table(spark, tables, "articles")
    assert articles.where(F.length("article_id") != 10).count() == 0  # leading zeros kept
    assert dict(read_table(spark, tables, "transactions").dtypes)["t_dat"] == "date"


def test_reingesting_the_same_files_changes_nothing(spark, tiny_data, tiny_ingest):
    lakehouse, first = tiny_ingest
    second = ingest(spark, tiny_data, lakehouse)
    assert second["versions"] == first["versions"]
    assert second["table_rows"] == first["table_rows"]
    assert second["files_read"] == 0 and second["micro_batches"] == 0 and second["ingest"] == []


def test_a_new_week_adds_only_that_weeks_rows(spark, data_copy, lakehouse):
    path = data_copy / "transactions_train.csv"
    lines = read_lines(path)
    last = max(line.split(",", 1)[0] for line in lines[1:])
    cut = (date.fromisoformat(last) - timedelta(days=6)).isoformat()
    new_week = [line for line in lines[1:] if line.split(",", 1)[0] >= cut]
    write_lines(path, [lines[0]] + [line for line in lines[1:] if line.split(",", 1)[0] < cut])
    first = ingest(spark, data_copy, lakehouse)
    version = first["versions"]["transactions"]

    write_lines(path, lines)  # the full file again: old weeks plus the new one
    second = ingest(spark, data_copy, lakehouse)
    assert by_table(second)["transactions"]["inserted"] == len(new_week)
    assert second["table_rows"]["transactions"] == len(lines) - 1
    assert second["versions"]["articles"] == first["versions"]["articles"]

    tables = TableLocator(lakehouse=str(lakehouse))
    changes = read_changes(spark, tables, "transactions", since_version=version)
    assert changes.where("_change_type != 'insert'").count() == 0
    assert changes.count() == len(new_week)
    assert changes.agg(F.min("t_dat")).first()[0].isoformat() == cut


def test_changed_article_updates_in_place_and_shows_in_the_change_feed(spark, data_copy, ingested_copy):
    lakehouse = ingested_copy  # the unchanged files, already ingested
    tables = TableLocator(lakehouse=str(lakehouse))
    version = current_version(spark, tables, "articles")
    path = data_copy / "articles.csv"
    with path.open() as handle:
        rows = list(csv.reader(handle))
    changed_id = rows[5][0]
    rows[5][2] = "Renamed strap top"
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)

    figures = ingest(spark, data_copy, lakehouse)
    assert by_table(figures)["articles"]["updated"] == 1
    assert by_table(figures)["articles"]["inserted"] == 0
    assert figures["table_rows"]["articles"] == len(rows) - 1
    changes = read_changes(spark, tables, "articles", since_version=version).collect()
    assert {(r["article_id"], r["_change_type"]) for r in changes} == {
        (changed_id, "update_preimage"),
        (changed_id, "update_postimage"),
    }
    post = next(r for r in changes if r["_change_type"] == "update_postimage")
    assert post["prod_name"] == "Renamed strap top"


def test_identical_purchases_on_one_day_both_survive(spark, data_copy, lakehouse):
    path = data_copy / "transactions_train.csv"
    lines = read_lines(path)
    write_lines(path, [*lines, lines[1]])  # the same item bought twice the same day at the same price
    figures = ingest(spark, data_copy, lakehouse)
    assert figures["table_rows"]["transactions"] == len(lines)
    os.utime(path)  # landed again: read again, and the two identical rows are still the same two
    again = ingest(spark, data_copy, lakehouse)
    assert by_table(again)["transactions"]["inserted"] == 0
    assert again["table_rows"]["transactions"] == len(lines)


def _bad_rows(data: Path) -> dict[int, str]:
    """Append bad rows to the tiny files; returns {transactions line number: expected reason}."""
    articles = read_lines(data / "articles.csv")
    customers = read_lines(data / "customers.csv")
    transactions = read_lines(data / "transactions_train.csv")
    good_article = articles[1].split(",")[0]
    good_customer = customers[1].split(",")[0]
    write_lines(data / "articles.csv", [*articles, articles[1]])  # duplicate article id
    write_lines(data / "customers.csv", [*customers, "c" * 64 + ",,,ACTIVE,NONE,7.0,x"])  # age 7
    day = transactions[1].split(",")[0]
    bad = {
        f"{day},{good_customer},{good_article},0.02": "malformed_line",
        f"2020-13-45,{good_customer},{good_article},0.02,1": "not_a_date",
        f"{day},{good_customer},{good_article},-0.5,1": "out_of_range",
        f"{day},{good_customer},{good_article},abc,2": "not_a_number",
        f"{day},{good_customer},{good_article},0.02,3": "not_allowed",
        f"{day},{good_customer},0999999999,0.02,1": "unknown_article",
        f"{day},{'d' * 64},{good_article},0.02,1": "unknown_customer",
        f"{day},,{good_article},0.02,1": "missing_value",
    }
    write_lines(data / "transactions_train.csv", [*transactions, *bad])
    first_line = len(transactions) + 1
    return {first_line + i: reason for i, reason in enumerate(bad.values())}


def test_bad_rows_go_to_quarantine_with_file_line_column_and_reason(spark, data_copy, lakehouse):
    expected = _bad_rows(data_copy)
    figures = ingest(spark, data_copy, lakehouse)
    tables = TableLocator(lakehouse=str(lakehouse))
    quarantine = read_table(spark, tables, "quarantine")
    found = {
        r["line"]: r["reason"]
        for r in quarantine.where("table = 'transactions'").select("line", "reason").collect()
    }
    assert found == expected
    column_of = {r["line"]: r["column"] for r in quarantine.where("table = 'transactions'").collect()}
    assert column_of[max(expected)] == "customer_id"
    assert {r["source_file"] for r in quarantine.where("table = 'transactions'").collect()} == {
        str(data_copy / "transactions_train.csv")
    }
    others = {
        (r["table"], r["column"], r["reason"]) for r in quarantine.where("table != 'transactions'").collect()
    }
    assert others == {("articles", "article_id", "duplicate_key"), ("customers", "age", "out_of_range")}
    good = csv_rows(data_copy / "transactions_train.csv") - len(expected)
    assert figures["table_rows"]["transactions"] == good
    assert by_table(figures)["transactions"]["quarantined"] == len(expected)
    reasons = {(r["table"], r["reason"]): r["rows"] for r in figures["quarantine_reasons"]}
    assert reasons[("transactions", "unknown_article")] == 1

    again = ingest(spark, data_copy, lakehouse)
    assert again["quarantine_inserted"] == 0
    assert again["versions"]["quarantine"] == figures["versions"]["quarantine"]


def test_a_file_missing_required_columns_fails_and_writes_nothing(spark, data_copy, lakehouse):
    path = data_copy / "transactions_train.csv"
    lines = read_lines(path)
    write_lines(path, [",".join(line.split(",")[:3]) for line in lines])  # drops price, sales_channel_id
    with pytest.raises(SourceFileError) as error:
        ingest(spark, data_copy, lakehouse)
    message = str(error.value)
    assert str(path) in message and "price" in message and "sales_channel_id" in message
    assert not lakehouse.exists() or not any(lakehouse.iterdir())


def test_sampling_keeps_whole_customers(spark, tiny_data, lakehouse):
    figures = ingest(spark, tiny_data, lakehouse, sample_fraction=0.5)
    total = csv_rows(tiny_data / "customers.csv")
    kept = figures["table_rows"]["customers"]
    assert 0.35 * total < kept < 0.65 * total
    assert figures["quarantine_reasons"] == []  # no transaction lost its customer
    assert by_table(figures)["transactions"]["sampled_out"] > 0


def test_the_write_plan_parses_each_line_once(spark, tiny_data):
    """Filters on the validated rows must not be pushed below the validation projection: there they would
    inline the parse once per field they read (35 `from_csv` per row of the uncached write, measured)."""
    from fashionrec.data.readers import read_csv
    from fashionrec.data.schema import TRANSACTIONS
    from fashionrec.data.validation import flag_unknown_references, validate
    from fashionrec.lake.ingest import _bronze_rows

    source = read_csv(spark, str(tiny_data / "transactions_train.csv"), TRANSACTIONS.column_names)
    references = {
        "customer_id": spark.createDataFrame([("c",)], "customer_id string"),
        "article_id": spark.createDataFrame([("a",)], "article_id string"),
    }
    rows = _bronze_rows(
        TRANSACTIONS, flag_unknown_references(validate(source.lines, TRANSACTIONS), references)
    )
    assert rows._jdf.queryExecution().optimizedPlan().toString().count("from_csv(") == 1
