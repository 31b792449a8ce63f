"""Online serving: the in-memory recommender equals batch scoring, and the real MLflow scoring server
answers real HTTP requests (good and bad ones) with the right status codes."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from fashionrec.config import TableLocator


@pytest.fixture(scope="module")
def served_run(spark, job_run, tiny_data, tmp_path_factory) -> Path:
    """A private copy of the whole-graph run (`job_run` stays read-only) whose lakehouse holds purchases
    newer than the run's registration, so that `register` has new inputs to build a version from: a daily
    file lands and is batch-scored, so that `recommendations` matches the lakehouse."""
    from fashionrec.config import ScoringParams
    from fashionrec.ranking.score import run_batch_score
    from tests.helpers import copy_job_run, land_next_day, recommendation_rows, warm_and_cold

    run = copy_job_run(job_run, tmp_path_factory.mktemp("served") / "run")
    lakehouse = run / "lakehouse"
    warm, cold = warm_and_cold(recommendation_rows(spark, lakehouse))
    buyers = [*warm, cold]
    _, landed = land_next_day(spark, lakehouse, tiny_data, run / "data", buyers)
    assert sum(r["inserted"] for r in landed["ingest"]) == len(buyers), landed
    scored = run_batch_score(
        ScoringParams(lakehouse=str(lakehouse), artifacts_dir=str(run / "artifacts")), spark
    )
    assert scored["customers_scored"] == len(buyers), scored
    return run


@pytest.fixture(scope="module")
def snapshot(spark, served_run) -> Path:
    from fashionrec.snapshot.build import build_snapshot

    out = served_run / "serving" / "snapshot"
    build_snapshot(
        spark, TableLocator(lakehouse=str(served_run / "lakehouse")), served_run / "artifacts", out
    )
    return out


@pytest.fixture(scope="module")
def recommender(snapshot, served_run):
    from fashionrec.recommender.core import Recommender

    return Recommender(snapshot, served_run / "artifacts")


def test_online_answers_equal_the_recommendations_table(spark, served_run, recommender):
    rows = spark.read.format("delta").load(str(served_run / "lakehouse" / "recommendations")).collect()
    table = {r["customer_id"]: r for r in rows}
    warm = sorted(c for c, r in table.items() if not r["fallback"])[:40]
    cold = sorted(c for c, r in table.items() if r["fallback"])[:10]
    assert warm and cold
    answers = recommender.recommend(warm + cold)
    for answer in answers:
        row = table[answer.customer_id]
        assert answer.fallback == row["fallback"], answer.customer_id
        assert answer.article_ids == list(row["article_ids"]), answer.customer_id
        assert answer.scores == pytest.approx(list(row["scores"]), rel=1e-4, abs=1e-5)
        assert answer.sources == list(row["sources"]), answer.customer_id


def test_a_snapshot_table_larger_than_one_collect_is_written_in_parts(spark, served_run, tmp_path):
    """At full scale the purchase histories exceed the driver's result cap, so they are collected one hash
    bucket at a time: the file written in parts holds exactly the rows of one collect."""
    import pyarrow.parquet as pq

    from fashionrec.snapshot.build import purchase_rows, scoring_snapshot, write_rows

    tables = TableLocator(lakehouse=str(served_run / "lakehouse"))
    week = int(scoring_snapshot(spark, tables)["week"])
    rows = purchase_rows(
        spark.read.format("delta").load(str(served_run / "lakehouse" / "transactions")), week
    )
    (tmp_path / "one").mkdir()
    (tmp_path / "parts").mkdir()
    total = write_rows(rows, tmp_path / "one", "purchases")
    assert write_rows(rows, tmp_path / "parts", "purchases", rows_per_part=max(1, total // 5)) == total
    whole = pq.read_table(tmp_path / "one" / "purchases.parquet")
    parted = pq.ParquetFile(tmp_path / "parts" / "purchases.parquet")
    assert parted.metadata.num_row_groups >= 5
    assert parted.schema_arrow == whole.schema
    key = ["customer_id", "article_id", "day"]
    expected = whole.to_pandas().sort_values(key, ignore_index=True)
    assert parted.read().to_pandas().sort_values(key, ignore_index=True).equals(expected)


def test_the_global_half_is_computed_once_for_the_same_inputs(spark, served_run, tmp_path, monkeypatch):
    """Daily runs keep the week and the popularity snapshot: batch scoring and register copy the global
    half computed for the same inputs (the same files) instead of recomputing it; other inputs get their
    own entry, and only the two most recent entries are kept."""
    import shutil

    from fashionrec.recommender.layout import CONFIG_FILE
    from fashionrec.snapshot import build as module

    tables = TableLocator(lakehouse=str(served_run / "lakehouse"))
    artifacts = tmp_path / "artifacts"
    (artifacts / CONFIG_FILE).parent.mkdir(parents=True)
    shutil.copy(served_run / "artifacts" / CONFIG_FILE, artifacts / CONFIG_FILE)
    state = module.scoring_snapshot(spark, tables)
    module.build_snapshot(spark, tables, artifacts, tmp_path / "one", state, customers=False)
    computed: list[int] = []
    real = module.write_global_part
    monkeypatch.setattr(module, "write_global_part", lambda *a, **k: computed.append(1) or real(*a, **k))
    module.build_snapshot(spark, tables, artifacts, tmp_path / "two", state, customers=False)
    assert computed == []
    files = sorted(f.name for f in (tmp_path / "one").iterdir())
    assert files == sorted(f.name for f in (tmp_path / "two").iterdir()) and "articles.parquet" in files
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    for back in (1, 2):
        earlier = state | {"week": int(state["week"]) - back}
        meta = module.build_snapshot(
            spark, tables, artifacts, tmp_path / f"back{back}", earlier, customers=False
        )
        assert meta["week"] == int(state["week"]) - back
    assert computed == [1, 1]
    assert len([e for e in (artifacts / module.GLOBAL_CACHE).iterdir() if not e.name.startswith(".")]) == 2


def test_a_refreshed_snapshot_recomputes_only_the_changed_customers(spark, served_run, tmp_path, monkeypatch):
    """A daily refresh re-registers the serving snapshot: the customers whose transactions changed since
    the last one are recomputed, the others' rows copied, and the files hold what a rebuild from scratch
    holds; the global half (same week, same popularity snapshot) is not recomputed."""
    from pyspark.sql import functions as F

    from fashionrec.features.weeks import week_of
    from fashionrec.lake.tables import current_version
    from fashionrec.snapshot.build import build_snapshot, scoring_snapshot
    from tests.conftest import copy_folders

    lake = copy_folders(
        served_run / "lakehouse",
        tmp_path / "lakehouse",
        (
            "transactions",
            "customers",
            "articles",
            "article_availability",
            "similar_articles",
            "scoring_state",
        ),
    )
    tables = TableLocator(lakehouse=str(lake))
    transactions = spark.read.format("delta").load(str(lake / "transactions"))
    latest = transactions.agg(F.max("t_dat")).first()[0]
    # The table as it is now (`served_run` landed a day after the job's batch scoring).
    state = scoring_snapshot(spark, tables) | {
        "transactions_version": current_version(spark, tables, "transactions"),
        "history_week": week_of(latest) + 1,
    }
    first = build_snapshot(spark, tables, served_run / "artifacts", tmp_path / "serving", state)
    assert first["personal"]["recomputed_customers"] is None and first["personal"]["complete"]

    # Up to 6 of the last day's purchases again a day later (after `served_run`'s landed file the last
    # day holds only 3), collected first so that the rows do not change once the table has grown.
    day = transactions.where(F.col("t_dat") == latest).orderBy("txn_id").limit(6)
    new_rows = day.withColumn("t_dat", F.date_add("t_dat", 1)).withColumn(
        "txn_id", F.xxhash64("txn_id", F.lit("+1"))
    )
    new_day = spark.createDataFrame(new_rows.collect(), new_rows.schema)
    new_day.write.format("delta").mode("append").save(str(lake / "transactions"))
    appended, buyers = new_day.count(), {r["customer_id"] for r in new_day.collect()}
    assert appended > 0
    later = state | {
        "transactions_version": current_version(spark, tables, "transactions"),
        "history_week": week_of(latest) + 2,
    }
    assert later["transactions_version"] == state["transactions_version"] + 1
    from fashionrec.snapshot import build as module

    computed: list[int] = []
    real = module.write_global_part
    monkeypatch.setattr(module, "write_global_part", lambda *a, **k: computed.append(1) or real(*a, **k))
    refreshed = build_snapshot(spark, tables, served_run / "artifacts", tmp_path / "serving", later)
    assert computed == []  # a new transactions version, the same global version: the cached half
    rebuilt = build_snapshot(spark, tables, served_run / "artifacts", tmp_path / "scratch", later)
    assert refreshed["personal"]["recomputed_customers"] == len(buyers)
    assert (
        refreshed["rows"]["purchases"]
        == first["rows"]["purchases"] + appended
        == rebuilt["rows"]["purchases"]
    )
    for name, key in (("purchases", ["customer_id", "article_id", "day"]), ("customers", ["customer_id"])):
        one, other = (
            pd.read_parquet(tmp_path / folder / f"{name}.parquet").sort_values(key, ignore_index=True)
            for folder in ("serving", "scratch")
        )
        pd.testing.assert_frame_equal(one, other, check_exact=False)
    monkeypatch.setattr(module, "__version__", "another")  # other code: every customer recomputed
    again = build_snapshot(spark, tables, served_run / "artifacts", tmp_path / "serving", later)
    assert again["personal"]["recomputed_customers"] is None
    assert again["rows"]["purchases"] == rebuilt["rows"]["purchases"]


def test_the_rows_the_ranker_learns_from_rank_like_the_served_lists(spark, served_run, recommender):
    """The ranker learns from `ranking.frames.week_frame` rows; batch scoring and serving run the core on
    a snapshot of their own. For the week and table versions of `scoring_state`, ranking the training
    path's rows gives the served lists (method "pipeline", before the live method)."""
    from pyspark.sql import functions as F

    from fashionrec.config import Tables
    from fashionrec.features.weeks import first_day
    from fashionrec.lake.tables import read_table
    from fashionrec.ranking.frames import week_frame
    from fashionrec.recommender.layout import CONFIG_FILE, RANKER_DIR
    from fashionrec.recommender.pipeline import PipelineConfig
    from fashionrec.recommender.rank import rank_frame
    from fashionrec.recommender.ranker import Ranker

    tables, artifacts = TableLocator(lakehouse=str(served_run / "lakehouse")), served_run / "artifacts"
    state = read_table(spark, tables, Tables.SCORING_STATE).first()
    rows = read_table(spark, tables, Tables.RECOMMENDATIONS).where("NOT fallback").collect()
    # Customers who bought in the target week itself (a landed daily file) are served with those days
    # in their history; the ranker's rows never see the target week, so they are compared elsewhere.
    in_week = {
        r["customer_id"]
        for r in read_table(spark, tables, Tables.TRANSACTIONS)
        .where(F.col("t_dat") >= first_day(state["week"]))
        .select("customer_id")
        .collect()
    }
    picked = sorted(r["customer_id"] for r in rows if r["customer_id"] not in in_week)[:30]
    truth = spark.createDataFrame([(c, []) for c in picked], "customer_id string, article_ids array<string>")
    snapshot = {
        Tables.TRANSACTIONS: read_table(spark, tables, Tables.TRANSACTIONS, version=state["global_version"]),
        Tables.CUSTOMERS: read_table(spark, tables, Tables.CUSTOMERS, version=state["customers_version"]),
        Tables.ARTICLES: read_table(spark, tables, Tables.ARTICLES),
        Tables.ARTICLE_AVAILABILITY: read_table(spark, tables, Tables.ARTICLE_AVAILABILITY),
        Tables.SIMILAR_ARTICLES: read_table(spark, tables, Tables.SIMILAR_ARTICLES),
    }
    config = PipelineConfig.from_dict(json.loads((artifacts / CONFIG_FILE).read_text()))
    personal = read_table(spark, tables, Tables.TRANSACTIONS, version=state["transactions_version"])
    frame, _, _ = week_frame(spark, snapshot, state["week"], truth, config, artifacts, personal_tx=personal)
    ranked = rank_frame(frame, Ranker.load(artifacts / RANKER_DIR), config.k, config.max_per_type)
    assert sorted(ranked["customer_id"]) == picked
    online = {r.customer_id: r for r in recommender.recommend(picked, method="pipeline")}
    for customer, ids, scores, sources in ranked.itertuples(index=False):
        answer = online[customer]
        assert ids == answer.article_ids, customer
        assert scores == pytest.approx(answer.scores, rel=1e-4, abs=1e-5)
        assert sources == answer.sources, customer


