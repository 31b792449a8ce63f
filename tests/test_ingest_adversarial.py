"""Ingest under damaged input: every record of every file ends up either in its table or in quarantine
with the right reason, and a file that cannot be ingested stops the run before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fashionrec.config import IngestParams, TableLocator
from fashionrec.data.readers import SourceFileError
from fashionrec.lake.ingest import run_ingest
from fashionrec.lake.tables import read_table
from tests.conftest import HM_ROWS

OK = "ok"


@dataclass
class DamagedFile:
    """A CSV file built record by record (bytes), remembering what each record should become."""

    name: str
    newline: bytes = b"\n"
    records: list[tuple[bytes, str]] = field(default_factory=list)  # (record, OK or quarantine reason)
    blank: int = 0

    def add(self, record: bytes | str, outcome: str = OK) -> None:
        self.records.append((record.encode() if isinstance(record, str) else record, outcome))

    def add_blank(self) -> None:
        self.records.append((b"", "blank"))
        self.blank += 1

    def write(self, folder: Path, header: bytes, prefix: bytes = b"") -> dict[int, str]:
        """Write the file; returns {first line of each record: outcome}."""
        lines, outcomes, number = [prefix + header], {}, 1
        for record, outcome in self.records:
            number += 1
            if outcome != "blank":
                outcomes[number] = outcome
            lines.append(record)
            number += record.count(b"\n")
        (folder / self.name).write_bytes(self.newline.join(lines) + self.newline)
        return outcomes


def _real(name: str) -> tuple[bytes, list[bytes]]:
    header, *rows = (HM_ROWS / name).read_bytes().rstrip(b"\n").split(b"\n")
    return header, rows


@pytest.fixture(scope="module")
def damaged(spark, tmp_path_factory):
    """Real rows plus every kind of damage, ingested once: (figures, expected outcomes, lakehouse)."""
    folder = tmp_path_factory.mktemp("damaged")
    art_header, art_rows = _real("articles.csv")
    cus_header, cus_rows = _real("customers.csv")
    tx_header, tx_rows = _real("transactions_train.csv")
    article = art_rows[0].split(b",")[0].decode()
    fields = art_rows[0].decode().split(",")[:24]

    # articles.csv: UTF-8 BOM, CRLF line ends.
    articles = DamagedFile("articles.csv", newline=b"\r\n")
    for row in art_rows:
        articles.add(row)
    articles.add(",".join(["0900000001", *fields[1:]]) + ',"Soft, ""cosy"" jersey, with a print."')
    articles.add(",".join(["0900000002", *fields[1:]]) + ',"Two lines:\r\nsecond, with a comma"')
    articles.add_blank()
    articles.add(",".join(["0900000003", *fields[1:]]) + ',"open quote never closed', "unterminated_quote")
    not_utf8 = (",".join(["0900000004", *fields[1:]]) + ",Caf\xe9 au lait").encode("latin-1")
    articles.add(not_utf8, "invalid_encoding")
    articles.add(",".join(["0900000005", *fields[1:]]) + ",desc,one too many", "malformed_line")
    articles.add(",".join(["0900000006", *fields[1:10]]), "malformed_line")  # truncated
    articles.add(art_rows[0], "duplicate_key")  # exact duplicate of the first row
    articles.add(",".join(["0900000007", "abc", *fields[2:]]) + ",x", "not_a_number")
    articles.add(",".join(["108775099", *fields[1:]]) + ",leading zero missing")  # padded on ingest
    art_out = articles.write(folder, art_header, prefix="\ufeff".encode())

    # customers.csv: a blank first line before the header.
    customers = DamagedFile("customers.csv")
    for row in cus_rows:
        customers.add(row)
    customers.add("e" * 64 + ",,,ACTIVE,NONE,7.0,x", "out_of_range")
    customers.add("f" * 64 + ",2.0,,ACTIVE,NONE,30.0,x", "not_allowed")
    customers.add_blank()
    cus_lines = customers.write(folder, cus_header, prefix=b"\n")
    cus_out = {line + 1: outcome for line, outcome in cus_lines.items()}  # the blank first line

    customer = cus_rows[0].split(b",")[0].decode()
    transactions = DamagedFile("transactions_train.csv")
    for row in tx_rows:
        transactions.add(row)
    transactions.add(tx_rows[0])  # exact duplicate: a genuine second purchase, both kept
    day = tx_rows[0].split(b",")[0].decode()
    transactions.add(f"{day},{customer},{article},0.02", "malformed_line")
    transactions.add(f"2020-13-45,{customer},{article},0.02,1", "not_a_date")
    transactions.add(f"{day},{customer},{article},-0.5,1", "out_of_range")
    transactions.add(f"{day},{customer},{article},abc,2", "not_a_number")
    transactions.add(f"{day},{customer},{article},0.02,3", "not_allowed")
    transactions.add(f"{day},{customer},0999999999,0.02,1", "unknown_article")
    transactions.add(f"{day},{'d' * 64},{article},0.02,1", "unknown_customer")
    transactions.add(f"{day},not a customer!,{article},0.02,1", "invalid_format")  # checked as a key
    # A key's format is checked only when its table lacks it, so a line bad for another reason names
    # that reason alone.
    transactions.add(f"{day},not a customer!,{article},abc,1", "not_a_number")
    transactions.add(f"{day},,{article},0.02,1", "missing_value")
    transactions.add(f"{day},{customer},{article.lstrip('0')},0.03,1")  # unpadded id: the same article
    transactions.add(b"\x00\x01binary junk\xff\xfe", "invalid_encoding")
    tx_out = transactions.write(folder, tx_header)

    lakehouse = tmp_path_factory.mktemp("damaged_lake") / "lakehouse"
    figures = run_ingest(IngestParams(lakehouse=str(lakehouse), data_path=str(folder)), spark)
    expected = {"articles": art_out, "customers": cus_out, "transactions": tx_out}
    files = {"articles": articles, "customers": customers, "transactions": transactions}
    return figures, expected, files, TableLocator(lakehouse=str(lakehouse))


def test_every_record_is_in_its_table_or_in_quarantine(spark, damaged):
    figures, expected, files, tables = damaged
    by_table = {row["table"]: row for row in figures["ingest"]}
    quarantine = read_table(spark, tables, "quarantine")
    for table, outcomes in expected.items():
        quarantined = {
            r["line"] for r in quarantine.where(f"`table` = '{table}'").select("line").distinct().collect()
        }
        good = sum(outcome == OK for outcome in outcomes.values())
        assert figures["table_rows"][table] == good, table
        assert len(quarantined) == len(outcomes) - good, table
        assert (
            figures["table_rows"][table] + len(quarantined) == len(outcomes) == by_table[table]["rows_read"]
        )
        assert by_table[table]["blank_lines"] == files[table].blank, table
        assert by_table[table]["sampled_out"] == 0, table


def test_each_damaged_line_has_its_reason(spark, damaged):
    _, expected, _, tables = damaged
    rows = read_table(spark, tables, "quarantine").collect()
    for table, outcomes in expected.items():
        found = {}
        for r in rows:
            if r["table"] == table:
                found.setdefault(r["line"], set()).add(r["reason"])
        wanted = {line: {reason} for line, reason in outcomes.items() if reason != OK}
        assert found == wanted, table


def test_quoted_values_are_read_whole(spark, damaged):
    _, _, _, tables = damaged
    articles = {r["article_id"]: r["detail_desc"] for r in read_table(spark, tables, "articles").collect()}
    assert articles["0900000001"] == 'Soft, "cosy" jersey, with a print.'
    # A line break inside a quoted field is kept as "\n" (the text reader drops the file's line ends).
    assert articles["0900000002"] == "Two lines:\nsecond, with a comma"
    assert articles["0108775099"] == "leading zero missing"
    assert "0900000003" not in articles and "0900000004" not in articles
    assert not any("\ufffd" in (text or "") for text in articles.values())


def test_quarantine_is_readable_by_pandas_and_keeps_the_raw_bytes(spark, damaged):
    _, _, files, tables = damaged
    frame = read_table(spark, tables, "quarantine").where("reason = 'invalid_encoding'").toPandas()
    assert len(frame) == 2
    article_line = next(
        record for record, outcome in files["articles"].records if outcome == "invalid_encoding"
    )
    stored = frame.loc[frame["table"] == "articles"].iloc[0]
    assert bytes(stored["raw_bytes"]) == article_line
    assert "\ufffd" in stored["raw"] and stored["raw"].startswith("0900000004")


def test_duplicates_and_unpadded_ids_in_transactions(spark, damaged):
    _, _, _, tables = damaged
    transactions = read_table(spark, tables, "transactions")
    assert transactions.where("article_id NOT RLIKE '^0[0-9]{9}$'").count() == 0
    assert transactions.where("price = 0.03").count() == 1  # the unpadded id matched a known article


@pytest.mark.parametrize(
    ("file", "header", "message"),
    [
        ("articles.csv", None, "repeats column(s) price"),
        ("transactions_train.csv", b"t_dat,customer_id,article_id,price,price,sales_channel_id", "repeats"),
        (
            "customers.csv",
            b"customer_id,,Active,club_member_status,fashion_news_frequency,age,postal_code",
            "empty",
        ),
        ("transactions_train.csv", b"\n\n", "blank"),
    ],
)
def test_a_bad_header_in_any_file_stops_the_run_before_any_write(spark, tmp_path, file, header, message):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("articles.csv", "customers.csv", "transactions_train.csv"):
        (folder / name).write_bytes((HM_ROWS / name).read_bytes())
    if header is None:  # the last file to be written gets the bad header, to prove nothing went before
        folder.joinpath("transactions_train.csv").write_bytes(
            (HM_ROWS / "transactions_train.csv").read_bytes().replace(b"price,", b"price,price,", 1)
        )
        message = "repeats column(s) price"
    elif header == b"\n\n":
        (folder / file).write_bytes(header)
    else:
        rows = (folder / file).read_bytes().split(b"\n", 1)[1]
        (folder / file).write_bytes(header + b"\n" + rows)
    lakehouse = tmp_path / "lakehouse"
    with pytest.raises(SourceFileError) as error:
        run_ingest(IngestParams(lakehouse=str(lakehouse), data_path=str(folder)), spark)
    assert message in str(error.value) and str(folder) in str(error.value)
    assert not lakehouse.exists() or not any(lakehouse.iterdir())
