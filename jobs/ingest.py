"""Bundle task `ingest`: the retailer's CSV files into bronze Delta tables."""

import sys

from fashionrec.config import IngestParams, parse_params
from fashionrec.lake.ingest import run_ingest


def main(argv: list[str]) -> dict:
    return run_ingest(parse_params(IngestParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("ingest", main(sys.argv[1:]))
