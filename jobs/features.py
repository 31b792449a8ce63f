"""Bundle task `features`: point-in-time features, splits, ground truth, retrieval training set."""

import sys

from fashionrec.config import FeaturesParams, parse_params
from fashionrec.features.pipeline import run_features


def main(argv: list[str]) -> dict:
    return run_features(parse_params(FeaturesParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("features", main(sys.argv[1:]))
