"""Bundle task `ingest_images`: product photos into the `article_images` Delta table (incremental)."""

import sys

from fashionrec.config import ImageIngestParams, parse_params


def main(argv: list[str]) -> dict:
    from fashionrec.lake.images import run_ingest_images

    return run_ingest_images(parse_params(ImageIngestParams, argv))


if __name__ == "__main__":
    from fashionrec.runner.report import print_figures

    print_figures("ingest_images", main(sys.argv[1:]))
