"""Shared helpers: machine description, timing, and the results file."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path("reports") / "benchmarks.json"


def machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()} {os.cpu_count()} cores, {memory_gib:.0f} GiB, Python {platform.python_version()}"


@contextmanager
def timed(figures: dict[str, Any], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    figures[name] = round(time.perf_counter() - started, 1)


def peak_rss_gib() -> float:
    """Peak resident memory of this process and its finished children (the Spark JVM is a child)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 2**20, 2)


def record(name: str, figures: dict[str, Any]) -> None:
    """Append one benchmark result (with machine and date) to reports/benchmarks.json."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    results.append({"benchmark": name, "date": datetime.now(UTC).date().isoformat(), "machine": machine(), **figures})
    RESULTS.write_text(json.dumps(results, indent=2))
