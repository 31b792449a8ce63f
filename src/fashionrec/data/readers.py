"""Read a CSV file into raw text columns with the file's own line numbers, exactly as RFC 4180 reads it.

Spark's CSV reader drops line numbers, and a quarantine row must say where the bad line was. So the file
is read as text (one row per line, splits in file order), numbered with partition offsets, and parsed
with `from_csv` using the header's own column order: no row is lost, malformed lines keep their text.

Exactness (tested field by field against Python's `csv` module on real Kaggle rows):
- a quote inside a quoted field is written `""` (RFC 4180) and read back as one `"`;
- a quoted field may span lines: the lines of such a record are joined back into one record, numbered by
  its first line. Such records are rare, so they are found cheaply: only lines with an odd number of quote
  characters can open one, and those few lines are examined on the driver with the same state machine as
  Python's `csv`. A quote left open for more than `MAX_RECORD_LINES` lines is a damaged line, not a
  record: that line alone is quarantined (`unterminated_quote`) and reading goes on with the next line;
- bytes that are not UTF-8 are never decoded into accepted rows: the line is quarantined
  (`invalid_encoding`) with its raw bytes kept as binary;
- blank lines are counted as blank lines; the header is the first line that is not blank.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

CORRUPT = "_corrupt_record"
LINE = "_line"
RAW = "_raw"
VALID_UTF8 = "_valid_utf8"
UNTERMINATED = "_unterminated"

MAX_RECORD_LINES = 50  # a quoted field may span this many lines at most
MAX_OPEN_QUOTE_LINES = 200_000  # lines with an odd number of quotes examined on the driver
HEADER_SEARCH_LINES = 100  # blank lines allowed before the header
CSV_OPTIONS = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT, "escape": '"'}


class SourceFileError(ValueError):
    """A source file cannot be ingested at all (missing, empty, bad header, or missing required columns)."""


@dataclass(frozen=True)
class CsvSource:
    path: str
    header: list[str]
    lines: DataFrame  # _line, _raw, _valid_utf8, _unterminated, one column per header name, _corrupt_record
    data_lines: int  # physical lines after the header
    blank_lines: int  # of those, blank (empty or spaces only)
    continuation_lines: int  # of those, the second and later lines of records spanning several lines

    @property
    def records(self) -> int:
        """Records in the file (what ends up as a table row or a quarantined line)."""
        return self.data_lines - self.blank_lines - self.continuation_lines


def quote_state_after(text: str, inside: bool = False) -> bool:
    """Whether a CSV record is still inside a quoted field after `text` (one physical line).

    Python's `csv` semantics: a quote opens a quoted field only at the start of a field; inside one, `""`
    is a literal quote and a single `"` closes it; elsewhere a quote is an ordinary character."""
    at_field_start = not inside
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if inside:
            if char == '"':
                if i + 1 < n and text[i + 1] == '"':
                    i += 2
                    continue
                inside = False
        elif char == ",":
            at_field_start = True
            i += 1
            continue
        elif char == '"' and at_field_start:
            inside = True
        at_field_start = False
        i += 1
    return inside


def parse_header(path: str, line: str) -> list[str]:
    """Column names of a header line, checked: no empty and no repeated names."""
    names = [name.strip() for name in next(csv.reader([line.lstrip("\ufeff")]))]
    if any(not name for name in names):
        raise SourceFileError(f"{path}: the header has an empty column name: {line!r}")
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise SourceFileError(f"{path}: the header repeats column(s) {', '.join(repeated)}")
    return names


def read_header(spark: SparkSession, path: str) -> tuple[list[str], int]:
    """The header's column names and its line number (the first non-blank line).

    Raises SourceFileError for a missing file, an empty one, or a bad header."""
    try:
        first = [row[0] for row in spark.read.text(path).limit(HEADER_SEARCH_LINES).collect()]
    except Exception as exc:  # AnalysisException for a missing path
        raise SourceFileError(
            f"{path}: cannot read file ({exc.__class__.__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    for number, line in enumerate(first, start=1):
        if line.lstrip("\ufeff").strip():
            if "\ufffd" in line:
                raise SourceFileError(f"{path}: the header (line {number}) is not valid UTF-8")
            return parse_header(path, line), number
    if not first:
        raise SourceFileError(f"{path}: file is empty, expected a header line")
    raise SourceFileError(f"{path}: no header: the first {len(first)} line(s) are blank")


def check_columns(path: str, header: list[str], required: list[str]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise SourceFileError(
            f"{path}: missing required column(s) {', '.join(missing)}; the header has {', '.join(header)}"
        )


def _odd_quotes(raw: Column) -> Column:
    """The line holds an odd number of quote characters. Most lines hold none: `contains` answers them
    without building a copy of every line (the count pass over 31M lines took 39 s with the copy, 18 s
    without)."""
    count = F.length(raw) - F.length(F.replace(raw, F.lit('"'), F.lit("")))
    return raw.contains('"') & (count % 2 == 1)


def _blank(raw: Column) -> Column:
    """Empty or spaces only (what `trim` removes); a line that does not start with a space is not blank,
    which spares trimming a copy of nearly every line."""
    return (F.octet_length(raw) == 0) | (raw.startswith(" ") & (F.trim(raw) == ""))


def _numbered_lines(spark: SparkSession, path: str) -> tuple[DataFrame, int, int, int]:
    """Text lines with their 1-based line number in the file, and (lines, blank lines, odd-quote lines).

    monotonically_increasing_id() is (partition index << 33) + position in partition; adding the line
    counts of the earlier partitions gives the exact line number at the cost of one counting pass, which
    also counts blank lines and lines with an odd number of quotes.
    """
    text = spark.read.text(path).withColumn("_mid", F.monotonically_increasing_id())
    part = F.shiftright(F.col("_mid"), 33)
    stats = (
        text.groupBy(part.alias("p"))
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(_blank(F.col("value")).cast("long")).alias("blank"),
            F.sum(_odd_quotes(F.col("value")).cast("long")).alias("odd"),
        )
        .collect()
    )
    counts = {row["p"]: row["n"] for row in stats}
    offset: Column = F.lit(0)
    running = 0
    for p in sorted(counts):
        offset = F.when(part == p, F.lit(running)).otherwise(offset)
        running += counts[p]
    position = F.col("_mid").bitwiseAND(F.lit((1 << 33) - 1))
    numbered = text.select((offset + position + 1).cast("long").alias(LINE), F.col("value").alias(RAW))
    blank = sum(row["blank"] or 0 for row in stats)
    odd = sum(row["odd"] or 0 for row in stats)
    return numbered, running, blank, odd


@dataclass(frozen=True)
class Stitched:
    """Records spanning lines: {first line: whole record}, their later lines, and unterminated lines."""

    records: dict[int, str]
    continuation: list[int]
    unterminated: list[int]


def stitch_records(path: str, numbered: DataFrame, after_line: int) -> Stitched:
    """Find the records whose quoted field spans lines (see the module's docstring)."""
    odd = (
        numbered.where((F.col(LINE) > after_line) & _odd_quotes(F.col(RAW)))
        .orderBy(LINE)
        .limit(MAX_OPEN_QUOTE_LINES + 1)
        .collect()
    )
    if len(odd) > MAX_OPEN_QUOTE_LINES:
        raise SourceFileError(
            f"{path}: more than {MAX_OPEN_QUOTE_LINES} lines have an unbalanced quote; is it a CSV file?"
        )
    openers = [row[LINE] for row in odd if quote_state_after(row[RAW])]
    if not openers:
        return Stitched({}, [], [])
    wanted = sorted({n for start in openers for n in range(start, start + MAX_RECORD_LINES)})
    lines = numbered.sparkSession.createDataFrame([(n,) for n in wanted], f"{LINE} long")
    text = {row[LINE]: row[RAW] for row in numbered.join(F.broadcast(lines), LINE).collect()}
    records: dict[int, str] = {}
    continuation: list[int] = []
    unterminated: list[int] = []
    covered_until = 0
    for start in openers:
        if start <= covered_until:
            continue  # an odd line that closes (or sits inside) the record before
        inside, end = True, start
        parts = [text[start]]
        while inside and end + 1 in text and end + 1 < start + MAX_RECORD_LINES:
            end += 1
            parts.append(text[end])
            inside = quote_state_after(text[end], inside=True)
        if inside:
            unterminated.append(start)
            continue
        records[start] = "\n".join(parts)
        continuation.extend(range(start + 1, end + 1))
        covered_until = end
    return Stitched(records, continuation, unterminated)


def _apply_stitches(numbered: DataFrame, stitched: Stitched) -> DataFrame:
    spark = numbered.sparkSession
    lines = numbered.withColumn(UNTERMINATED, F.lit(False))
    if stitched.continuation:
        later = spark.createDataFrame([(n,) for n in stitched.continuation], f"{LINE} long")
        lines = lines.join(F.broadcast(later), LINE, "left_anti")
    if stitched.records:
        whole = spark.createDataFrame(list(stitched.records.items()), f"{LINE} long, _record string")
        lines = lines.join(F.broadcast(whole), LINE, "left").select(
            LINE, F.coalesce("_record", RAW).alias(RAW), UNTERMINATED
        )
    if stitched.unterminated:
        lines = lines.withColumn(UNTERMINATED, F.col(LINE).isin(*stitched.unterminated))
    return lines


def read_csv(spark: SparkSession, path: str, required: list[str]) -> CsvSource:
    """Header checks first (no work is done for a file that cannot be ingested), then parse lazily."""
    header, header_line = read_header(spark, path)
    check_columns(path, header, required)
    schema = ", ".join(f"`{name}` STRING" for name in [*header, CORRUPT])
    numbered, total, blank, odd = _numbered_lines(spark, path)
    stitched = stitch_records(path, numbered, header_line) if odd else Stitched({}, [], [])
    lines = _apply_stitches(numbered, stitched).where((F.col(LINE) > header_line) & ~_blank(F.col(RAW)))
    valid = F.is_valid_utf8(F.col(RAW))
    # Invalid bytes are parsed from a repaired copy only so that the parser never sees them; such a line
    # is quarantined whatever it parses to.
    text = F.when(valid, F.col(RAW)).otherwise(F.make_valid_utf8(F.col(RAW)))
    parsed = F.from_csv(text, schema, CSV_OPTIONS).alias("_r")
    return CsvSource(
        path,
        header,
        lines.select(LINE, RAW, valid.alias(VALID_UTF8), UNTERMINATED, parsed).select(
            LINE, RAW, VALID_UTF8, UNTERMINATED, "_r.*"
        ),
        data_lines=total - header_line,
        blank_lines=blank - (header_line - 1),
        continuation_lines=len(stitched.continuation),
    )