def test_exclude_k_unknown_customers_and_similar_items(recommender):
    customer = next(iter(recommender.history_rows))
    first = recommender.recommend([customer], k=12)[0]
    shorter = recommender.recommend([customer], k=5, exclude={first.article_ids[0]})[0]
    assert len(shorter.article_ids) <= 5 and first.article_ids[0] not in shorter.article_ids
    stranger = recommender.recommend(["no-such-customer"])[0]
    assert stranger.fallback and len(stranger.article_ids) == recommender.k
    assert set(stranger.sources) == {"age_band_fallback"}
    article = recommender.similar.iloc[0]["article_id"]
    neighbours = recommender.similar_items(article, 3)
    assert len(neighbours) == 3 and article not in [a for a, _ in neighbours]
    assert [s for _, s in neighbours] == sorted((s for _, s in neighbours), reverse=True)


def test_live_methods_put_the_customers_own_recent_articles_first(recommender):
    """The live method as served: the baseline is own recent articles (that pass the business rules)
    then the baseline's popular list; a blend takes n of them, then the ranker's list."""
    from fashionrec.recommender.live import own_recent

    def own_kept(customer: str) -> list[str]:
        own = own_recent(recommender.history_rows[customer], recommender.first_day, recommender.k)
        keep = recommender.keep([customer] * len(own), own, already_bought_weeks=0)
        return [a for a, ok in zip(own, keep, strict=True) if ok]

    customer = next(c for c in sorted(recommender.history_rows) if len(own_kept(c)) >= 2)
    own = own_kept(customer)
    # A blend draws from the ranker's first 2k (its own articles may be among them).
    ranked = recommender.recommend([customer], k=2 * recommender.k, method="pipeline")[0]
    baseline = recommender.recommend([customer], method="repurchase_then_popular")[0]
    assert baseline.article_ids[: len(own)] == own
    rest = baseline.article_ids[len(own) :]
    assert rest == [a for a in recommender.popular if a in set(rest)]  # the popular list's order
    assert len(baseline.article_ids) == recommender.k
    blend = recommender.recommend([customer], method="repurchase_2_then_pipeline")[0]
    assert blend.article_ids[:2] == own[:2]
    assert blend.article_ids[2:] == [a for a in ranked.article_ids if a not in own[:2]][: recommender.k - 2]
    assert all(s == "repurchase" or s in ranked.sources for s in blend.sources[:2])
    excluded = recommender.recommend([customer], exclude={own[0]}, method="repurchase_then_popular")[0]
    assert own[0] not in excluded.article_ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: object) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_champion_moves_only_when_the_new_version_is_no_worse():
    from fashionrec.serving.register import decide

    assert decide(0.05, None)[0] == "champion"
    assert decide(0.05, 0.05)[0] == "champion"
    alias, reason = decide(0.04, 0.05)
    assert alias == "challenger" and "champion kept" in reason
    alias, reason = decide(0.05, 0.04, 0.06, "repurchase_then_popular")
    assert alias == "challenger" and "best baseline repurchase_then_popular" in reason
    alias, reason = decide(0.05, None, 0.06, "repurchase_then_popular")
    assert alias == "champion" and "below best baseline" in reason
    assert decide(0.06, 0.05, 0.06)[0] == "champion"


