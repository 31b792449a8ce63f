"""`python -m benchmarks [--only NAME] [--scale SCALE]`: run benchmarks, print and record figures."""

from __future__ import annotations

import argparse
import importlib
import os

from benchmarks.common import machine, record
from fashionrec.runner.report import print_figures

BENCHMARKS = ["ingest", "features", "retrieval", "scoring", "images", "serving"]
ON_REQUEST = [
    "soak",
    "realism",
    "backtest",
    "executors",
    "images_real",
    "oracle_gap",
    "landing",
    "refresh",
    "ablation",
    "freshness",
]  # long: run with --only


def main() -> None:
    parser = argparse.ArgumentParser(prog="benchmarks", description=__doc__)
    parser.add_argument("--only", action="append", choices=BENCHMARKS + ON_REQUEST)
    parser.add_argument("--scale", default="full", choices=["tiny", "small", "full", "real"])
    args = parser.parse_args()
    os.environ.setdefault("FASHIONREC_DRIVER_MEMORY", "16g")
    print(f"machine: {machine()}")
    for name in args.only or BENCHMARKS:
        figures = importlib.import_module(f"benchmarks.{name}").run(args.scale)
        print_figures(f"benchmark {name}", figures)
        record(name, figures)


if __name__ == "__main__":
    main()
