"""Image similarity on real product photos: `python -m benchmarks --only images_real`.

Ingests `../shared/hm_real_images` (16,000 real H&M photos and their article rows, Kaggle layout) into a
scratch lakehouse, then runs the job's own tasks (ingest → ingest_images → train_image_similarity) with the
image settings of the `dev` target, the ones a Databricks user with the Kaggle images gets: 20% of the
products (by product_code) held out, mixing weights chosen on a validation share of the rest. With the
pretrained backbone (`image_architecture` names `efficientnet_lite0` for a key) train_image_similarity
runs twice: stage 1 alone (the backbone frozen, only the layers above it trained) and the dev settings
(stage 1, then its top blocks fine-tuned). Prints precision@5 (same product type, same colour group) on the held-out products for
each, the frozen ImageNet features, raw 24-pixel neighbours and random; training time; the saved encoder's
embedding throughput on this CPU (a batch, and one photo at a time); and leaves the encoder (uint8 images
of any size → unit embeddings) at `artifacts/benchmarks/images_real/encoder`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "hm_real_images"
WORK = ROOT / "data" / "benchmarks" / "images_real"
ENCODER = ROOT / "artifacts" / "benchmarks" / "images_real" / "encoder"
HEADERS = {  # the other two Kaggle files, empty: this benchmark needs only the catalogue
    "customers.csv": "customer_id,FN,Active,club_member_status,fashion_news_frequency,age,postal_code\n",
    "transactions_train.csv": "t_dat,customer_id,article_id,price,sales_channel_id\n",
}
IMAGE_VARIABLES = (
    "image_class_keys",
    "image_size",
    "image_architecture",
    "image_width",
    "image_learning_rate",
    "image_loss",
    "image_epochs",
    "image_steps_per_epoch",
    "image_unfreeze_blocks",
    "image_head_epochs",
    "image_augment_copies",
)
FROZEN_STAGE = {"image_unfreeze_blocks": "0"}  # stage 1 alone: the backbone's weights as downloaded
THROUGHPUT_PHOTOS = 512
SINGLE_PHOTOS = 32
PHOTO_SIZE = 128  # the shared photos' own size


def run(scale: str) -> dict[str, Any]:
    from fashionrec.runner.bundle import load_bundle
    from fashionrec.runner.local import run_job
    from fashionrec.similarity.backbone import ARCHITECTURE as PRETRAINED

    if not (REAL / "images").is_dir():
        raise RuntimeError(
            f"{REAL} is not here: this benchmark trains on the real photos of ../shared/hm_real_images "
            "(a bare clone has none; the Kaggle images in the same layout work too)"
        )
    if WORK.exists():
        shutil.rmtree(WORK)  # a fresh lakehouse and model every run
    data = WORK / "data"
    data.mkdir(parents=True)
    shutil.copy(REAL / "articles.csv", data / "articles.csv")
    for name, header in HEADERS.items():
        (data / name).write_text(header)
    dev = load_bundle(ROOT).resolve_variables("dev")
    variables = {name: str(dev[name]) for name in IMAGE_VARIABLES} | {
        "data_path": str(data),
        "images_path": str(REAL / "images"),
        "lakehouse_dir": str(WORK / "lakehouse"),
        "artifacts_dir": str(WORK / "artifacts"),
        "mlflow_tracking_uri": f"sqlite:///{WORK / 'mlflow.db'}",
        "reports_dir": str(WORK / "reports"),
        "image_max_evals": "0",
        "training_workers": "1",
    }
    result = run_job(
        ROOT,
        target="local",
        variables=variables,
        only=["ingest", "ingest_images"],
        summary_path=WORK / "reports" / "ingest.json",
    )
    if result.failed:
        raise RuntimeError(f"the image tasks failed in {result.failed}")
    stages = {"fine-tuned": variables}
    pretrained = PRETRAINED in variables["image_architecture"].split(",")
    if pretrained and variables["image_unfreeze_blocks"] != "0":
        stages = {"stage 1 alone (backbone frozen)": variables | FROZEN_STAGE, "stages 1 + 2": variables}
    trained = {name: _train(settings) for name, settings in stages.items()}
    final = trained[list(stages)[-1]]
    if ENCODER.exists():
        shutil.rmtree(ENCODER)
    shutil.copytree(Path(final["model"]), ENCODER)
    return {
        "images": final["images"],
        "training_images": final["training_images"],
        "holdout_images": final["holdout_images"],
        "settings": {name: variables[name] for name in IMAGE_VARIABLES},
        "mixing_weights": final["mixing_weights"],
        "holdout_precision@5": _table(trained),
        "training_seconds": {name: t["seconds"] for name, t in trained.items()},
        "embedding_photos_per_second": _throughput(ENCODER),
        "encoder": str(ENCODER.relative_to(ROOT)),
    }


def _train(variables: dict[str, str]) -> dict[str, Any]:
    from fashionrec.runner.local import run_job

    result = run_job(
        ROOT,
        target="local",
        variables=variables,
        only=["train_image_similarity"],
        summary_path=WORK / "reports" / "run.json",
    )
    if result.failed:
        raise RuntimeError(f"train_image_similarity failed with {variables}")
    return result.figures["train_image_similarity"]


def _table(trained: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each stage's learned rows (named by stage), then the untrained baselines once."""
    rows: list[dict[str, Any]] = []
    baselines: list[dict[str, Any]] = []
    for stage, figures in trained.items():
        for row in figures["holdout_precision"]:
            if row["method"].startswith("learned"):
                rows.append(
                    {**row, "method": f"{row['method']}, {stage}" if len(trained) > 1 else row["method"]}
                )
            elif row not in baselines:
                baselines.append(row)
    return rows + baselines


def _throughput(folder: Path) -> dict[str, float]:
    """Photos embedded per second by the saved encoder from decoded uint8 photos at their own size (128
    px): in batches of 256, the way index_images embeds, and one photo per call, the way search by photo
    does."""
    from fashionrec.similarity import encoder
    from fashionrec.similarity.images import decode

    files = sorted((REAL / "images").rglob("*.jpg"))[:THROUGHPUT_PHOTOS]
    pixels = decode([f.read_bytes() for f in files], PHOTO_SIZE)
    model = encoder.load(folder)
    encoder.embed_saved(model, pixels[:8])  # traced once before timing
    started = time.perf_counter()
    encoder.embed_saved(model, pixels, batch=256)
    batch = len(pixels) / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(SINGLE_PHOTOS):
        encoder.embed_saved(model, pixels[i : i + 1])
    single = SINGLE_PHOTOS / (time.perf_counter() - started)
    return {"batch_of_256": round(batch, 1), "one_at_a_time": round(single, 1)}
