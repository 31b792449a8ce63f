"""Freshness: how soon an event changes the served answers, while shoppers keep asking.

After `make demo`: the stream job runs continuously (`fashionrec stream`, micro-batches of a second) over a
scratch copy of the demo's tables and a scratch online store; the demo's champion is served by
`fashionrec serve` (2 workers) reading that store; a replay process (the shop) appends `RATE` events a
second for `SECONDS` seconds (a generated day: purchases, new articles with photos) with one tracked event
a second, while `CLIENTS` client processes keep asking for the tracked shoppers' answers, each shopper from
their event's second on. The stream and the replay yield the CPU to serving and its clients
(`STREAM_NICENESS`): on Databricks they run apart from Model Serving.

Tracked events, each with a visible effect on one shopper's answer:
- a sell-out of the shopper's first article: reflected when it is gone from their answer;
- a purchase of an article on the shopper's list that is not a repurchase yet: reflected when the answer
  lists it as a repurchase (the purchase reached their history).
Event-to-answer delay: from the replay's commit of the event to the first answer reflecting it. Serving
latency: every request of the clients. A new article is searchable by photo when a photo request with its
photo returns it. At the end, every purchase is in `transactions` and in the store once.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.serving import MODEL_URI, TRACKING_URI, KeptAliveConnection, _first_answer, _free_port
from fashionrec.config.tables import TableLocator, Tables
from fashionrec.data.events import make_events
from fashionrec.lake.session import get_spark
from fashionrec.lake.tables import read_table
from fashionrec.online.store import ENVIRONMENT_VARIABLE, open_store
from fashionrec.streaming.events_table import append_events, ensure_events_table
from fashionrec.streaming.replay import replay
from fashionrec.streaming.showcase import SCRATCH_TABLES

RATE = 20  # events a second (the issue)
SECONDS = int(os.environ.get("FASHIONREC_FRESHNESS_SECONDS", "300"))
CLIENTS = 8
PACE = 0.1  # seconds between a client's requests: 8 clients ask 80 times a second, as shoppers would,
# rather than in a closed loop that keeps both cores busy with requests alone
SETTLE = 60  # seconds after the replay for the last events to show
# On Databricks the stream and the shop run apart from Model Serving; sharing its two cores here, they
# yield to serving.
STREAM_NICENESS = 19


def _post(connection: KeptAliveConnection, row: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    body = json.dumps({"dataframe_records": [row]}).encode()
    started = time.perf_counter()
    try:
        status, answer = connection.post_json(body)
    except OSError:
        connection.close()
        return time.perf_counter() - started, None
    took = time.perf_counter() - started
    return took, (json.loads(answer)["predictions"][0] if status == 200 else None)


def _reflects(kind: str, article: str, answer: dict[str, Any]) -> bool:
    if kind == "stock":
        return article not in answer["article_ids"]
    sources = dict(zip(answer["article_ids"], answer["sources"], strict=True))
    return "repurchase" in sources.get(article, "")


def _client(
    url: str, tracked: list[tuple[str, str, str, str, float]], stop_at: float
) -> tuple[list[float], int, dict]:
    """Ask for the tracked shoppers' answers round and round until `stop_at`, one request every `PACE`
    seconds; returns the latencies, the failed requests and when each tracked event was first reflected
    (wall clock). A shopper is asked about from their event's due time on (the replay's second for it), so
    that each is asked every few tenths of a second while it waits, not once per round of every shopper
    of the run."""
    parts = urllib.parse.urlsplit(url)
    connection = KeptAliveConnection(parts.hostname or "127.0.0.1", parts.port or 80, parts.path)
    latencies, failed, seen = [], 0, {}
    while time.time() < stop_at and len(seen) < len(tracked):
        due = [t for t in tracked if t[0] not in seen and t[4] <= time.time()]
        for event_id, customer, article, kind, _ in due or [("", tracked[0][1], "", "", 0.0)]:
            asked = time.perf_counter()
            took, answer = _post(connection, {"customer_id": customer})
            latencies.append(took)
            time.sleep(max(0.0, PACE - (time.perf_counter() - asked)))
            if answer is None:
                failed += 1
            elif event_id and _reflects(kind, article, answer):
                seen[event_id] = time.time()
            if time.time() >= stop_at:
                break
    connection.close()
    return latencies, failed, seen


def _tracked_events(url: str, customers: list[str], count: int, day: pd.Timestamp) -> pd.DataFrame:
    """`count` events with a visible effect on one shopper's answer each (module docstring)."""
    parts = urllib.parse.urlsplit(url)
    connection = KeptAliveConnection(parts.hostname or "127.0.0.1", parts.port or 80, parts.path)
    rows, sold = [], set()
    for customer in customers:
        if len(rows) >= count:
            break
        _, answer = _post(connection, {"customer_id": customer})
        if answer is None or answer["fallback"] or len(answer["article_ids"]) < 12:
            continue
        if len(rows) % 2 == 0:
            first = answer["article_ids"][0]
            if first in sold:
                continue
            sold.add(first)
            rows.append({"type": "stock", "customer_id": customer, "article_id": first, "in_stock": 0})
        else:
            pairs = zip(answer["article_ids"], answer["sources"], strict=True)
            fresh = [a for a, s in pairs if "repurchase" not in s and a not in sold]
            if not fresh:
                continue
            rows.append(
                {
                    "type": "purchase",
                    "customer_id": customer,
                    "article_id": fresh[-1],
                    "price": 0.03,
                    "sales_channel_id": 2,
                }
            )
    connection.close()
    events = pd.DataFrame(rows)
    events["event_id"] = [f"tracked-{i:05d}" for i in range(len(events))]
    events["event_time"] = [day + pd.Timedelta(seconds=i) for i in range(len(events))]
    return events


