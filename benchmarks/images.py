"""Image benchmark: product images decoded and embedded per second by the saved image encoder.

Uses the `small` catalogue's synthetic JPEGs (5,000) and the image model in data/small_artifacts
(trained there by the train_image_similarity task first if missing). One process, the way an
`index_images` Spark task embeds its share of the images.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.common import peak_rss_gib
from fashionrec.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]


def _ensure_model(scale: str) -> Path:
    """The image model of data/<scale>_artifacts, trained there by the job's image tasks if missing."""
    from fashionrec.runner.local import run_job
    from fashionrec.similarity.encoder import ENCODER_DIR

    artifacts, lakehouse = Path("data") / f"{scale}_artifacts", Path("data") / f"{scale}_lakehouse"
    if not (artifacts / ENCODER_DIR / "saved_model.pb").exists():
        result = run_job(
            ROOT,
            target="local",
            variables={
                "data_path": f"data/{scale}",
                "images_path": f"data/{scale}/images",
                "lakehouse_dir": str(lakehouse),
                "artifacts_dir": str(artifacts),
                "mlflow_tracking_uri": "sqlite:///data/bench_mlflow.db",
                "reports_dir": "data/bench_reports",
                "real_images_path": "",
            },
            only=["ingest", "ingest_images", "train_image_similarity"],
            summary_path=Path("data") / "bench_reports" / "images_run.json",
            quiet=True,
        )
        if result.failed:
            raise RuntimeError(f"the job graph failed in {result.failed}")
    return artifacts / ENCODER_DIR


def run(scale: str) -> dict[str, Any]:
    from fashionrec.similarity import encoder
    from fashionrec.similarity.images import decode

    scale = "small" if scale == "full" else scale  # the full generator writes no images
    generate(scale, Path("data") / scale)
    folder = _ensure_model(scale)
    files = sorted((Path("data") / scale / "images").rglob("*.jpg"))
    contents = [f.read_bytes() for f in files]
    started = time.perf_counter()
    pixels = decode(contents)
    decode_s = time.perf_counter() - started
    model = encoder.load(folder)
    encoder.embed_saved(model, pixels[:64])  # first call traces the graph
    started = time.perf_counter()
    vectors = encoder.embed_saved(model, pixels)
    embed_s = time.perf_counter() - started
    return {
        "images": len(files),
        "embedding_dim": int(vectors.shape[1]),
        "decode_images_per_s": round(len(files) / decode_s, 1),
        "embed_images_per_s": round(len(files) / embed_s, 1),
        "decode_and_embed_images_per_s": round(len(files) / (decode_s + embed_s), 1),
        "peak_rss_gib": peak_rss_gib(),
    }
