"""Bundle task `stream` (job `fashionrec_stream`, continuous): shop events into transactions and the online store."""

import sys

from fashionrec.config import StreamParams, parse_params


def main(argv: list[str]) -> dict:
    from fashionrec.streaming.task import run_stream

    return run_stream(parse_params(StreamParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("stream", main(sys.argv[1:]))