@pytest.fixture(scope="module")
def registered(spark, served_run) -> tuple[str, str]:
    """`register` once more (the lakehouse has new purchases since the job ran): (tracking URI, model URI)."""
    from fashionrec.config import RegisterParams
    from fashionrec.serving.register import run_register

    tracking = f"sqlite:///{served_run / 'mlflow.db'}"
    registered = run_register(
        RegisterParams(
            lakehouse=str(served_run / "lakehouse"),
            artifacts_dir=str(served_run / "artifacts"),
            mlflow_tracking_uri=tracking,
        ),
        spark,
    )
    assert registered["version"] == 2 and registered["alias"] == "champion", registered  # equal MAP: moves
    return tracking, registered["model_uri"]


def _start(command: list[str], tracking: str, port: int) -> subprocess.Popen:
    """A scoring server process, returned once it answers /ping on `port`."""
    # `mlflow models serve` runs `uvicorn` from PATH: the interpreter's own bin folder first (the venv's).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "PATH": path}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.time() > deadline:
            _stop(process)
            raise RuntimeError(f"scoring server did not start: {process.stderr.read().decode()[-3000:]}")
        time.sleep(1)


def _stop(process: subprocess.Popen) -> int:
    process.terminate()
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@pytest.fixture(scope="module")
def server(registered):
    """The `champion` behind `mlflow models serve` on a free local port; stopped afterwards."""
    tracking, model_uri = registered
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
    process = _start([*command, "-h", "127.0.0.1", "-p", str(port)], tracking, port)
    try:
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        _stop(process)


