"""Read a CSV file into raw text columns with the file's own line numbers.

Spark's CSV reader drops line numbers, and a quarantine row must say where the bad line was. So the file
is read as text (one row per line, splits in file order), numbered with partition offsets, and parsed
with `from_csv` using the header's own column order: no row is lost, malformed lines keep their text.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

CORRUPT = "_corrupt_record"
LINE = "_line"
RAW = "_raw"


class SourceFileError(ValueError):
    """A source file cannot be ingested at all (missing, empty, or missing required columns)."""


@dataclass(frozen=True)
class CsvSource:
    path: str
    header: list[str]
    lines: DataFrame  # _line (1-based file line), _raw (text), one column per header name, _corrupt_record
    data_lines: int  # lines after the header, blank ones included


def read_header(spark: SparkSession, path: str) -> list[str]:
    """The header line's column names; raises SourceFileError for a missing or empty file."""
    try:
        first = spark.read.text(path).limit(1).collect()
    except Exception as exc:  # AnalysisException for a missing path
        raise SourceFileError(
            f"{path}: cannot read file ({exc.__class__.__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    if not first or not first[0][0].strip():
        raise SourceFileError(f"{path}: file is empty, expected a header line")
    return [name.strip().strip('"') for name in first[0][0].lstrip("\ufeff").split(",")]


def check_columns(path: str, header: list[str], required: list[str]) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise SourceFileError(
            f"{path}: missing required column(s) {', '.join(missing)}; the header has {', '.join(header)}"
        )


def _numbered_lines(spark: SparkSession, path: str) -> tuple[DataFrame, int]:
    """Text lines with their 1-based line number in the file.

    monotonically_increasing_id() is (partition index << 33) + position in partition; adding the line
    counts of the earlier partitions gives the exact line number at the cost of one counting pass.
    """
    text = spark.read.text(path).withColumn("_mid", F.monotonically_increasing_id())
    part = F.shiftright(F.col("_mid"), 33)
    counts = dict(text.groupBy(part.alias("p")).count().collect())
    offset: Column = F.lit(0)
    running = 0
    for p in sorted(counts):
        offset = F.when(part == p, F.lit(running)).otherwise(offset)
        running += counts[p]
    position = F.col("_mid").bitwiseAND(F.lit((1 << 33) - 1))
    numbered = text.select((offset + position + 1).cast("long").alias(LINE), F.col("value").alias(RAW))
    return numbered, running


def read_csv(spark: SparkSession, path: str, required: list[str]) -> CsvSource:
    """Header check first (no work is done for a file that cannot be ingested), then parse lazily."""
    header = read_header(spark, path)
    check_columns(path, header, required)
    schema = ", ".join(f"`{name}` STRING" for name in [*header, CORRUPT])
    numbered, total = _numbered_lines(spark, path)
    lines = numbered.where((F.col(LINE) > 1) & (F.trim(F.col(RAW)) != ""))
    parsed = F.from_csv(
        F.col(RAW), schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    ).alias("_r")
    return CsvSource(path, header, lines.select(LINE, RAW, parsed).select(LINE, RAW, "_r.*"), total - 1)