def _photo_delays(url: str, photos: dict[str, Path], commits: dict[str, float], stop_at: float) -> dict:
    """Per new article: seconds from its commit until a photo request with its photo returns it."""
    parts = urllib.parse.urlsplit(url)
    connection = KeptAliveConnection(parts.hostname or "127.0.0.1", parts.port or 80, parts.path)
    found: dict[str, float] = {}
    images = {a: base64.b64encode(p.read_bytes()).decode() for a, p in photos.items()}
    while time.time() < stop_at and len(found) < len(photos):
        for article, image in images.items():
            if article in found or article not in commits:
                continue
            _, answer = _post(connection, {"image": image, "k": 5})
            if answer is not None and article in answer["article_ids"]:
                found[article] = time.time() - commits[article]
        time.sleep(0.2)
    connection.close()
    return found


def _shop(lakehouse: str, events_file: str, start: Any, appended: Any) -> None:
    """The replay's process: says "ready" once its Spark is up, replays from the time it is sent, hands
    each commit's event ids and time back, then the CPU seconds the replay used (a float: the end)."""
    os.setsid()  # a session of its own, for the CPU accounting
    _yield_to_serving(os.getpid())
    spark = get_spark("fashionrec-replay")
    events = pd.read_parquet(events_file)
    appended.put("ready")
    time.sleep(max(0.0, start.get() - time.time()))
    cpu = _cpu_seconds({"replay": os.getpid()})["replay"]
    replay(
        spark,
        TableLocator(lakehouse),
        events,
        RATE,
        progress=False,
        on_commit=lambda commit: appended.put((commit.event_ids, commit.committed_at)),
    )
    appended.put(round(_cpu_seconds({"replay": os.getpid()})["replay"] - cpu, 1))  # the end: its CPU


def _yield_to_serving(pid: int) -> None:
    """Lower the priority of a process that leads a session of its own (the stream, the replay): its
    niceness, and its session's where the kernel groups CPU time by session (`sched_autogroup`: there,
    a process's own niceness only counts against its session's other processes; man 7 sched)."""
    os.setpriority(os.PRIO_PROCESS, pid, STREAM_NICENESS)
    group = Path(f"/proc/{pid}/autogroup")
    if group.exists():
        group.write_text(str(STREAM_NICENESS))


