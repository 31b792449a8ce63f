"""Serve a registered recommender with MLflow's own scoring app on one process per core.

`mlflow models serve -w N` (what `make serve` runs with one worker) starts `uvicorn --workers N
mlflow.pyfunc.scoring_server.app:app`. Three things make that slow for a CPU-bound model under concurrent
callers, and this launcher serves the same MLflow app, model and environment without them:

1. Nagle's algorithm: with more than one worker uvicorn binds the socket with protocol 0, and asyncio
   turns Nagle off only on `IPPROTO_TCP` sockets (Kludex/uvicorn#3149), so on a kept-alive connection each
   response waited ~40 ms for the client's delayed ACK. Here every connection has `TCP_NODELAY`.
2. Unfair workers: workers race to `accept()` on one shared socket and the winner drains the queue, so of
   eight kept-alive clients one worker held seven (p99 81 ms, while the other core idled). Here the parent
   accepts and deals connections to the workers in turn, as Node's cluster module does on Linux.
3. Threads fighting over the interpreter lock: MLflow runs each prediction in a thread; the recommender is
   CPU-bound Python, so concurrent predictions in one process only take turns, and each FAISS or XGBoost
   call that releases the lock waits a switch interval to get it back. Each worker here scores one
   request after another with MLflow's handler on the event loop's own thread (`serving.guard`).

The app is MLflow's behind `serving.guard` (size, content-type, JSON and field checks: 4xx, never 5xx).
With more than one worker the parent loads the model once and forks the workers (`_load_then_fork`).
On Databricks, Model Serving runs its own server; this is for the local server and self-hosting.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import select
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import uvicorn

DEFAULT_MODEL_URI = "models:/fashionrec_recommender@champion"
APP = "fashionrec.serving.guard:guarded_mlflow_app"  # MLflow's scoring app behind the request guard


@dataclass(frozen=True)
class ServeConfig:
    model_uri: str = DEFAULT_MODEL_URI
    host: str = "127.0.0.1"
    port: int = 5001
    workers: int = 2


def tcp_listener(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket whose connections send each response at once (no Nagle delay)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Linux copies it to accepted sockets
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def one_request_at_a_time_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's event loop (uvloop when installed) whose default executor, where MLflow's app runs each
    prediction (`asyncio.to_thread`), has a single thread: see point 3 of the module's docstring."""
    from uvicorn.loops.auto import auto_loop_factory

    loop = auto_loop_factory()()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict"))
    return loop


class DealtConnectionsServer(uvicorn.Server):
    """A uvicorn server without a listening socket: it serves the connections the parent hands it over a
    Unix socket (file descriptors passed with SCM_RIGHTS)."""

    def __init__(self, config: uvicorn.Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        loop = asyncio.get_running_loop()
        config = self.config

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        def receive() -> None:
            try:
                message, fds, _, _ = socket.recv_fds(self.channel, 64, 64)
            except BlockingIOError:
                return
            if not message and not fds:  # the parent is gone
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                connection = socket.socket(fileno=fd)
                task = loop.create_task(loop.connect_accepted_socket(protocol, connection))
                self.server_state.tasks.add(task)
                task.add_done_callback(self.server_state.tasks.discard)

        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), receive)
        self.channel.send(b"ready")  # the model is loaded: the parent may deal connections to us


def _worker(options: dict[str, Any], channel: socket.socket) -> None:
    DealtConnectionsServer(uvicorn.Config(**options), channel).run()


def _wait_until_ready(channels: list[socket.socket], processes: list[Any], stopping: list[int]) -> bool:
    """Block until every worker has loaded the model (connections wait in the listen queue meanwhile)."""
    waiting = set(channels)
    while waiting and not stopping:
        if not all(p.is_alive() for p in processes):
            return False
        ready, _, _ = select.select(list(waiting), [], [], 1.0)
        for channel in ready:
            if channel.recv(16) != b"ready":
                return False
            waiting.discard(channel)
    return not waiting


def _deal(listener: socket.socket, channels: list[socket.socket], processes: list[Any]) -> int:
    """Accept connections and hand them to the workers in turn; returns 0 after SIGINT/SIGTERM, 1 when a
    worker died."""
    stopping: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: stopping.append(number))
    if not _wait_until_ready(channels, processes, stopping):
        return 0 if stopping else 1
    turn = 0
    while not stopping and all(p.is_alive() for p in processes):
        try:
            ready, _, _ = select.select([listener], [], [], 0.5)
        except InterruptedError:
            continue
        if not ready:
            continue
        connection, _ = listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socket.send_fds(channels[turn % len(channels)], [b"c"], [connection.fileno()])
        connection.close()  # the worker holds its own copy now
        turn += 1
    return 0 if stopping else 1


def _load_then_fork(options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Load the guarded app (and the model) once, here, for workers forked from this process: they share it
    copy-on-write and answer as soon as they exist, where spawned workers each imported MLflow, XGBoost and
    pandas and loaded the snapshot again, all of them at once on the same cores. A fork copies no thread,
    so the loaded model must run none before its first request (`pyfunc.PhotoLoader`); if one runs anyway,
    the workers are spawned and load the model themselves, as before."""
    from fashionrec.serving.guard import guarded_mlflow_app

    app = guarded_mlflow_app()
    running = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if running:
        print(f"threads {running} run after loading the model: spawning workers that load it again")
        return multiprocessing.get_context("spawn"), options
    return multiprocessing.get_context("fork"), {**options, "app": app, "factory": False}


def serve(config: ServeConfig) -> int:
    """Download the model once, then serve MLflow's scoring app on `config.workers` processes until
    SIGINT/SIGTERM (returns 0) or the death of a worker (returns 1)."""
    import mlflow
    from mlflow.pyfunc import scoring_server

    if config.workers < 1:
        raise ValueError(f"workers must be at least 1, got {config.workers}")
    local_path = mlflow.artifacts.download_artifacts(config.model_uri)
    # The environment `mlflow models serve` gives its uvicorn (model folder, request timeout).
    _, environment = scoring_server.get_cmd(local_path, config.port, config.host, None, config.workers)
    os.environ.update(environment)
    options = {
        "app": APP,
        "host": config.host,
        "port": config.port,
        "loop": f"{__name__}:one_request_at_a_time_loop",
        "factory": True,
    }
    listener = tcp_listener(config.host, config.port)
    print(f"serving {config.model_uri} on http://{config.host}:{config.port} with {config.workers} worker(s)")
    if config.workers == 1:
        uvicorn.Server(uvicorn.Config(**options)).run(sockets=[listener])
        return 0
    context, options = _load_then_fork(options)
    channels, processes = [], []
    for _ in range(config.workers):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # one message, one fd
        process = context.Process(target=_worker, args=(options, theirs), name="fashionrec-serve-worker")
        process.start()
        theirs.close()
        channels.append(ours)
        processes.append(process)
    try:
        status = _deal(listener, channels, processes)
        if status:
            print("a worker stopped unexpectedly: shutting down")
        return status
    finally:
        listener.close()
        for channel in channels:
            channel.close()  # workers see the channel close and shut down gracefully
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=30)
