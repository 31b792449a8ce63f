"""Run the bundle's job graph on this machine, task by task in dependency order.

Each task's entry file (`jobs/<task>.py`) is loaded and its `main(argv)` called with the parameters the
bundle would pass on Databricks, so both places run the same code with the same parameters.
"""

from __future__ import annotations

import importlib.util
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionrec.runner.bundle import Job, Task, load_bundle
from fashionrec.runner.report import print_figures, print_line, write_summary

log = logging.getLogger(__name__)

DEFAULT_SUMMARY = Path("reports") / "latest_run.json"


@dataclass(frozen=True)
class RunResult:
    job: str
    target: str
    figures: dict[str, dict[str, Any]]
    failed: str | None
    summary_path: Path


def load_entry(task: Task) -> Callable[[list[str]], dict[str, Any]]:
    """The `main(argv)` of a task's entry file."""
    spec = importlib.util.spec_from_file_location(f"fashionrec_job_{task.key}", task.python_file)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"task {task.key}: cannot load {task.python_file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "main"):
        raise AttributeError(f"task {task.key}: {task.python_file} defines no main(argv)")
    return module.main


def select_tasks(job: Job, only: list[str] | None) -> list[Task]:
    ordered = job.ordered()
    if not only:
        return ordered
    for key in only:
        job.task(key)  # raises with the list of task keys
    return [t for t in ordered if t.key in only]


def run_job(
    bundle_root: str | Path = ".",
    job_name: str = "fashionrec",
    target: str = "local",
    variables: dict[str, str] | None = None,
    only: list[str] | None = None,
    summary_path: str | Path = DEFAULT_SUMMARY,
    quiet: bool = False,
) -> RunResult:
    bundle = load_bundle(bundle_root)
    job = bundle.job(job_name, target, variables)
    tasks = select_tasks(job, only)
    figures: dict[str, dict[str, Any]] = {}
    failed = None
    run_info = {
        "job": job.name,
        "target": target,
        "tasks": [t.key for t in tasks],
        "variables": variables or {},
    }
    started = time.perf_counter()
    for position, task in enumerate(tasks, 1):
        if not quiet:
            print_line(f"[bold]▶ {position}/{len(tasks)} {task.key}[/bold] {task.description}")
        task_started = time.perf_counter()
        try:
            result = load_entry(task)(list(task.parameters))
        except Exception as exc:
            failed = task.key
            figures[task.key] = {"status": "failed", "error": f"{exc.__class__.__name__}: {exc}"}
            log.debug("task %s failed:\n%s", task.key, traceback.format_exc())
            if not quiet:
                print_line(f"[bold red]✖ {task.key} failed:[/bold red] {exc.__class__.__name__}: {exc}")
            break
        result = dict(result or {})
        result.setdefault("task_seconds", round(time.perf_counter() - task_started, 1))
        figures[task.key] = result
        if not quiet:
            print_figures(task.key, result)
    run_info["status"] = "failed" if failed else "succeeded"
    run_info["seconds"] = round(time.perf_counter() - started, 1)
    path = write_summary(summary_path, run_info, figures, merge=bool(only))
    if not quiet:
        print_line(f"run summary: {path}")
    return RunResult(job.name, target, figures, failed, Path(path))
