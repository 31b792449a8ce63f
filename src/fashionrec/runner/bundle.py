"""Read databricks.yml and resources/*.yml into a resolved job graph.

The local runner and Databricks see the same task keys, dependencies, entry files and parameters;
only `${var.*}` values differ, taken from the chosen target of databricks.yml.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_REFERENCE = re.compile(r"\$\{([a-zA-Z0-9_.\-]+)\}")


class BundleError(ValueError):
    """The bundle files are inconsistent (unknown variable, target, task or dependency)."""


@dataclass(frozen=True)
class Task:
    key: str
    depends_on: tuple[str, ...]
    python_file: Path  # absolute
    parameters: tuple[str, ...]  # resolved
    description: str = ""


@dataclass(frozen=True)
class Job:
    name: str
    tasks: tuple[Task, ...]

    def task(self, key: str) -> Task:
        for t in self.tasks:
            if t.key == key:
                return t
        raise BundleError(
            f"job {self.name!r} has no task {key!r}; tasks: {', '.join(t.key for t in self.tasks)}"
        )

    def ordered(self) -> list[Task]:
        """Tasks in dependency order (stable: declaration order among independent tasks)."""
        done: list[str] = []
        pending = list(self.tasks)
        while pending:
            ready = [t for t in pending if all(d in done for d in t.depends_on)]
            if not ready:
                cycle = ", ".join(t.key for t in pending)
                raise BundleError(f"job {self.name!r}: dependency cycle or unknown dependency among {cycle}")
            done.append(ready[0].key)
            pending.remove(ready[0])
        return [self.task(k) for k in done]


@dataclass(frozen=True)
class Bundle:
    root: Path
    name: str
    variables: dict[str, dict[str, Any]]
    targets: dict[str, dict[str, Any]]
    resources: dict[str, Any]  # merged `resources` of resources/*.yml, with the file each job came from
    job_files: dict[str, Path]

    def default_target(self) -> str:
        for name, spec in self.targets.items():
            if (spec or {}).get("default"):
                return name
        return next(iter(self.targets))

    def resolve_variables(self, target: str, overrides: dict[str, str] | None = None) -> dict[str, str]:
        if target not in self.targets:
            raise BundleError(f"unknown target {target!r}; targets: {', '.join(self.targets)}")
        values = {name: spec.get("default") for name, spec in self.variables.items()}
        values.update(((self.targets[target] or {}).get("variables")) or {})
        for name, value in (overrides or {}).items():
            if name not in self.variables:
                raise BundleError(f"unknown variable {name!r}; variables: {', '.join(self.variables)}")
            values[name] = value
        missing = [n for n, v in values.items() if v is None]
        if missing:
            raise BundleError(f"target {target!r} leaves variable(s) without a value: {', '.join(missing)}")
        return {n: "" if v is None else str(v) for n, v in values.items()}

    def job(self, name: str, target: str, overrides: dict[str, str] | None = None) -> Job:
        jobs = self.resources.get("jobs", {})
        if name not in jobs:
            raise BundleError(f"no job {name!r} in resources; jobs: {', '.join(jobs)}")
        values = self.resolve_variables(target, overrides)
        context = {
            "bundle.target": target,
            "bundle.name": self.name,
            **{f"var.{k}": v for k, v in values.items()},
        }
        spec = jobs[name]
        base = self.job_files[name].parent
        tasks = []
        for raw in spec.get("tasks", []):
            entry = raw.get("spark_python_task")
            if not entry:
                raise BundleError(
                    f"task {raw.get('task_key')!r}: the local runner runs spark_python_task tasks only"
                )
            tasks.append(
                Task(
                    key=raw["task_key"],
                    depends_on=tuple(d["task_key"] for d in raw.get("depends_on", [])),
                    python_file=(base / entry["python_file"]).resolve(),
                    parameters=tuple(_interpolate(str(p), context) for p in entry.get("parameters", [])),
                    description=raw.get("description", ""),
                )
            )
        return Job(name=_interpolate(spec.get("name", name), context), tasks=tuple(tasks))


def _interpolate(text: str, context: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in context:
            raise BundleError(
                f"unknown reference ${{{key}}} (the local runner knows var.*, bundle.target, bundle.name)"
            )
        return context[key]

    return _REFERENCE.sub(replace, text)


def load_bundle(root: str | Path) -> Bundle:
    root = Path(root).resolve()
    main_file = root / "databricks.yml"
    if not main_file.exists():
        raise BundleError(f"{main_file} not found: run from the repository root or pass --bundle-root")
    main = yaml.safe_load(main_file.read_text()) or {}
    resources: dict[str, Any] = {}
    job_files: dict[str, Path] = {}
    for pattern in main.get("include", []):
        for path in sorted(glob.glob(str(root / pattern))):
            doc = yaml.safe_load(Path(path).read_text()) or {}
            for kind, items in (doc.get("resources") or {}).items():
                for key, value in (items or {}).items():
                    if key in resources.setdefault(kind, {}):
                        raise BundleError(f"{path}: {kind}.{key} is defined twice")
                    resources[kind][key] = value
                    if kind == "jobs":
                        job_files[key] = Path(path)
    return Bundle(
        root=root,
        name=main.get("bundle", {}).get("name", root.name),
        variables=main.get("variables", {}) or {},
        targets=main.get("targets", {}) or {},
        resources=resources,
        job_files=job_files,
    )
