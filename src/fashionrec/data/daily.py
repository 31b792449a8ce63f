"""Split a Kaggle-format transactions file into what a retailer lands later: one file per day.

`fashionrec generate --daily-files N` keeps all but the last N days in `transactions_train.csv` and writes
each of those days to `arrivals/<yyyy-mm-dd>.csv` (same header). Landing a day is then a copy into the
`transactions/` folder that the ingest reads (README: "Daily files"). Values are copied as text, so the
rows of the daily files are byte for byte those of the original file.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ARRIVALS = "arrivals"
TRANSACTIONS_FILE = "transactions_train.csv"


def _writer(sink: object, schema: pa.Schema) -> pacsv.CSVWriter:
    return pacsv.CSVWriter(
        sink, schema, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none")
    )


def split_last_days(folder: str | Path, days: int) -> list[str]:
    """Move the last `days` days of `folder/transactions_train.csv` into `folder/arrivals/<day>.csv`;
    returns the files written, in date order. The shortened file replaces the original atomically."""
    folder = Path(folder)
    source = folder / TRANSACTIONS_FILE
    header = source.open().readline().rstrip("\r\n")
    names = header.split(",")
    strings = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names}, strings_can_be_null=False
    )
    last = max(pc.max(b.column("t_dat")).as_py() for b in _batches(source, strings) if b.num_rows)
    cut = (date.fromisoformat(last) - timedelta(days=days - 1)).isoformat()
    out = folder / ARRIVALS
    out.mkdir(exist_ok=True)
    kept = source.with_suffix(".csv.tmp")
    per_day: dict[str, list[pa.RecordBatch]] = {}
    schema = pa.schema([(name, pa.string()) for name in names])
    with kept.open("wb") as sink, _writer(sink, schema) as writer:
        sink.write((header + "\n").encode())
        for batch in _batches(source, strings):
            late = pc.greater_equal(batch.column("t_dat"), cut)
            writer.write_batch(batch.filter(pc.invert(late)))
            for day, rows in _by_day(batch.filter(late)).items():
                per_day.setdefault(day, []).append(rows)
    written = []
    for day in sorted(per_day):
        path = out / f"{day}.csv"
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("wb") as sink, _writer(sink, schema) as writer:
            sink.write((header + "\n").encode())
            for rows in per_day[day]:
                writer.write_batch(rows)
        tmp.replace(path)
        written.append(str(path))
    kept.replace(source)
    return written


def _batches(path: Path, convert: pacsv.ConvertOptions) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(path, convert_options=convert, read_options=pacsv.ReadOptions(block_size=1 << 24))


def _by_day(batch: pa.RecordBatch) -> dict[str, pa.RecordBatch]:
    if batch.num_rows == 0:
        return {}
    return {
        day: batch.filter(pc.equal(batch.column("t_dat"), day))
        for day in pc.unique(batch.column("t_dat")).to_pylist()
    }
