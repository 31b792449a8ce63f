"""Bundle task `train_image_similarity`: image model (TensorFlow Similarity, multi-similarity loss) on article_images."""

import sys

from fashionrec.config import ImageSimilarityParams, parse_params


def main(argv: list[str]) -> dict:
    from fashionrec.similarity.task import run_train_image_similarity  # imports TensorFlow

    return run_train_image_similarity(parse_params(ImageSimilarityParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("train_image_similarity", main(sys.argv[1:]))
