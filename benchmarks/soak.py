"""Soak benchmark: 8 clients for 10 minutes against `fashionrec serve` (the demo's champion behind the
request guard); errors, latency percentiles and the servers' memory (RSS of the parent and its workers)
from the end of the warm-up to the end. Run `make demo` first; `python -m benchmarks --only soak`.

Targets (issue 21): 0 errors, RSS growth under 5%.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.serving import MODEL_URI, TRACKING_URI, _free_port, _load, _stage_profile

CLIENTS = 8
SECONDS = float(os.environ.get("FASHIONREC_SOAK_SECONDS", "600"))
WORKERS = int(os.environ.get("FASHIONREC_SERVING_WORKERS", "2"))
SAMPLE_EVERY = 10.0


def _rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(
                int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS")
            )
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def _wait_ready(base: str, process: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2):
                return
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError("fashionrec serve did not start") from None
            time.sleep(1)


def run(scale: str) -> dict[str, Any]:
    if not Path("mlflow.db").exists():
        raise RuntimeError("no local registry (mlflow.db): run `make demo` first, then the soak benchmark")
    _, customers = _stage_profile(requests=20)
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "fashionrec",
        "serve",
        "-m",
        MODEL_URI,
        "-p",
        str(port),
        "-w",
        str(WORKERS),
    ]
    env = {**os.environ, "MLFLOW_TRACKING_URI": TRACKING_URI}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process)
        _load(f"{base}/invocations", customers, CLIENTS, 20)  # warm-up: every worker, every code path
        samples: list[tuple[float, int]] = []
        result: dict[str, Any] = {}
        load = threading.Thread(
            target=lambda: result.update(_load(f"{base}/invocations", customers, CLIENTS, SECONDS))
        )
        started = time.time()
        load.start()
        while load.is_alive():
            samples.append((round(time.time() - started, 1), _rss_bytes(process.pid)))
            load.join(SAMPLE_EVERY)
        samples.append((round(time.time() - started, 1), _rss_bytes(process.pid)))
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    first, last = samples[0][1], samples[-1][1]
    growth = (last - first) / first
    return {
        "server": f"fashionrec serve -w {WORKERS}",
        "clients": CLIENTS,
        "seconds": SECONDS,
        **{k: v for k, v in result.items() if k != "clients"},
        "rss_start_mib": round(first / 2**20, 1),
        "rss_end_mib": round(last / 2**20, 1),
        "rss_peak_mib": round(max(rss for _, rss in samples) / 2**20, 1),
        "rss_growth_pct": round(100 * growth, 2),
        "meets_target": result.get("errors") == 0 and growth < 0.05,
    }
