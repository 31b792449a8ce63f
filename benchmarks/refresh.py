"""Refresh benchmark: the daily job end to end after a full build (issue 24).

On `<scale>` with its last 8 days kept out as daily files (see `benchmarks.landing`): the weekly job
(`fashionrec`, without the image tasks) builds everything on the other days; then the daily job
(`fashionrec_refresh`: ingest → features → batch_score → register) runs after one new day lands, after
the next seven land together, and once more with nothing new. Prints seconds per task and in total, rows
read and customers re-scored. Targets (full scale, this machine): a day ≤ 3 min, a week ≤ 6 min, an
unchanged run ≤ 30 s.

Training at full scale takes hours on this machine: FASHIONREC_BENCH_MODELS names a models folder. When
it exists, the build copies its towers, ranker and pipeline instead of training (the index is rebuilt over
this catalogue); when it does not, the build trains and saves its artifacts there. So a `small` run
followed by a `full` one measures a full-scale refresh (the daily runs never train) with lists that mean
what the `small` models make of these customers.

FASHIONREC_BENCH_ROOT names a folder to work in and keep (default: a temporary one, removed): the state
after the build is copied beside it (`<root>.build`) and, when that copy exists, a later run starts from
it instead of building again (the daily runs of a changed refresh path re-measured in minutes, not the
half hour of a full-scale build; the landing stream's checkpoint names absolute paths, hence one fixed
folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.landing import daily_data, land, landing_folder
from fashionrec.data.daily import ARRIVALS
from fashionrec.runner.bundle import load_bundle
from fashionrec.runner.local import run_job

ROOT = Path(__file__).resolve().parents[1]
IMAGE_TASKS = ("ingest_images", "train_image_similarity", "index_images")  # not part of the refresh
TRAINING_TASKS = ("train_retrieval", "train_ranker", "evaluate")  # skipped when the models are reused
TARGETS_S = {"day": 180, "week": 360, "unchanged": 30}


def _refresh(variables: dict[str, str], root: Path) -> dict[str, Any]:
    started = time.perf_counter()
    result = run_job(ROOT, "fashionrec_refresh", "local", variables, None, root / "refresh.json", quiet=True)
    if result.failed:
        raise RuntimeError(f"refresh failed in task {result.failed}: see {root / 'refresh.json'}")
    tasks = result.figures
    return {
        "total_s": round(time.perf_counter() - started, 1),
        "task_s": {key: figures.get("seconds") for key, figures in tasks.items()},
        "files_read": tasks["ingest"]["files_read"],
        "rows_inserted": sum(r["inserted"] for r in tasks["ingest"]["ingest"]),
        "customers_rescored": tasks["batch_score"]["customers_scored"],
        "batch_score_phase_s": tasks["batch_score"].get("phase_seconds"),
        "features": tasks["features"].get("mode"),
        "registered_version": tasks["register"]["version"],
    }


def run(scale: str) -> dict[str, Any]:
    data = daily_data(scale)
    kept = os.environ.get("FASHIONREC_BENCH_ROOT")
    root = Path(kept).resolve() if kept else Path(tempfile.mkdtemp(prefix=f"bench-refresh-{scale}-"))
    built = root.with_name(f"{root.name}.build")
    resume = bool(kept) and built.is_dir()  # start from the kept build instead of building
    figures: dict[str, Any] = {"scale": scale}
    try:
        if kept:
            shutil.rmtree(root, ignore_errors=True)
        if resume:
            _copy_state(built, root)
        else:
            root.mkdir(parents=True, exist_ok=True)
            landing_folder(data, root)
        landing, days = root / "landing", sorted((data / ARRIVALS).glob("*.csv"))
        variables = {
            "data_path": str(landing),
            "lakehouse_dir": str(root / "lakehouse"),
            "artifacts_dir": str(root / "artifacts"),
            "reports_dir": str(root / "reports"),
            "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
        }
        if resume:
            figures["build"] = f"copied from {built}"
            return _daily_runs(figures, variables, root, landing, days)
        skipped = IMAGE_TASKS
        models = os.environ.get("FASHIONREC_BENCH_MODELS")
        reused = bool(models) and Path(models).is_dir()
        if reused:
            shutil.copytree(models, root / "artifacts", ignore=shutil.ignore_patterns("serving"))
            skipped += TRAINING_TASKS
        figures["models"] = f"reused from {models}" if reused else "trained in the build"
        started = time.perf_counter()
        weekly = load_bundle(ROOT).job("fashionrec", "local", variables).ordered()
        build_tasks = [task.key for task in weekly if task.key not in skipped]
        build = run_job(ROOT, "fashionrec", "local", variables, build_tasks, root / "build.json", quiet=True)
        if build.failed:
            raise RuntimeError(f"build failed in task {build.failed}")
        figures["build_s"] = round(time.perf_counter() - started, 1)
        figures["build_task_s"] = {key: f.get("seconds") for key, f in build.figures.items()}
        if models and not reused:
            shutil.copytree(root / "artifacts", models, ignore=shutil.ignore_patterns("serving"))
        if kept:
            shutil.rmtree(built, ignore_errors=True)
            _copy_state(root, built)
        return _daily_runs(figures, variables, root, landing, days)
    finally:
        if not kept:
            shutil.rmtree(root, ignore_errors=True)


def _copy_state(source: Path, target: Path) -> None:
    """Copy a benchmark folder: the landing files (never changed) as hard links, the rest as copies (the
    MLflow database and checkpoints change in place)."""

    def copy(src: str, dst: str) -> None:
        if "landing" in Path(src).relative_to(source).parts:
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=copy)


def _daily_runs(
    figures: dict[str, Any], variables: dict[str, str], root: Path, landing: Path, days: list[Path]
) -> dict[str, Any]:
    """One day lands, then the next seven, then nothing: the daily job after each."""
    figures["day_rows_landed"] = land(days[:1], landing)
    figures["day"] = _refresh(variables, root)
    figures["week_rows_landed"] = land(days[1:], landing)
    figures["week"] = _refresh(variables, root)
    figures["unchanged"] = _refresh(variables, root)
    figures["targets_s"] = TARGETS_S
    figures["meets_targets"] = {k: figures[k]["total_s"] <= v for k, v in TARGETS_S.items()}
    return figures
