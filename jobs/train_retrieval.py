"""Bundle task `train_retrieval`: two-tower model (TFRS), optional Hyperopt SparkTrials search, MLflow."""

import sys

from fashionrec.config import RetrievalParams, parse_params


def main(argv: list[str]) -> dict:
    from fashionrec.retrieval.task import run_train_retrieval  # imports TensorFlow: keep `--help` fast

    return run_train_retrieval(parse_params(RetrievalParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("train_retrieval", main(sys.argv[1:]))
