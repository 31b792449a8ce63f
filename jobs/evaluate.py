"""Bundle task `evaluate`: baselines and the oracle bound on the test week, logged to MLflow."""

import sys

from fashionrec.config import EvaluateParams, parse_params
from fashionrec.evaluation.task import run_evaluate


def main(argv: list[str]) -> dict:
    return run_evaluate(parse_params(EvaluateParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("evaluate", main(sys.argv[1:]))
