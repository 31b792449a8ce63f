"""Bundle task `train_ranker`: candidates → filters → XGBoost ranker → diversity; MAP@12 on the test week."""

import sys

from fashionrec.config import RankingParams, parse_params


def main(argv: list[str]) -> dict:
    from fashionrec.ranking.task import run_train_ranker  # imports XGBoost (and TensorFlow in Spark tasks)

    return run_train_ranker(parse_params(RankingParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("train_ranker", main(sys.argv[1:]))
