"""Shared helpers: machine description, timing, and the results file."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fashionrec.runner.report import record_benchmark

RESULTS = Path("reports") / "benchmarks.json"
SUMMARY = Path("reports") / "latest_run.json"


def machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.machine()} {os.cpu_count()} cores, {memory_gib:.0f} GiB, Python {platform.python_version()}"


@contextmanager
def timed(figures: dict[str, Any], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    figures[name] = round(time.perf_counter() - started, 1)


def peak_rss_gib() -> float:
    """Peak resident memory (GiB) of this process plus its child JVM (local Spark runs in the driver JVM)."""

    def high_water(pid: int | str) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    total = high_water(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():  # ppid
            total += high_water(stat.parent.name)
    return round(total / 2**30, 2)


def record(name: str, figures: dict[str, Any]) -> None:
    """Append one benchmark result (with machine and date) to reports/benchmarks.json."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    entry = {"benchmark": name, "date": datetime.now(UTC).date().isoformat(), "machine": machine(), **figures}
    results.append(entry)
    RESULTS.write_text(json.dumps(results, indent=2))
    record_benchmark(SUMMARY, name, entry)  # the run summary carries the latest figures too
