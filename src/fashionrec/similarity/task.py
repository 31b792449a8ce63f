"""Tasks `train_image_similarity` and `index_images` of the bundle job.

train_image_similarity: `article_images` (a pinned Delta version) + article metadata → pixels; products
split into train, validation and holdout by stable hashes; one network per class key (by default product
type, and type×colour), their parts (embeddings; with cosine_softmax also class parts) mixed with weights
chosen on validation products (`similarity.mixing`); (optional) Hyperopt SparkTrials over embedding size,
learning rate and classes per batch, each trial a nested MLflow run scored on validation products; the
final networks train on `workers` Spark barrier tasks (MultiWorkerMirroredStrategy) and are saved as one
encoder SavedModel (`artifacts_dir/similarity/model`), logged to MLflow with the table version and scored
on the holdout.

index_images: embeds only images whose content or model changed since the last run (Delta table
`image_embeddings`, keyed by article and content hash), then writes every article's top-k visual
neighbours to `similar_articles`, with precision@5 of same product type and colour beside random and
raw-pixel neighbours, and a picture of query images with their neighbours.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from fashionrec.config import ImageIndexParams, ImageSimilarityParams, Tables
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import current_version, delta_table, overwrite_table, read_table
from fashionrec.similarity.backbone import ARCHITECTURE as PRETRAINED
from fashionrec.similarity.encoder import ENCODER_DIR
from fashionrec.similarity.images import DISPLAY_SIZE, MODEL_SIZE, decode, raw_pixel_vectors
from fashionrec.similarity.mixing import choose_weights, combine
from fashionrec.similarity.neighbours import (
    nearest,
    neighbour_grid,
    precision_table,
    random_rows,
)
from fashionrec.training.distributed import (
    SINGLE,
    WorkerContext,
    mixed_precision_policy,
    multi_worker_strategy,
    run_on_barrier,
)
from fashionrec.training.tracking import metric_name, tracked_run
from fashionrec.training.tuning import TrialTracking, absolute_tracking_uri, search, start_trial_run

PRECISION_K = 5
# Validation photos the mixing weights are chosen on, at most: every weight vector the climb tries is an
# exact neighbour search among them (~140 for two keys' six parts), so a full catalogue's validation
# share is sampled (hm_real_images has 2,407).
MIX_VALIDATION_PHOTOS = 4_000
CATALOGUE_COLUMNS = (
    "product_code",
    "product_type_no",
    "product_type_name",
    "colour_group_code",
    "colour_group_name",
    "prod_name",
)


def catalogue_images(spark: SparkSession, params: Any, version: int | None = None) -> pd.DataFrame:
    """article_images joined with the article metadata the classes and captions need (pandas)."""
    images = read_table(spark, params.tables, Tables.ARTICLE_IMAGES, version=version)
    articles = read_table(spark, params.tables, Tables.ARTICLES).select("article_id", *CATALOGUE_COLUMNS)
    frame = (
        images.select("article_id", "content", "content_hash")
        .join(articles, "article_id")
        .orderBy("article_id")
    )
    return frame.toArrow().to_pandas()


def class_labels(frame: pd.DataFrame, key: str) -> np.ndarray:
    values = {
        "product_type": frame["product_type_no"].astype(str),
        "product_code": frame["product_code"].astype(str),
        "type_colour": frame["product_type_no"].astype(str) + "/" + frame["colour_group_code"].astype(str),
        "colour": frame["colour_group_code"].astype(str),
    }[key]
    return pd.factorize(values)[0]


def holdout_mask(product_codes: pd.Series, share: float, seed: int) -> np.ndarray:
    """A stable share of products (all colours of a product on the same side)."""
    hashed = pd.util.hash_pandas_object(product_codes.astype(str) + f"/{seed}", index=False).to_numpy()
    return (hashed % 10_000) < share * 10_000


def neighbour_precision(
    embeddings: np.ndarray, frame: pd.DataFrame, k: int = PRECISION_K
) -> dict[str, float]:
    return _precision_of_rows(nearest(embeddings, k)[0], frame)


def _precision_of_rows(rows: np.ndarray, frame: pd.DataFrame) -> dict[str, float]:
    table = precision_table(
        {"model": rows},
        {"type": frame["product_type_no"].to_numpy(), "colour": frame["colour_group_code"].to_numpy()},
    )[0]
    return {key: value for key, value in table.items() if key != "method"}


def _hp(params: ImageSimilarityParams) -> Any:
    from fashionrec.similarity.model import ImageHyperParams

    return ImageHyperParams(
        embedding_dim=params.embedding_dim,
        learning_rate=params.learning_rate,
        classes_per_batch=params.classes_per_batch,
        examples_per_class=params.examples_per_class,
        epochs=params.epochs,
        steps_per_epoch=params.steps_per_epoch,
        augment_copies=params.augment_copies,
        architecture=",".join(params.architectures),
        scratch_size=params.scratch_size,
        width=params.width,
        unfreeze_blocks=params.unfreeze_blocks,
        head_epochs=params.head_epochs,
        fine_tune_rate=params.fine_tune_rate,
        loss=params.loss,
        batch_size=params.batch_size,
        mixed_precision=params.mixed_precision,
        seed=params.seed,
    )


def train_and_score(
    pixels: np.ndarray,
    label_sets: dict[str, np.ndarray],
    validation_pixels: np.ndarray,
    validation: pd.DataFrame,
    holdout_pixels: np.ndarray,
    holdout: pd.DataFrame,
    hp: Any,
    worker: WorkerContext = SINGLE,
    output_dir: str | None = None,
) -> dict[str, Any]:
    """One worker's training of one network per class key (data-parallel when `worker.workers` > 1);
    mixing weights of their parts chosen on validation products; holdout precision of the mix and of each
    part; the chief exports the encoder."""
    strategy = multi_worker_strategy(worker)
    mixed_precision_policy(hp.mixed_precision)
    from fashionrec.similarity import model as image_model

    started = time.perf_counter()
    names, model, losses = image_model.train(
        pixels, label_sets, hp.with_updates(seed=hp.seed + worker.index), strategy, worker.is_chief
    )
    seconds = time.perf_counter() - started
    weights: tuple[float, ...] = tuple(1 / len(names) for _ in names)
    validation_score = float("nan")
    if len(validation) > PRECISION_K:
        rows = np.sort(np.random.default_rng(hp.seed).permutation(len(validation))[:MIX_VALIDATION_PHOTOS])
        chosen = validation.iloc[rows].reset_index(drop=True)
        weights, validation_score = choose_weights(
            image_model.embed(model, validation_pixels[rows]),
            lambda vectors: _objective(neighbour_precision(vectors, chosen)),
        )
    per_model: dict[str, dict[str, float]] = {}
    metrics: dict[str, float] = {}
    held = image_model.embed(model, holdout_pixels) if len(holdout) > PRECISION_K else []
    if held:
        metrics = neighbour_precision(combine(held, weights), holdout)
        per_model = {name: neighbour_precision(e, holdout) for name, e in zip(names, held, strict=True)}
    if output_dir and worker.is_chief:
        image_model.export(model, list(weights), output_dir)
    batch = hp.batch_size if hp.loss == "cosine_softmax" else hp.classes_per_batch * hp.examples_per_class
    images = len(label_sets) * hp.epochs * hp.steps_per_epoch * batch
    return {
        "losses": losses,
        "weights": dict(zip(names, weights, strict=True)),
        "widths": {name: int(out.shape[-1]) for name, out in zip(names, model.outputs, strict=True)},
        "validation_score": validation_score,
        "metrics": metrics,
        "per_model": per_model,
        "images_per_second": images / seconds,
        "seconds": seconds,
    }


def _objective(metrics: dict[str, float]) -> float:
    return float(np.mean(list(metrics.values()))) if metrics else 0.0


def search_space(space: Any, architectures: tuple[str, ...]) -> dict[str, Any]:
    """What Hyperopt chooses: the embedding, the learning rate and the batches' classes; with the
    pretrained backbone (for any key) how many of its top blocks are trained instead of the classes."""
    common = {
        "embedding_dim": space.choice("embedding_dim", [32, 64, 128]),
        "learning_rate": space.loguniform("learning_rate", np.log(3e-4), np.log(1e-2)),
    }
    if PRETRAINED in architectures:
        return common | {"unfreeze_blocks": space.choice("unfreeze_blocks", [0, 2, 4, 6])}
    return common | {"classes_per_batch": space.choice("classes_per_batch", [8, 16, 32])}


def imagenet_features(pixels: np.ndarray, batch: int = 256) -> np.ndarray:
    """Unit-length pooled features of the frozen pretrained backbone (no training on these photos)."""
    from fashionrec.similarity import backbone  # imports TensorFlow

    network = backbone.pretrained(int(pixels.shape[1]))
    parts = [
        network(backbone.preprocess(pixels[i : i + batch]), training=False).numpy()
        for i in range(0, len(pixels), batch)
    ]
    features = np.concatenate(parts)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-9)


def run_train_image_similarity(
    params: ImageSimilarityParams, spark: SparkSession | None = None
) -> dict[str, Any]:
    spark = spark or get_spark("fashionrec-train-image-similarity")
    started = time.perf_counter()
    version = current_version(spark, params.tables, Tables.ARTICLE_IMAGES)
    if version is None:
        raise ValueError(f"article_images not found in {params.tables.describe()}: run ingest_images first")
    frame = catalogue_images(spark, params, version)
    pixels = decode(frame["content"].tolist(), params.image_size)
    held = holdout_mask(frame["product_code"], params.holdout_share, params.seed)
    # Validation products come from the non-holdout ones (a second, independent hash).
    validating = ~held & holdout_mask(frame["product_code"], params.validation_share, params.seed + 1)
    training = ~held & ~validating
    train_frame = frame[training].reset_index(drop=True)
    validation, holdout = frame[validating].reset_index(drop=True), frame[held].reset_index(drop=True)
    label_sets = {key: class_labels(train_frame, key) for key in params.keys}
    split = (pixels[training], label_sets, pixels[validating], validation, pixels[held], holdout)
    baseline = {
        "raw_pixels": neighbour_precision(raw_pixel_vectors(pixels[held]), holdout),
        "random": _precision_of_rows(random_rows(len(holdout), PRECISION_K, params.seed), holdout),
    }
    if PRETRAINED in params.architectures and len(holdout) > PRECISION_K:
        # What the pretrained backbone knows before any training on these photos.
        baseline["imagenet_features"] = neighbour_precision(imagenet_features(pixels[held]), holdout)
    base_hp = _hp(params)
    final_dir = Path(params.artifacts_dir) / ENCODER_DIR
    staging = final_dir.with_name(f"model.tmp-{uuid.uuid4().hex[:8]}")
    tracking_uri = absolute_tracking_uri(params.mlflow_tracking_uri)
    with tracked_run(
        tracking_uri, params.experiment, "train_image_similarity", {"task": "train_image_similarity"}
    ) as run:
        mlflow.log_params(
            {
                "version.article_images": version,
                "class_keys": ",".join(params.keys),
                "images": len(frame),
                "training_images": int(training.sum()),
                "validation_images": len(validation),
                "holdout_images": len(holdout),
                "workers": params.workers,
            }
        )
        hp, trials = base_hp, []
        if params.max_evals > 0:
            from hyperopt import STATUS_OK
            from hyperopt import hp as space

            tracking = TrialTracking(tracking_uri, run.info.experiment_id, run.info.run_id)

            def objective(values: dict[str, Any]) -> dict[str, Any]:
                trial_hp = base_hp.with_updates(
                    **{k: int(v) if isinstance(v, np.integer) else v for k, v in values.items()}
                )
                with start_trial_run(tracking, "trial"):
                    mlflow.log_params(asdict(trial_hp))
                    result = train_and_score(*split, trial_hp)
                    mlflow.log_metric("validation.objective", result["validation_score"])
                return {
                    "loss": -result["validation_score"],
                    "status": STATUS_OK,
                    "params": asdict(trial_hp),
                }

            found = search(
                spark,
                objective,
                search_space(space, params.architectures),
                params.max_evals,
                params.parallelism,
                params.seed,
            )
            hp, trials = base_hp.with_updates(**found.best), found.trials
        mlflow.log_params({f"hp.{k}": v for k, v in asdict(hp).items()})
        results = run_on_barrier(
            spark,
            lambda worker: train_and_score(*split, hp, worker, str(staging.resolve())),
            params.workers,
        )
        chief = results[0]
        (staging / "model.json").write_text(
            json.dumps(
                {
                    "hyperparams": asdict(hp),
                    "class_keys": list(params.keys),
                    "image_size": params.image_size,
                    "weights": chief["weights"],
                    "widths": chief["widths"],
                    "article_images_version": version,
                }
            )
        )
        if final_dir.exists():
            shutil.rmtree(final_dir)
        staging.rename(final_dir)
        mlflow.log_params({f"weight.{key}": w for key, w in chief["weights"].items()})
        mlflow.log_metric("validation.objective", chief["validation_score"])
        mlflow.log_metrics({metric_name("holdout", k): v for k, v in chief["metrics"].items()})
        for key, values in chief["per_model"].items():
            mlflow.log_metrics({metric_name(f"holdout.{key}_only", k): v for k, v in values.items()})
        mlflow.log_metrics({metric_name("raw_pixels", k): v for k, v in baseline["raw_pixels"].items()})
        for key, losses in chief["losses"].items():
            for epoch, loss in enumerate(losses):
                mlflow.log_metric(f"loss.{key}", loss, step=epoch)
        mlflow.log_artifacts(str(final_dir), artifact_path="image_model")
        run_id = run.info.run_id
    return {
        "images": len(frame),
        "training_images": int(training.sum()),
        "validation_images": len(validation),
        "holdout_images": len(holdout),
        "class_keys": list(params.keys),
        "classes": {key: int(labels.max() + 1) for key, labels in label_sets.items()},
        "mixing_weights": chief["weights"],
        "hyperparams": asdict(hp),
        "tuning_trials": [
            {"validation_objective": -t.get("loss", float("nan")), **t.get("params", {})} for t in trials
        ],
        "loss_per_epoch": {key: [round(x, 4) for x in v] for key, v in chief["losses"].items()},
        "holdout_precision": [
            {"method": "learned (TF Similarity)", **chief["metrics"]},
            *(
                {"method": f"learned, {key} part only", **values}
                for key, values in chief["per_model"].items()
                if len(chief["per_model"]) > 1
            ),
            *(
                [{"method": "ImageNet features (frozen EfficientNet-Lite0)", **baseline["imagenet_features"]}]
                if "imagenet_features" in baseline
                else []
            ),
            {"method": "raw pixels 24x24", **baseline["raw_pixels"]},
            {"method": "random", **baseline["random"]},
        ],
        "training_images_per_second": round(sum(r["images_per_second"] for r in results), 1),
        "model": str(final_dir),
        "mlflow_run_id": run_id,
        "seconds": round(time.perf_counter() - started, 1),
    }


def image_size(model_folder: str | Path) -> int:
    """Pixels a side the saved model was trained on (images are decoded at that size to embed them)."""
    return int(json.loads((Path(model_folder) / "model.json").read_text()).get("image_size", MODEL_SIZE))


def model_version(artifacts_dir: str | Path) -> str:
    folder = Path(artifacts_dir) / ENCODER_DIR
    if not (folder / "model.json").exists():
        raise FileNotFoundError(f"no image model in {folder}: run train_image_similarity first")
    digest = hashlib.sha256((folder / "model.json").read_bytes())
    for path in sorted((folder / "variables").glob("*")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _embed_changed(spark: SparkSession, params: ImageIndexParams, version: str) -> tuple[int, int]:
    """Embed images whose (content hash, model version) is not in `image_embeddings`; MERGE them in.
    Returns (embedded now, total)."""
    tables = params.tables
    images = read_table(spark, tables, Tables.ARTICLE_IMAGES).select("article_id", "content", "content_hash")
    if current_version(spark, tables, Tables.IMAGE_EMBEDDINGS) is not None:
        done = read_table(spark, tables, Tables.IMAGE_EMBEDDINGS).where(F.col("model_version") == version)
        todo = images.join(
            done.select("article_id", "content_hash"), ["article_id", "content_hash"], "left_anti"
        )
    else:
        todo = images
    folder = str((Path(params.artifacts_dir) / ENCODER_DIR).resolve())
    size = image_size(folder)

    def embed_batches(batches: Any) -> Any:
        from fashionrec.similarity import encoder as image_encoder
        from fashionrec.similarity.images import decode as decode_images

        encoder = None
        for batch in batches:
            if batch.empty:
                continue
            encoder = encoder or image_encoder.load(folder)  # once per Spark task, only if it has work
            vectors = image_encoder.embed_saved(encoder, decode_images(batch["content"].tolist(), size))
            yield pd.DataFrame(
                {
                    "article_id": batch["article_id"],
                    "content_hash": batch["content_hash"],
                    "model_version": version,
                    "embedding": list(vectors.astype(np.float32)),
                }
            )

    schema = "article_id string, content_hash string, model_version string, embedding array<float>"
    embedded = (
        todo.repartition(spark.sparkContext.defaultParallelism).mapInPandas(embed_batches, schema).persist()
    )
    try:
        count = embedded.count()
        if count:
            if current_version(spark, tables, Tables.IMAGE_EMBEDDINGS) is None:
                overwrite_table(embedded, tables, Tables.IMAGE_EMBEDDINGS)
            else:
                (
                    delta_table(spark, tables, Tables.IMAGE_EMBEDDINGS)
                    .alias("t")
                    .merge(embedded.alias("s"), "t.article_id = s.article_id")
                    .whenMatchedUpdateAll()
                    .whenNotMatchedInsertAll()
                    .execute()
                )
    finally:
        embedded.unpersist()
    return count, read_table(spark, tables, Tables.IMAGE_EMBEDDINGS).count()


def encoder_parts(folder: str | Path) -> dict[str, slice]:
    """Columns of each part (a class key's embedding, or its class part) in the saved encoder's output,
    in the mix's order (parts with weight 0 are left out of it): to score each part on its own."""
    spec = json.loads((Path(folder) / "model.json").read_text())
    width = int(spec["hyperparams"]["embedding_dim"])
    widths = spec.get("widths") or {key: width for key in spec["class_keys"]}  # older models: embeddings
    columns, start = {}, 0
    for name, weight in spec["weights"].items():
        if weight > 0:
            columns[name] = slice(start, start + int(widths[name]))
            start += int(widths[name])
    return columns


def _real_photo_precision(path: str, model_folder: Path) -> list[dict[str, Any]]:
    """Precision on real photos (Kaggle layout, articles.csv one folder up): the model (and each of its
    parts), raw pixels, random."""
    from fashionrec.similarity import encoder as image_encoder

    folder = Path(path)
    files = sorted(folder.rglob("*.jpg"))
    articles = pd.read_csv(folder.parent / "articles.csv", dtype={"article_id": str})
    meta = articles.set_index("article_id").reindex([f.stem for f in files])
    keep = meta["product_type_no"].notna().to_numpy()
    files, meta = [f for f, k in zip(files, keep, strict=True) if k], meta[keep].reset_index()
    pixels = decode([f.read_bytes() for f in files], image_size(model_folder))
    labels = {"type": meta["product_type_no"].to_numpy(), "colour": meta["colour_group_code"].to_numpy()}
    embedded = image_encoder.embed_saved(image_encoder.load(model_folder), pixels)
    parts = encoder_parts(model_folder)
    rows = {
        "learned (TF Similarity)": nearest(embedded, PRECISION_K)[0],
        **{
            f"learned, {key} part only": nearest(embedded[:, columns], PRECISION_K)[0]
            for key, columns in parts.items()
            if len(parts) > 1
        },
        "raw pixels 24x24": nearest(raw_pixel_vectors(pixels), PRECISION_K)[0],
        "random": random_rows(len(pixels), PRECISION_K),
    }
    return [{"images": f"real ({len(pixels)})", **row} for row in precision_table(rows, labels)]


def run_index_images(params: ImageIndexParams, spark: SparkSession | None = None) -> dict[str, Any]:

    spark = spark or get_spark("fashionrec-index-images")
    started = time.perf_counter()
    tables = params.tables
    version = model_version(params.artifacts_dir)
    embedded_now, total = _embed_changed(spark, params, version)
    vectors = (
        read_table(spark, tables, Tables.IMAGE_EMBEDDINGS)
        .where(F.col("model_version") == version)
        .join(
            read_table(spark, tables, Tables.ARTICLES).select("article_id", *CATALOGUE_COLUMNS), "article_id"
        )
        .orderBy("article_id")
        .toArrow()
        .to_pandas()
    )
    embeddings = np.stack(vectors["embedding"].to_numpy()).astype(np.float32)
    k = min(params.neighbours, len(vectors) - 1)
    rows, scores = nearest(embeddings, k)
    ids = vectors["article_id"].to_numpy()
    similar = spark.createDataFrame(
        pd.DataFrame(
            {
                "article_id": ids,
                "neighbour_ids": [list(ids[r[r >= 0]]) for r in rows],
                "scores": [list(s[r >= 0].astype(float)) for r, s in zip(rows, scores, strict=True)],
                "model_version": version,
            }
        ),
        "article_id string, neighbour_ids array<string>, scores array<double>, model_version string",
    )
    similar_version = overwrite_table(similar, tables, Tables.SIMILAR_ARTICLES)

    # Quality on the synthetic catalogue: the learned neighbours against raw pixels and random ones.
    images = catalogue_images(spark, params).set_index("article_id").loc[ids].reset_index()
    pixels = decode(images["content"].tolist(), DISPLAY_SIZE)
    labels = {
        "type": vectors["product_type_no"].to_numpy(),
        "colour": vectors["colour_group_code"].to_numpy(),
    }
    top5 = rows[:, :PRECISION_K]
    table = [
        {"images": f"synthetic ({len(ids)})", **row}
        for row in precision_table(
            {
                "learned (TF Similarity)": top5,
                "raw pixels 24x24": nearest(raw_pixel_vectors(pixels), PRECISION_K)[0],
                "random": random_rows(len(ids), PRECISION_K),
            },
            labels,
        )
    ]
    if params.real_images_path and Path(params.real_images_path).exists():
        table += _real_photo_precision(params.real_images_path, Path(params.artifacts_dir) / ENCODER_DIR)
    reports = Path(params.reports_dir)
    captions = [
        f"{t[:12]}\n{c[:12]}"
        for t, c in zip(vectors["product_type_name"], vectors["colour_group_name"], strict=True)
    ]
    queries = list(np.random.default_rng(0).choice(len(ids), size=min(8, len(ids)), replace=False))
    grid = neighbour_grid(pixels, rows[:, : min(5, k)], queries, captions, reports / "similar_articles.png")
    (reports / "image_neighbours.json").write_text(json.dumps(table, indent=2))
    with tracked_run(
        absolute_tracking_uri(params.mlflow_tracking_uri),
        params.experiment,
        "index_images",
        {"task": "index_images"},
    ) as run:
        mlflow.log_params({"model_version": version, "neighbours": k, "articles": len(ids)})
        for row in table:
            prefix = f"{row['images'].split(' ')[0]}.{row['method']}"
            mlflow.log_metrics(
                {metric_name(prefix, key): v for key, v in row.items() if key.startswith("precision")}
            )
        mlflow.log_artifact(str(grid))
        mlflow.log_artifact(str(reports / "image_neighbours.json"))
        run_id = run.info.run_id
    return {
        "model_version": version,
        "embedded_now": embedded_now,
        "embeddings": total,
        "similar_articles_version": similar_version,
        "neighbour_precision": table,
        "grid": str(grid),
        "mlflow_run_id": run_id,
        "seconds": round(time.perf_counter() - started, 1),
    }