def _established_per_child(parent: int, port: int) -> list[int]:
    """For each child process of `parent`: how many established TCP connections to `port` it holds."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    counts = []
    for child in children:
        links = []
        for fd in Path(f"/proc/{child}/fd").iterdir():
            try:
                links.append(os.readlink(fd))
            except FileNotFoundError:  # closed since the listing (a worker's file, not a kept socket)
                continue
        counts.append(
            sum(link[len("socket:[") : -1] in inodes for link in links if link.startswith("socket:["))
        )
    return counts


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_fashionrec_serve_deals_kept_alive_connections_to_every_worker(registered, recommender, tiny_data):
    """`fashionrec serve -w 2`: MLflow's app on two workers forked from a parent that loaded the model;
    four kept-alive connections get two workers each and the same answers as the in-memory recommender,
    stored or computed (FAISS and XGBoost after the fork) and by photo (TensorFlow loaded in each worker
    after the fork); SIGTERM stops parent and workers."""
    import http.client

    tracking, model_uri = registered
    port = _free_port()
    command = [sys.executable, "-m", "fashionrec", "serve", "-m", model_uri, "-p", str(port), "-w", "2"]
    process = _start(command, tracking, port)
    try:
        customers = sorted(recommender.history_rows)[:8]
        # Answers computed, not stored (an exclude list), expected first: the in-memory recommender loads
        # its query tower for them, longer than the server keeps an idle connection open.
        dropped = [recommender.recommend([c])[0].article_ids[:1] for c in customers[:4]]
        computed = [
            recommender.recommend([c], exclude=set(d))[0].article_ids
            for c, d in zip(customers[:4], dropped, strict=True)
        ]
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(4)]
        for round_ in range(2):
            for i, connection in enumerate(connections):
                customer = customers[2 * i + round_]
                body = json.dumps({"dataframe_records": [{"customer_id": customer}]})
                connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = json.loads(response.read())
                assert response.status == 200, answer
                expected = recommender.recommend([customer])[0]
                assert answer["predictions"][0]["article_ids"] == expected.article_ids
        for i, connection in enumerate(connections):
            body = json.dumps({"dataframe_records": [{"customer_id": customers[i], "exclude": dropped[i]}]})
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            assert response.status == 200, answer
            assert answer["predictions"][0]["article_ids"] == computed[i]
        # Two workers with two connections each (other children, e.g. multiprocessing's resource tracker,
        # hold none).
        assert sorted(n for n in _established_per_child(process.pid, port) if n) == [2, 2]
        for connection in connections:
            connection.close()
        photo = sorted((tiny_data / "images").rglob("*.jpg"))[7]
        body = json.dumps({"dataframe_records": [{"image": base64.b64encode(photo.read_bytes()).decode()}]})
        for _ in range(2):  # two new connections: one per worker
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            connection.close()
            assert response.status == 200 and answer["predictions"][0]["article_ids"][0] == photo.stem
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        commands = [Path(f"/proc/{child}/cmdline").read_bytes() for child in children]
        assert not [c for c in commands if b"spawn_main" in c], "workers were spawned, not forked"
    finally:
        status = _stop(process)
    assert status == 0
    assert not Path(f"/proc/{process.pid}").exists()


def test_rest_endpoint_answers_single_batch_unknown_and_similar(server, recommender):
    warm = sorted(recommender.history_rows)[:3]
    status, body = _post(server, {"dataframe_records": [{"customer_id": warm[0]}]})
    assert status == 200, body
    answer = body["predictions"][0]
    expected = recommender.recommend([warm[0]])[0]
    assert answer["id"] == warm[0] and answer["article_ids"] == expected.article_ids
    assert answer["fallback"] is False and len(answer["sources"]) == len(answer["article_ids"])

    status, body = _post(
        server,
        {
            "dataframe_split": {
                "columns": ["customer_id", "k"],
                "data": [[warm[1], 5], [warm[2], 3], ["someone-new", 4]],
            }
        },
    )
    assert status == 200, body
    lengths = [len(p["article_ids"]) for p in body["predictions"]]
    assert lengths[0] <= 5 and lengths[1] <= 3 and lengths[2] == 4
    assert body["predictions"][2]["fallback"] is True

    article = recommender.similar.iloc[0]["article_id"]
    status, body = _post(server, {"dataframe_records": [{"article_id": article, "k": 4}]})
    assert status == 200 and len(body["predictions"][0]["article_ids"]) == 4
    assert set(body["predictions"][0]["sources"]) == {"visual"}


def test_the_registered_model_carries_an_example_request_it_answers(registered, server, recommender):
    """The example stored with the model (what Databricks' query page offers) is a warm customer's
    request, and the endpoint answers it exactly as the core does."""
    import mlflow

    tracking, model_uri = registered
    mlflow.set_tracking_uri(tracking)
    folder = Path(mlflow.artifacts.download_artifacts(model_uri))
    example = json.loads((folder / "serving_input_example.json").read_text())
    assert example["dataframe_split"]["columns"] == ["customer_id", "k"]
    customer, k = example["dataframe_split"]["data"][0]
    assert recommender.is_warm(customer) and k == 12
    status, body = _post(server, example)
    assert status == 200, body
    assert body["predictions"][0]["article_ids"] == recommender.recommend([customer])[0].article_ids


BUILD_SIDE_PACKAGES = (
    "pyspark",
    "delta",
    "hyperopt",
    "tensorflow_recommenders",
    "tensorflow_similarity",
    "matplotlib",
    "pytest",
    "databricks.bundles",  # the namespace `databricks` also holds databricks-sdk, which MLflow uses
)
# Loads the registered model with every build-side package made unimportable, answers one customer.
NO_BUILD_SIDE = """
import json, sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in {blocked!r}):
            raise ImportError(f"{{name}} is not in the served model's environment")
