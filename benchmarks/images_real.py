"""Image similarity on real product photos: `python -m benchmarks --only images_real`.

Ingests `../shared/hm_real_images` (16,000 real H&M photos and their article rows, Kaggle layout) into a
scratch lakehouse, then runs the job's own tasks (ingest → ingest_images → train_image_similarity) with the
image settings of the `dev` target, the ones a Databricks user with the Kaggle images gets: 20% of the
products (by product_code) held out, mixing weights chosen on a validation share of the rest. Prints
precision@5 (same product type, same colour group) on the held-out products for the learned model, raw
24-pixel neighbours and random, and leaves the encoder (uint8 images of any size → unit embeddings) at
`artifacts/benchmarks/images_real/encoder`.
"""

from __future__ import annotations

import shutil
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
)


def run(scale: str) -> dict[str, Any]:
    from fashionrec.runner.bundle import load_bundle
    from fashionrec.runner.local import run_job

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
        only=["ingest", "ingest_images", "train_image_similarity"],
        summary_path=WORK / "reports" / "run.json",
    )
    if result.failed:
        raise RuntimeError(f"the image tasks failed in {result.failed}")
    trained = result.figures["train_image_similarity"]
    if ENCODER.exists():
        shutil.rmtree(ENCODER)
    shutil.copytree(Path(trained["model"]), ENCODER)
    return {
        "images": trained["images"],
        "training_images": trained["training_images"],
        "holdout_images": trained["holdout_images"],
        "settings": {name: variables[name] for name in IMAGE_VARIABLES},
        "mixing_weights": trained["mixing_weights"],
        "holdout_precision@5": trained["holdout_precision"],
        "training_seconds": trained["seconds"],
        "encoder": str(ENCODER.relative_to(ROOT)),
    }
