"""Serving load benchmark: p50/p99 latency and throughput of single-customer top-12 requests against the
real MLflow scoring server, at 1 and 8 concurrent clients, and where a request's time goes.

Serves `models:/fashionrec_recommender@champion` from the demo's registry (`sqlite:///mlflow.db`, so run
`make demo` first) with `mlflow models serve --env-manager local` on a free local port. Each client
loops for `SECONDS` seconds over random customers with history, one request at a time.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

MODEL_URI = "models:/fashionrec_recommender@champion"
TRACKING_URI = "sqlite:///mlflow.db"
SECONDS = 30
CLIENTS = (1, 8)
WORKERS = int(os.environ.get("FASHIONREC_SERVING_WORKERS", "2"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stage_profile(requests: int = 300) -> tuple[dict[str, float], list[str]]:
    """Mean milliseconds per stage for single-customer requests, in-process (no HTTP)."""
    import mlflow
    import pandas as pd

    from fashionrec.serving.pyfunc import parse_requests

    mlflow.set_tracking_uri(TRACKING_URI)
    mlflow.set_registry_uri(TRACKING_URI)
    model = mlflow.pyfunc.load_model(MODEL_URI).unwrap_python_model()
    recommender = model.recommender
    customers = sorted(recommender.purchases)
    rng = np.random.default_rng(0)
    picked = [customers[i] for i in rng.integers(0, len(customers), requests)]
    model.predict(None, pd.DataFrame({"customer_id": picked[:5]}))  # warm up TensorFlow
    recommender.timer.seconds.clear()
    parse = total = 0.0
    for customer in picked:
        frame = pd.DataFrame({"customer_id": [customer]})
        started = time.perf_counter()
        parse_requests(frame, recommender.k, recommender.week)
        parse += time.perf_counter() - started
        started = time.perf_counter()
        model.predict(None, frame)
        total += time.perf_counter() - started
    stages = {"parse": parse, **recommender.timer.seconds}
    ms = {f"{name}_ms": round(1000 * value / requests, 2) for name, value in stages.items()}
    ms["predict_total_ms"] = round(1000 * total / requests, 2)
    return ms, customers


def _load(url: str, customers: list[str], clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        mine: list[float] = []
        failed = 0
        while time.perf_counter() < stop:
            body = json.dumps(
                {"dataframe_records": [{"customer_id": customers[rng.integers(len(customers))]}]}
            ).encode()
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    ok = response.status == 200
            except (urllib.error.URLError, OSError):
                ok = False
            mine.append(time.perf_counter() - started)
            failed += not ok
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors[0],
        "throughput_rps": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


def run(scale: str) -> dict[str, Any]:
    if not Path("mlflow.db").exists():
        raise RuntimeError(
            "no local registry (mlflow.db): run `make demo` first, then `make bench BENCH=serving`"
        )
    stages, customers = _stage_profile()
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": TRACKING_URI,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", MODEL_URI, "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", str(WORKERS)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError("the scoring server did not start") from None
                time.sleep(1)
        _load(f"{base}/invocations", customers, 2, 5)  # warm every worker
        runs = [_load(f"{base}/invocations", customers, n, SECONDS) for n in CLIENTS]
    finally:
        process.terminate()
        process.wait(timeout=30)
    return {
        "model": MODEL_URI,
        "server_workers": WORKERS,
        "seconds_per_run": SECONDS,
        "load": runs,
        "where_the_time_goes_in_process": stages,
    }