sys.meta_path.insert(0, Blocked())
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model({uri!r})
answer = model.predict(pd.DataFrame({{"customer_id": {customers!r}}}))
core = model.unwrap_python_model().recommender
lists = [list(a) for a in answer["article_ids"]]
print(json.dumps({{"lists": lists, "tower": core._query_tower is not None, "stored": core.stored is not None}}))
"""


def test_the_served_model_lists_and_imports_runtime_dependencies_only(registered, recommender):
    """The logged environment holds the runtime's pins alone, and the model loads and answers in a
    process where Spark, Delta, Hyperopt, the training libraries and the test tools cannot be imported,
    from the answers and query embeddings stored in its snapshot."""
    import mlflow

    tracking, model_uri = registered
    mlflow.set_tracking_uri(tracking)
    folder = Path(mlflow.artifacts.download_artifacts(model_uri))
    listed = {
        line.split("==")[0].strip().lower()
        for line in (folder / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for package in (
        "pyspark",
        "delta-spark",
        "hyperopt",
        "pytest",
        "ruff",
        "databricks-bundles",
        "matplotlib",
    ):
        assert package not in listed, (package, listed)
    assert {"mlflow", "tensorflow", "faiss-cpu", "xgboost-cpu", "pandas"} <= listed, listed
    customers = sorted(recommender.history_rows)[:25]
    code = NO_BUILD_SIDE.format(blocked=BUILD_SIDE_PACKAGES, uri=model_uri, customers=customers)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    # `register` stored batch scoring's lists and every customer's query embedding in the snapshot: the
    # answers are those lists, equal to the core's computed ones (the fixture's snapshot has neither), and
    # no query tower was loaded.
    assert answer["stored"] and recommender.stored is None
    assert answer["lists"] == [a.article_ids for a in recommender.recommend(customers)]
    assert recommender.uses_two_tower and not answer["tower"]


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_rest_endpoint_finds_articles_by_photo(server, tiny_data):
    """A catalogue article's own photo, sent as base64 at another size, finds that article first; a
    truncated copy of it gets 400 naming the problem."""
    photo = sorted((tiny_data / "images").rglob("*.jpg"))[7]
    article = photo.stem
    with Image.open(photo) as image:
        buffer = io.BytesIO()
        image.resize((3 * image.width, 3 * image.height)).save(buffer, format="PNG")  # the encoder resizes
    status, body = _post(
        server, {"dataframe_records": [{"image": base64.b64encode(buffer.getvalue()).decode(), "k": 5}]}
    )
    assert status == 200, body
    answer = body["predictions"][0]
    assert (
        answer["id"] == "image 0" and len(answer["article_ids"]) == 5 and set(answer["sources"]) == {"photo"}
    )
    assert answer["article_ids"][0] == article and answer["scores"][0] > 0.95
    assert answer["scores"] == sorted(answer["scores"], reverse=True)

    truncated = base64.b64encode(photo.read_bytes()[: len(photo.read_bytes()) // 2]).decode()
    status, body = _post(server, {"dataframe_records": [{"image": truncated}]})
    assert status == 400 and "truncated or corrupt" in body["message"], body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"dataframe_records": [{"k": 5}]}, "exactly one of customer_id, article_id and image"),
        ({"dataframe_records": [{"image": "not base64!"}]}, "image is not valid base64"),
        ({"dataframe_records": [{"image": base64.b64encode(b"GIF89a....").decode()}]}, "not a JPEG or PNG"),
        (
            {"dataframe_records": [{"customer_id": "x", "image": base64.b64encode(b"\xff\xd8").decode()}]},
            "give exactly one of customer_id, article_id and image (got customer_id and image)",
        ),
        ({"dataframe_records": [{"customer_id": "x", "k": 0}]}, "k must be from 1 to 100"),
        ({"dataframe_records": [{"customer_id": "x", "k": 1000}]}, "k must be from 1 to 100"),
        ({"dataframe_records": [{"customer_id": "x", "as_of": "yesterday"}]}, "as_of must be a date"),
        ({"dataframe_records": [{"article_id": "0000000000"}]}, "unknown article_id"),
        ({"dataframe_records": [{"customer_id": "x", "k": "five"}]}, "k"),
        (b"{not json", ""),
    ],
)
def test_rest_endpoint_rejects_bad_requests_with_400(server, body, reason):
    status, answer = _post(server, body)
    assert status == 400, answer
    assert reason in answer.get("message", ""), answer


def test_call_recommender_notebook_runs_against_the_endpoint(
    server, served_run, spark, monkeypatch, capsys, tmp_path
):
    from tests.conftest import REPO_ROOT
    from tests.test_notebooks import run_notebook

    out = run_notebook(
        REPO_ROOT / "notebooks" / "call_recommender.py",
        monkeypatch,
        capsys,
        lakehouse=str(served_run / "lakehouse"),
        endpoint=server,
        reports_dir=str(tmp_path),
    )
    assert out.count("recommended:") == 3 and "looks like" in out
    # Search by photo: the query is a catalogue article's own photo, so that article is found first.
    query = re.search(r"^photo of (\d+) .*: closest catalogue photos\n +([\d.]+) +(\d+) ", out, re.MULTILINE)
    assert query is not None, out
    assert query.group(3) == query.group(1) and float(query.group(2)) > 0.99
    assert (tmp_path / "search_by_photo.png").stat().st_size > 0


@pytest.fixture(scope="module")
def guarded(registered):
    """The champion behind `fashionrec serve -w 1` (MLflow's app behind the request guard)."""
    tracking, model_uri = registered
    port = _free_port()
    command = [sys.executable, "-m", "fashionrec", "serve", "-m", model_uri, "-p", str(port), "-w", "1"]
    process = _start(command, tracking, port)
    try:
        yield port
    finally:
        _stop(process)


def _raw_post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, float]:
    """One POST over a fresh connection with exactly these headers: (status, body, seconds)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    try:
        connection.putrequest("POST", "/invocations", skip_accept_encoding=True)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read(), time.perf_counter() - started
    finally:
        connection.close()


def _malformed_requests(customer: str, article: str) -> list[tuple[bytes, dict[str, str]]]:
    """Over 300 malformed requests of every kind the guard and the model must reject."""
    import random

    json_type = {"Content-Type": "application/json"}
    rng = random.Random(7)

    def records(*rows: dict) -> bytes:
        return json.dumps({"dataframe_records": list(rows)}).encode()

    bad_values = [
        {"customer_id": customer, "k": True},
        {"customer_id": customer, "k": 12.5},
        {"customer_id": customer, "k": "5"},
        {"customer_id": customer, "k": 0},
        {"customer_id": customer, "k": -3},
        {"customer_id": customer, "k": 101},
        {"customer_id": customer, "k": [1]},
        {"customer_id": customer, "k": {"a": 1}},
        {"customer_id": customer, "exlude": [article]},
        {"customer_id": customer, "exclude": article},
        {"customer_id": customer, "exclude": 5},
        {"customer_id": customer, "exclude": [1, 2]},
        {"customer_id": customer, "exclude": {"a": 1}},
        {"customer_id": customer, "exclude": [article] * 1001},
        {"customer_id": customer, "as_of": "yesterday"},
        {"customer_id": customer, "as_of": 5},
        {"customer_id": customer, "as_of": "1999-01-01"},
        {"customer_id": 5},
        {"customer_id": ""},
        {"customer_id": []},
        {"customer_id": {"x": 1}},
        {"customer_id": "x" * 10_000},
        {"customer_id": customer, "article_id": article},
        {"k": 5},
        {},
        {"article_id": "0000000000"},
        {"article_id": 108775015},
    ]
    requests = [(records(row), json_type) for row in bad_values]
    requests += [
        (
            json.dumps({"dataframe_split": {"columns": list(r), "data": [list(r.values())]}}).encode(),
            json_type,
        )
        for r in bad_values
        if r
    ]
    requests += [
        (records({"customer_id": customer}), {}),  # no Content-Type
        (records({"customer_id": customer}), {"Content-Type": "text/plain"}),
        (records({"customer_id": customer}), {"Content-Type": "application/xml"}),
        (b"[" * 5000, json_type),
        (b"{" * 100_000, json_type),
        (b'{"dataframe_records": ' + b"[" * 40 + b"]" * 40 + b"}", json_type),
        (b"{not json", json_type),
        (b"", json_type),
        (b"null", json_type),
        (b"[]", json_type),
        (b'"text"', json_type),
        (b"\xff\xfe\x00garbage", json_type),
        (json.dumps({"dataframe_recrds": [{"customer_id": customer}]}).encode(), json_type),
        (json.dumps({"dataframe_records": {"customer_id": customer}}).encode(), json_type),
        (json.dumps({"dataframe_records": [customer]}).encode(), json_type),
        (json.dumps({"dataframe_split": [customer]}).encode(), json_type),
        (json.dumps({"dataframe_split": {"columns": ["customer_id"], "data": customer}}).encode(), json_type),
        (records(*[{"customer_id": customer}] * 1001), json_type),  # too many rows
        (b'{"dataframe_records": [{"customer_id": "' + b"a" * (3 * 1024 * 1024) + b'"}]}', json_type),
        (records({"customer_id": customer}), {**json_type, "X-Padding": "p" * 200_000}),
        (records({"customer_id": customer}), {"Content-Type": "application/json; charset=latin-1"}),
    ]
    while len(requests) < 320:  # random damage to a good body: cut, flipped and inserted bytes
        good = bytearray(records({"customer_id": customer, "k": 5, "exclude": [article]}))
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(good))
            action = rng.choice(("cut", "flip", "insert"))
            if action == "cut":
                del good[position:]
                good = good or bytearray(b"{")
            elif action == "flip":
                good[position] = rng.choice(b'{}[]",:\\\x00\xff')
            else:
                good[position:position] = bytes(rng.choice(b'{}[]",:') for _ in range(rng.randint(1, 30)))
        try:
            if json.loads(bytes(good)) is not None:
                continue  # still valid JSON: may be a good request
        except ValueError:
            pass
        requests.append((bytes(good), json_type))
    return requests


def test_fuzzed_requests_get_4xx_never_5xx_and_the_server_keeps_answering(guarded, recommender):
    """Over 300 malformed requests over real HTTP: all 4xx, none slower than 5 s, short error bodies; a
    valid request is answered afterwards."""
    customer = sorted(recommender.history_rows)[0]
    article = recommender.similar.iloc[0]["article_id"]
    requests = _malformed_requests(customer, article)
    assert len(requests) >= 300
    failures = []
    for body, headers in requests:
        try:
            status, answer, seconds = _raw_post(guarded, body, headers)
        except (ConnectionError, OSError) as error:  # the server closed on us: that is no answer either
            failures.append((body[:80], headers.keys(), repr(error)))
            continue
        if not 400 <= status < 500 or seconds > 5 or len(answer) > 4096:
            failures.append((body[:80], list(headers), status, round(seconds, 2), answer[:200]))
    assert not failures, failures[:10]
    body = json.dumps({"dataframe_records": [{"customer_id": customer}]}).encode()
    status, answer, _ = _raw_post(guarded, body, {"Content-Type": "application/json"})
    assert status == 200, answer
    assert (
        json.loads(answer)["predictions"][0]["article_ids"]
        == recommender.recommend([customer])[0].article_ids
    )


def test_guard_names_the_field_and_the_limit(guarded, recommender):
    customer = sorted(recommender.history_rows)[0]
    cases = [
        ({"dataframe_records": [{"customer_id": customer, "exlude": []}]}, 400, "exlude"),
        ({"dataframe_records": [{"customer_id": customer, "k": True}]}, 400, "k must be an integer"),
        ({"dataframe_records": [{"customer_id": customer, "k": 12.5}]}, 400, "k must be an integer"),
        ({"dataframe_records": [{"customer_id": customer}] * 1001}, 400, "1000"),
    ]
    for payload, expected, text in cases:
        status, answer, _ = _raw_post(
            guarded, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )
        assert status == expected and text in json.loads(answer)["message"], (payload, answer[:300])
    status, answer, _ = _raw_post(guarded, b"x" * (3 * 1024 * 1024), {"Content-Type": "application/json"})
    assert status == 413 and str(2 * 1024 * 1024) in json.loads(answer)["message"]
    body = json.dumps({"dataframe_records": [{"customer_id": customer}]}).encode()
    status, answer, _ = _raw_post(guarded, body, {"Content-Type": "application/json", "X-Pad": "p" * 200_000})
    assert status == 431 and str(16 * 1024) in json.loads(answer)["message"]


def test_article_ids_without_the_leading_zero_mean_the_same_article(recommender, server):
    """Ingest pads `108775015` to `0108775015`; serving and `exclude` read it the same way."""
    article = next(a for a in recommender.similar["article_id"] if a.startswith("0"))
    status, padded = _post(server, {"dataframe_records": [{"article_id": article, "k": 3}]})
    status_short, short = _post(server, {"dataframe_records": [{"article_id": article.lstrip("0"), "k": 3}]})
    assert status == status_short == 200, short
    assert short["predictions"][0]["article_ids"] == padded["predictions"][0]["article_ids"]
    customer = sorted(recommender.history_rows)[0]
    first = recommender.recommend([customer])[0].article_ids[0]
    status, body = _post(
        server, {"dataframe_records": [{"customer_id": customer, "exclude": [first.lstrip("0")]}]}
    )
    assert status == 200 and first not in body["predictions"][0]["article_ids"], body


def test_the_example_request_is_the_smallest_buying_customer_or_any_customer(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fashionrec.serving.pyfunc import example_request

    schema = pa.schema([("customer_id", pa.string()), ("article_id", pa.string()), ("day", pa.int64())])
    with pq.ParquetWriter(tmp_path / "purchases.parquet", schema) as writer:
        writer.write_table(schema.empty_table())  # an empty first row group (an empty hash bucket)
        writer.write_table(pa.table({"customer_id": ["c9", "c2"], "article_id": ["a", "b"], "day": [1, 2]}))
    pd.DataFrame({"customer_id": ["c0", "c2", "c9"]}).to_parquet(tmp_path / "customers.parquet")
    assert example_request(tmp_path).to_dict("records") == [{"customer_id": "c2", "k": 12}]
    pq.write_table(schema.empty_table(), tmp_path / "purchases.parquet")
    assert example_request(tmp_path, k=5).to_dict("records") == [{"customer_id": "c0", "k": 5}]
