"""Bundle task `build_index`: catalogue embeddings → FAISS index; retrieval recall on the test week."""

import sys

from fashionrec.config import IndexParams, parse_params


def main(argv: list[str]) -> dict:
    from fashionrec.retrieval.task import run_build_index  # imports TensorFlow and FAISS

    return run_build_index(parse_params(IndexParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("build_index", main(sys.argv[1:]))
