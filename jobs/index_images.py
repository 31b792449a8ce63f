"""Bundle task `index_images`: visual neighbours of every article into similar_articles (only new or changed images re-embedded)."""

import sys

from fashionrec.config import ImageIndexParams, parse_params


def main(argv: list[str]) -> dict:
    from fashionrec.similarity.task import run_index_images  # imports TensorFlow

    return run_index_images(parse_params(ImageIndexParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("index_images", main(sys.argv[1:]))
