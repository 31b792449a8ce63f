"""Ingest benchmark: the three files of a scale into a fresh lakehouse (generation excluded).

Target (issue 2): full scale (1.37M customers, 105k articles, ~31.8M transactions) under 5 minutes
on a 2-core, 24 GiB machine. Also times an idempotent re-run and the rows per second.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import peak_rss_gib, timed
from fashionrec.config import IngestParams
from fashionrec.data.synthetic import generate
from fashionrec.lake.ingest import run_ingest
from fashionrec.lake.session import get_spark


def run(scale: str) -> dict[str, Any]:
    data = Path("data") / scale
    manifest = generate(scale, data)  # cached: skipped when data/<scale> already holds it
    lakehouse = Path(tempfile.mkdtemp(prefix=f"bench-ingest-{scale}-"))
    figures: dict[str, Any] = {"scale": scale, "transactions_in_file": manifest["transactions"]}
    try:
        spark = get_spark("fashionrec-bench-ingest")
        params = IngestParams(lakehouse=str(lakehouse), data_path=str(data))
        with timed(figures, "first_ingest_s"):
            first = run_ingest(params, spark)
        with timed(figures, "rerun_s"):
            rerun = run_ingest(params, spark)
        figures["rows_per_s"] = round(sum(first["table_rows"].values()) / figures["first_ingest_s"])
        figures["transactions_rows"] = first["table_rows"]["transactions"]
        figures["rerun_inserted"] = sum(r["inserted"] + r["updated"] for r in rerun["ingest"])
        figures["per_table_s"] = {r["table"]: r["seconds"] for r in first["ingest"]}
        figures["target_s"] = 300
        figures["meets_target"] = figures["first_ingest_s"] < 300
        figures["peak_rss_gib"] = peak_rss_gib()
    finally:
        shutil.rmtree(lakehouse, ignore_errors=True)
    return figures
