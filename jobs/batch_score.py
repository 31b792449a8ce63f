"""Bundle task `batch_score`: the top-12 of every customer into the `recommendations` table (incremental)."""

import sys

from fashionrec.config import ScoringParams, parse_params


def main(argv: list[str]) -> dict:
    from fashionrec.ranking.score import run_batch_score  # imports XGBoost (and TensorFlow in Spark tasks)

    return run_batch_score(parse_params(ScoringParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("batch_score", main(sys.argv[1:]))