def _cpu_seconds(sessions: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each role's processes (each role a session of its own) and by the whole
    machine (the clients, this process, anything else: the rest), from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = dict.fromkeys(sessions, 0.0)
    role_of = {session: role for role, session in sessions.items()}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        role = role_of.get(int(fields[3]))  # the fields after the name: state, ppid, pgrp, session, ...
        if role:
            used[role] += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    busy = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    used["machine"] = (sum(busy) - busy[3] - busy[4]) / tick  # all but idle and iowait
    return used


def _percentiles(values: list[float], scale: float = 1.0) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    data = np.asarray(values) * scale
    return {
        "p50": round(float(np.percentile(data, 50)), 2),
        "p95": round(float(np.percentile(data, 95)), 2),
        "max": round(float(data.max()), 2),
    }


def run(scale: str) -> dict[str, Any]:
    root = Path.cwd()
    if not (root / "mlflow.db").exists() or not (root / "lakehouse").exists():
        raise RuntimeError("run `make demo` first: this benchmark serves the demo's champion over its tables")
    scratch = Path(tempfile.mkdtemp(prefix="fashionrec-freshness-"))
    server = stream = None
    try:
        lakehouse = scratch / "lakehouse"
        for table in SCRATCH_TABLES:
            if (root / "lakehouse" / table).exists():
                shutil.copytree(root / "lakehouse" / table, lakehouse / table)
        data = scratch / "data"
        data.mkdir()
        for name in ("transactions_train.csv", "articles.csv"):
            shutil.copy(root / "data" / "small" / name, data / name)
        events = pd.read_parquet(make_events(data, RATE * SECONDS, new_articles=3, sell_outs=0))
        store_url = f"sqlite:///{scratch / 'online.db'}"
        open_store(store_url).close()
        spark = get_spark("fashionrec-freshness")
        tables = TableLocator(str(lakehouse))
        ensure_events_table(spark, tables)

        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": TRACKING_URI,
            ENVIRONMENT_VARIABLE: store_url,
            "FASHIONREC_DRIVER_MEMORY": "2g",
        }
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "fashionrec", "serve", "-m", MODEL_URI, "-p", str(port), "-w", "2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        stream = subprocess.Popen(  # yields to serving here (on Databricks: a cluster of its own)
            [
                sys.executable,
                "-m",
                "fashionrec",
                "stream",
                "--lakehouse",
                str(lakehouse),
                "--online-store",
                store_url,
                "--checkpoint-dir",
                str(scratch / "checkpoints"),
                "--trigger-seconds",
                "1",
            ],
            env=env,
            stdout=open(scratch / "stream.log", "w"),  # noqa: SIM115 - the scratch folder is removed at the end
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _yield_to_serving(stream.pid)
        snapshot = root / "artifacts" / "serving" / "snapshot"
        warm = pd.read_parquet(snapshot / "purchases.parquet", columns=["customer_id"])[
            "customer_id"
        ].unique()
        customers = list(np.random.default_rng(3).permutation(np.sort(warm)))
        _first_answer(base, customers[0], server, time.perf_counter())
        # the stream is up when it has applied a first event (a stock level that changes nothing)
        in_stock = pd.read_parquet(root / "artifacts" / "serving" / "snapshot" / "articles.parquet")
        steady = in_stock.loc[in_stock["in_stock"] == 1, "article_id"].iloc[0]
        warm_up = {"event_id": "warm-up", "type": "stock", "article_id": steady, "in_stock": 1}
        append_events(spark, tables, pd.DataFrame([{**warm_up, "event_time": events["event_time"].min()}]))
        with open_store(store_url) as store:
            deadline = time.monotonic() + 300
            while store.applied_batch() < 0:
                if stream.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the stream did not start: {scratch / 'stream.log'}")
                time.sleep(0.2)
        day = pd.Timestamp(events["event_time"].min()).normalize()
        tracked = _tracked_events(f"{base}/invocations", customers, SECONDS, day)
        print(f"freshness: {len(tracked)} tracked events, {len(events)} generated, server and stream up")

        # the replay: one tracked event a second among the generated ones
        mixed, generated = [], iter(events.to_dict("records"))
        for i in range(RATE * SECONDS):
            tracked_row = (
                tracked.iloc[i // RATE].to_dict() if i % RATE == 0 and i // RATE < len(tracked) else None
            )
            mixed.append(tracked_row or next(generated))
        mixed_frame = pd.DataFrame(mixed)
        commits: dict[str, float] = {}
        new = events[events["type"] == "new_article"]
        new_article_of = dict(zip(new["event_id"], new["article_id"], strict=True))
        photos = {
            a: Path(p)
            for a, p in zip(events["article_id"], events["photo_path"], strict=True)
            if isinstance(p, str) and p
        }
        photo_result: dict[str, float] = {}
        photo_thread = threading.Thread(
            target=lambda: photo_result.update(_photo_delays(f"{base}/invocations", photos, commits, stop_at))
        )
        # the replay (the shop): a process of its own, as on Databricks, where it is neither the serving
        # endpoint nor the stream's cluster; at the stream's priority, serving first
        mixed_frame.to_parquet(scratch / "replay.parquet")
        context = multiprocessing.get_context("spawn")
        start, appended = context.Queue(), context.Queue()
        shop = context.Process(
            target=_shop, args=(str(lakehouse), str(scratch / "replay.parquet"), start, appended)
        )
        shop.start()
        if appended.get(timeout=300) != "ready":
            raise RuntimeError("the replay process did not start")
        # the replay starts at `start_at`; tracked event k is in its commit of second k + 1
        start_at = time.time() + 10
        stop_at = start_at + SECONDS + SETTLE
        due = tracked.assign(due=start_at + np.arange(len(tracked), dtype=float))
        columns = ["event_id", "customer_id", "article_id", "type", "due"]
        plan = [list(map(tuple, due[columns].to_numpy()[i::CLIENTS])) for i in range(CLIENTS)]
        with ProcessPoolExecutor(CLIENTS, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_client, f"{base}/invocations", mine, stop_at) for mine in plan]
            photo_thread.start()
            start.put(start_at)
            sessions = {"serving": server.pid, "stream": stream.pid}
            cpu_before = _cpu_seconds(sessions)
            while isinstance(commit := appended.get(timeout=SECONDS + SETTLE), tuple):
                event_ids, committed_at = commit
                for event_id in event_ids:
                    commits[event_id] = committed_at
                    if event_id in new_article_of:  # the photo search waits for its article's commit
                        commits[new_article_of[event_id]] = committed_at
            results = [f.result() for f in futures]
            cpu = {k: round(v - cpu_before[k], 1) for k, v in _cpu_seconds(sessions).items()}
            cpu["replay"] = commit
            photo_thread.join()
            shop.join()
        # the tables trail the store: how long until every batch is written too (then a clean stop)
        replay_end = time.monotonic()
        with open_store(store_url) as store:
            while store.tables_batch() < store.applied_batch() or store.applied_batch() < 0:
                if time.monotonic() - replay_end > 300:
                    break
                time.sleep(0.5)
            tables_lag = time.monotonic() - replay_end
        os.killpg(stream.pid, signal.SIGTERM)
        stream.wait(timeout=120)

        delays = {kind: [] for kind in ("stock", "purchase")}
        kinds = dict(zip(tracked["event_id"], tracked["type"], strict=True))
        for _, _, seen in results:
            for event_id, at in seen.items():
                delays[kinds[event_id]].append(at - commits[event_id])
        everything = delays["stock"] + delays["purchase"]
        slowest = sorted(
            ((at - commits[e], commits[e]) for _, _, seen in results for e, at in seen.items()), reverse=True
        )[:5]
        latencies = [x for mine, _, _ in results for x in mine]
        purchases = mixed_frame[mixed_frame["type"] == "purchase"]
        tx = read_table(spark, tables, Tables.TRANSACTIONS).where("event_id IS NOT NULL").toPandas()
        with open_store(store_url) as store:
            held = store.dump()["purchases"]
        return {
            "rate_events_per_s": RATE,
            "seconds": SECONDS,
            "clients": CLIENTS,
            "client_pace_s": PACE,
            "events_appended": len(mixed_frame),
            "tracked": len(tracked),
            "reflected": {k: len(v) for k, v in delays.items()},
            "event_to_answer_s": _percentiles(everything),
            "event_to_answer_s_by_kind": {k: _percentiles(v) for k, v in delays.items()},
            "serving_requests": len(latencies),
            "serving_failed": sum(f for _, f, _ in results),
            "serving_ms": {
                **_percentiles(latencies, 1000),
                "p99": round(float(np.percentile(latencies, 99)) * 1000, 1),
            },
            "slowest_committed_at": {
                time.strftime("%H:%M:%S", time.localtime(at)): round(delay, 1) for delay, at in slowest
            },
            "cpu_seconds": cpu,
            "new_article_photo_search_s": {a: round(v, 1) for a, v in photo_result.items()},
            "new_articles": len(photos),
            "tables_caught_up_s_after_the_clients_stopped": round(tables_lag, 1),
            "purchases_appended": len(purchases),
            "purchases_in_transactions": int(tx["event_id"].nunique()),
            "purchases_applied_twice": int(len(tx) - tx["event_id"].nunique()),
            "purchases_in_store": len(held),
            "purchases_lost": len(set(purchases["event_id"]) - set(tx["event_id"])),
        }
    finally:
        if (scratch / "stream.log").exists():  # the stream's per-batch timings, for a look afterwards
            shutil.copy(scratch / "stream.log", Path("reports") / "freshness_stream.log")
        for process in (server, stream):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(scratch, ignore_errors=True)
