"""Serving load benchmark: p50/p99 latency and throughput of single-customer top-12 requests against the
real MLflow scoring server, at 1 and 8 concurrent clients, and where a request's time goes.

Serves `models:/fashionrec_recommender@champion` from the demo's registry (`sqlite:///mlflow.db`, so run
`make demo` first) with `mlflow models serve --env-manager local` on a free local port. Each client
loops for `SECONDS` seconds over random customers with history, one request at a time.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

MODEL_URI = "models:/fashionrec_recommender@champion"
TRACKING_URI = "sqlite:///mlflow.db"
SECONDS = 30
CLIENTS = (1, 8)
# One worker by default: with `--workers 2` uvicorn leaves Nagle's algorithm on for accepted sockets
# (Kludex/uvicorn#3149), so every kept-alive request after the first waits ~40 ms for a delayed ACK.
WORKERS = int(os.environ.get("FASHIONREC_SERVING_WORKERS", "1"))


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


def _client(
    url: str, customers: list[str], seed: int, start_at: float, stop_at: float
) -> tuple[list[float], int]:
    """One client: a kept-alive HTTP connection, one single-customer request at a time from `start_at`
    to `stop_at` (wall clock, shared by all clients); returns (latencies in seconds, failed requests)."""
    time.sleep(max(0.0, start_at - time.time()))
    parts = urllib.parse.urlsplit(url)
    rng = np.random.default_rng(seed)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    latencies: list[float] = []
    failed = 0
    while time.time() < stop_at:
        body = json.dumps({"dataframe_records": [{"customer_id": customers[rng.integers(len(customers))]}]})
        started = time.perf_counter()
        try:
            connection.request("POST", parts.path, body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except (http.client.HTTPException, OSError):
            connection.close()  # reconnects on the next request
            ok = False
        latencies.append(time.perf_counter() - started)
        failed += not ok
    connection.close()
    return latencies, failed


def _load(url: str, customers: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` client processes (not threads: one interpreter's lock would queue the clients
    themselves and add its wait to the measured latency)."""
    start_at = time.time() + 5  # every client process is up before the clock starts
    stop_at = start_at + seconds
    with ProcessPoolExecutor(clients, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_client, url, customers, i, start_at, stop_at) for i in range(clients)]
        results = [future.result() for future in futures]
    latencies = [x for mine, _ in results for x in mine]
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": sum(failed for _, failed in results),
        "throughput_rps": round(len(latencies) / seconds, 1),
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
