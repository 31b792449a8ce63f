"""Serving load benchmark: p50/p99 latency and throughput of single-customer top-12 requests against the
real MLflow scoring server, at 1 and 8 concurrent clients, and where a request's time goes.

Serves `models:/fashionrec_recommender@champion` from the demo's registry (`sqlite:///mlflow.db`, so run
`make demo` first) on a free local port, two ways: `mlflow models serve --env-manager local` (one
worker, as `make serve`) and `fashionrec serve` (the same MLflow app on one worker per core with Nagle's
algorithm off). Each client loops for `SECONDS` seconds over random customers with history, one request
at a time on a kept-alive connection. Cold start: from the server process's start to its first HTTP 200
for a customer request.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
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
SECONDS = 60  # the issue: about a minute per run
CLIENTS = (1, 8)
# Workers of `fashionrec serve` (MLflow's app with Nagle off; `mlflow models serve -w 2` would leave it on
# and make every kept-alive request wait ~40 ms for a delayed ACK, Kludex/uvicorn#3149): one per core.
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
    customers = sorted(recommender.history_rows)
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


class KeptAliveConnection:
    """The least an HTTP/1.1 client can do on one kept-alive connection: send prepared bytes, read the
    status line, the Content-Length and the body. Clients share this machine's two cores with the server,
    so a heavy client (`http.client` parses every header through the `email` package) would take CPU
    from the server it measures; load generators such as wrk are lean for the same reason."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.address, self.path = (host, port), path
        self.sock: socket.socket | None = None
        self.pending = b""

    def post_json(self, body: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.pending = b""
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.address[0]}:{self.address[1]}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body)
        data = self.pending
        while b"\r\n\r\n" not in data:
            data += self._receive()
        header, _, data = data.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(":", 1) for line in lines[1:])
        if "content-length" not in fields:
            raise ConnectionError(f"no Content-Length in the answer: {lines[0]}")
        length = int(fields["content-length"])
        while len(data) < length:
            data += self._receive()
        self.pending = data[length:]
        return int(lines[0].split()[1]), data[:length]

    def _receive(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _client(
    url: str, customers: list[str], seed: int, start_at: float, stop_at: float
) -> tuple[list[float], int, str]:
    """One client: a kept-alive HTTP connection, one single-customer request at a time from `start_at`
    to `stop_at` (wall clock, shared by all clients); returns (latencies in seconds, failed requests, the
    first failure)."""
    time.sleep(max(0.0, start_at - time.time()))
    parts = urllib.parse.urlsplit(url)
    rng = np.random.default_rng(seed)
    connection = KeptAliveConnection(parts.hostname or "127.0.0.1", parts.port or 80, parts.path)
    latencies: list[float] = []
    failed, error = 0, ""
    while time.time() < stop_at:
        customer = customers[rng.integers(len(customers))]
        body = json.dumps({"dataframe_records": [{"customer_id": customer}]}).encode()
        started = time.perf_counter()
        try:
            status, answer = connection.post_json(body)
            ok = status == 200 and customer.encode() in answer
            error = error or ("" if ok else f"HTTP {status}: {answer[:200]!r}")
        except OSError as exc:
            connection.close()  # reconnects on the next request
            ok, error = False, error or repr(exc)
        latencies.append(time.perf_counter() - started)
        failed += not ok
    connection.close()
    return latencies, failed, error


def _load(url: str, customers: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` client processes (not threads: one interpreter's lock would queue the clients
    themselves and add its wait to the measured latency)."""
    start_at = time.time() + 5  # every client process is up before the clock starts
    stop_at = start_at + seconds
    with ProcessPoolExecutor(clients, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_client, url, customers, i, start_at, stop_at) for i in range(clients)]
        results = [future.result() for future in futures]
    latencies = [x for mine, _, _ in results for x in mine]
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": sum(failed for _, failed, _ in results),
        "first_error": next((error for _, _, error in results if error), None),
        "throughput_rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
    }


def _servers(port: int) -> dict[str, list[str]]:
    """The two ways to serve the champion locally, as commands."""
    mlflow_serve = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        MODEL_URI,
        "--env-manager",
        "local",
    ]
    mlflow_serve += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    ours = [sys.executable, "-m", "fashionrec", "serve", "-m", MODEL_URI, "-p", str(port), "-w", str(WORKERS)]
    return {"mlflow models serve -w 1": mlflow_serve, f"fashionrec serve -w {WORKERS}": ours}


def _first_answer(base: str, customer: str, process: subprocess.Popen, started: float) -> float:
    """Seconds from `started` (the process's start) until a customer request gets HTTP 200: the cold start
    a scaled-from-zero endpoint or a restarted worker makes its first caller wait."""
    body = json.dumps({"dataframe_records": [{"customer_id": customer}]}).encode()
    deadline = started + 300
    while True:
        request = urllib.request.Request(
            f"{base}/invocations", body, {"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError("the scoring server did not start") from None
        time.sleep(0.05)


def _measure(command: list[str], port: int, customers: list[str]) -> tuple[float, list[dict[str, Any]]]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": TRACKING_URI,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # A session of its own: `mlflow models serve` runs uvicorn as a child, which must stop with it.
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        cold_start = _first_answer(base, customers[0], process, started)
        _load(f"{base}/invocations", customers, 4, 5)  # warm every worker
        return cold_start, [_load(f"{base}/invocations", customers, n, SECONDS) for n in CLIENTS]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def run(scale: str) -> dict[str, Any]:
    if not Path("mlflow.db").exists():
        raise RuntimeError(
            "no local registry (mlflow.db): run `make demo` first, then `make bench BENCH=serving`"
        )
    stages, customers = _stage_profile()
    load, cold = {}, {}
    for name in _servers(0):
        port = _free_port()
        cold[name], load[name] = _measure(_servers(port)[name], port, customers)
        print(f"{name}: cold start (process start to the first answer) {cold[name]:.1f} s")
        for row in load[name]:
            print(f"{name}: {row}")
    return {
        "model": MODEL_URI,
        "seconds_per_run": SECONDS,
        "cold_start_s": {name: round(value, 2) for name, value in cold.items()},
        "load": load,
        "where_the_time_goes_in_process": stages,
    }
