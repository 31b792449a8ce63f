"""Bundle task `register`: the recommender pyfunc into the MLflow registry; `champion` only if it is no worse."""

import sys

from fashionrec.config import RegisterParams, parse_params


def main(argv: list[str]) -> dict:
    from fashionrec.serving.register import run_register  # imports MLflow and Spark

    return run_register(parse_params(RegisterParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("register", main(sys.argv[1:]))
