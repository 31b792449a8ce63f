"""Print task figures as readable tables and keep them in a machine-readable run summary.

Figures are plain dicts. Rendering rules: scalars form one key/value table; a list of dicts is a table
of its own; a dict of scalars is a key/value table; a dict of dicts is a table with one row per key.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

_console = Console(width=int(os.environ.get("FASHIONREC_REPORT_WIDTH", "140")))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if value is None:
        return "-"
    return str(value)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list | tuple)


def _key_value_table(title: str, items: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    for key, value in items.items():
        table.add_row(key, _fmt(value))
    return table


def _rows_table(title: str, rows: list[dict[str, Any]], key_name: str | None = None) -> Table:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    table = Table(title=title, title_justify="left")
    for column in columns:
        numeric = all(isinstance(r.get(column), int | float) or r.get(column) is None for r in rows)
        table.add_column(
            column, justify="right" if numeric else "left", style="bold" if column == key_name else None
        )
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    return table


def render(task: str, figures: dict[str, Any]) -> list[Table]:
    scalars = {k: v for k, v in figures.items() if _is_scalar(v)}
    tables = [_key_value_table(f"{task}", scalars)] if scalars else []
    for key, value in figures.items():
        title = f"{task} · {key}"
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append(_rows_table(title, value))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            tables.append(_rows_table(title, [{"": k, **v} for k, v in value.items()], key_name=""))
        elif isinstance(value, dict) and value:
            tables.append(_key_value_table(title, value))
        elif isinstance(value, list) and not value:
            tables.append(_key_value_table(title, {"rows": 0}))
    return tables


def print_figures(task: str, figures: dict[str, Any]) -> None:
    for table in render(task, figures):
        _console.print(table)


def print_line(text: str) -> None:
    _console.print(text)


def write_summary(path: str | Path, run: dict[str, Any], tasks: dict[str, Any], merge: bool = False) -> Path:
    """Write the run summary atomically; with `merge`, keep figures of tasks not run this time. The latest
    benchmark figures (`record_benchmark`) are always kept: they carry their own dates."""
    path = Path(path)
    existing = json.loads(path.read_text()) if path.exists() else {}
    summary = {
        "run": {**run, "written_at": datetime.now(UTC).isoformat(timespec="seconds")},
        "tasks": {**(existing.get("tasks", {}) if merge else {}), **tasks},
    }
    if "benchmarks" in existing:
        summary["benchmarks"] = existing["benchmarks"]
    return _write_json(path, summary)


def record_benchmark(path: str | Path, name: str, figures: dict[str, Any]) -> Path:
    """Put one benchmark's latest figures into the run summary's `benchmarks` section."""
    path = Path(path)
    summary = json.loads(path.read_text()) if path.exists() else {}
    summary.setdefault("benchmarks", {})[name] = figures
    return _write_json(path, summary)


def _write_json(path: Path, content: dict[str, Any]) -> Path:
    """Written to a temporary file and renamed: a reader never sees half a summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".summary-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(content, handle, indent=2, default=str)
    os.replace(tmp, path)
    return path
