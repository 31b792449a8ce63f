"""Landing benchmark: the ingest task alone on a landing folder, as the daily job meets it.

Generates `<scale>` with its last 8 days kept out as daily files (`generate --daily-files 8`, cached in
data/<scale>-daily), hard-links the Kaggle files into a scratch landing folder and times: the first full
ingest, an unchanged run, one new day (the first daily file) and one new week (the other seven files,
landed together). Targets (issue 24, full scale): first ingest ≤ 300 s, unchanged ≤ 30 s.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import peak_rss_gib, timed
from fashionrec.config import IngestParams
from fashionrec.data.daily import ARRIVALS
from fashionrec.data.synthetic import generate
from fashionrec.lake.ingest import run_ingest
from fashionrec.lake.session import get_spark

DAYS = 8  # one day, then a week
KAGGLE_FILES = ("articles.csv", "customers.csv", "transactions_train.csv", "article_availability.csv")


def daily_data(scale: str) -> Path:
    """data/<scale>-daily: the scale with its last DAYS days as files under arrivals/ (cached)."""
    data = Path("data") / f"{scale}-daily"
    generate(scale, data, daily_files=DAYS, images=False)
    return data


def landing_folder(data: Path, root: Path) -> tuple[Path, list[Path]]:
    """A scratch landing folder holding (hard links to) the Kaggle files, and the daily files to land."""
    landing = root / "landing"
    (landing / "transactions").mkdir(parents=True)
    for name in KAGGLE_FILES:
        os.link(data / name, landing / name)
    return landing, sorted((data / ARRIVALS).glob("*.csv"))


def land(files: list[Path], landing: Path) -> int:
    """Link daily files into the landing folder's transactions/; returns their rows."""
    rows = 0
    for file in files:
        os.link(file, landing / "transactions" / file.name)
        rows += sum(1 for _ in file.open()) - 1
    return rows


def run(scale: str) -> dict[str, Any]:
    data = daily_data(scale)
    root = Path(tempfile.mkdtemp(prefix=f"bench-landing-{scale}-"))
    figures: dict[str, Any] = {"scale": scale}
    try:
        landing, days = landing_folder(data, root)
        spark = get_spark("fashionrec-bench-landing")
        params = IngestParams(lakehouse=str(root / "lakehouse"), data_path=str(landing))
        with timed(figures, "first_ingest_s"):
            first = run_ingest(params, spark)
        figures["first_ingest_rows"] = first["table_rows"]
        with timed(figures, "unchanged_s"):
            unchanged = run_ingest(params, spark)
        figures["unchanged_files_read"] = unchanged["files_read"]
        for name, files in (("day", days[:1]), ("week", days[1:])):
            figures[f"{name}_rows_landed"] = land(files, landing)
            with timed(figures, f"{name}_s"):
                result = run_ingest(params, spark)
            figures[f"{name}_files_read"] = result["files_read"]
            figures[f"{name}_inserted"] = sum(r["inserted"] for r in result["ingest"])
        figures["targets_s"] = {"first_ingest": 300, "unchanged": 30}
        figures["peak_rss_gib"] = peak_rss_gib()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return figures
