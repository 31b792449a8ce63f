"""Two-tower retrieval: input encoding and sharding, FAISS index, distributed training, the two tasks."""

from __future__ import annotations

import itertools
import json
import pickle
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from fashionrec.retrieval.index import ArticleIndex, exact_search, recall_vs_exact
from fashionrec.retrieval.inputs import encode, encode_history, in_partition_order
from tests.conftest import REPO_ROOT


def test_encode_maps_unknown_and_null_to_the_oov_bucket():
    ids = encode(pa.array(["b", None, "zzz", "a"]), ["a", "b"])
    assert ids.tolist() == [2, 0, 0, 1]


def test_history_is_right_aligned_latest_last_and_truncated():
    lists = pa.array([["a", "b"], [], None, ["a", "b", "c", "d"]], pa.list_(pa.string()))
    out = encode_history(lists, pa.array(["a", "b", "c", "d"]), length=3)
    assert out.tolist() == [[0, 1, 2], [0, 0, 0], [0, 0, 0], [2, 3, 4]]


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    x = centres[rng.integers(0, 50, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_snapshot_files_are_read_in_partition_order_whatever_their_uuids():
    files = [
        "file:/lake/t/part-00002-ffff-c000.snappy.parquet",
        "file:/lake/t/part-00000-eeee-c000.snappy.parquet",
        "file:/lake/t/week=3/part-00001-0000-c000.snappy.parquet",
        "file:/lake/t/part-00000-aaaa-c000.snappy.parquet",
    ]
    assert [f.rsplit("/", 1)[-1][5:15] for f in in_partition_order(files)] == [
        "00000-aaaa",
        "00000-eeee",
        "00001-0000",
        "00002-ffff",
    ]


def test_exact_index_matches_brute_force_and_round_trips(tmp_path):
    catalog, queries = _clustered(2000, 16, 1), _clustered(20, 16, 2)
    index = ArticleIndex.build(catalog, [f"{i:010d}" for i in range(2000)], kind="exact")
    scores, ids = index.search(queries, 10)
    brute = np.argsort(-(queries @ catalog.T), axis=1)[:, :10]
    assert ids == [[f"{i:010d}" for i in row] for row in brute]
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first

    path = index.save(tmp_path / "index.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["index.npz"]  # no temporary file left behind
    again = ArticleIndex.load(path)
    assert again.search(queries, 10)[1] == ids and again.kind == "exact"


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall_against_exact(kind, tmp_path):
    catalog, queries = _clustered(20000, 32, 3), _clustered(200, 32, 4)
    ids = [str(i) for i in range(len(catalog))]
    index = ArticleIndex.build(catalog, ids, kind=kind)
    _, exact_rows = exact_search(catalog, queries, 100)
    exact = [[ids[i] for i in row] for row in exact_rows]
    found = index.search(queries, 100)[1]
    assert recall_vs_exact(found, exact) >= 0.95
    again = ArticleIndex.load(index.save(tmp_path / "index.npz"))  # search settings survive a round trip
    assert again.kind == kind and again.search(queries, 100)[1] == found


def test_build_rejects_mismatched_ids():
    with pytest.raises(ValueError, match="3 embeddings for 2 article ids"):
        ArticleIndex.build(np.zeros((3, 4), np.float32), ["a", "b"])


# --- training on the tiny lakehouse ---------------------------------------------------------------


@pytest.fixture(scope="module")
def training(spark, tiny_lake):
    """(spec, validation queries, training rows) for the tiny lakehouse."""
    from fashionrec.config import RetrievalParams, Tables
    from fashionrec.lake.tables import read_table
    from fashionrec.retrieval.task import training_spec

    tables, _ = tiny_lake
    spec, queries = training_spec(spark, RetrievalParams(lakehouse=tables.lakehouse))
    return spec, queries, read_table(spark, tables, Tables.RETRIEVAL_TRAINING_SET).count()


def test_shards_are_disjoint_and_cover_the_snapshot(training):
    from fashionrec.retrieval.inputs import read_shard

    spec, _, rows = training
    shards = [read_shard(spec.files, spec.vocab, i, 3) for i in range(3)]
    covered = sorted(r for s in shards for r in s.row_ranges)
    assert covered[0][0] == 0 and covered[-1][1] == rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))  # no gap, no overlap
    assert sum(s.rows for s in shards) == rows


def test_barrier_workers_on_two_executors_each_train_on_their_own_gpu_to_identical_weights(
    training, tmp_path
):
    """Real executors (Spark's local-cluster: two executor JVMs, each with its own Python workers) with
    fake GPUs from a discovery script: every barrier task gets a distinct GPU address and exposes exactly
    that one to TensorFlow; training still completes on the CPU, to the same weights on both workers;
    Hyperopt trials run in executor processes and see one GPU each."""
    spec, _, rows = training
    spec.output_dir = None
    (tmp_path / "spec.pkl").write_bytes(pickle.dumps(spec))
    probe = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "cluster_probe.py"), "spec.pkl", "report.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())

    first, second = report["workers"]
    assert [first["index"], second["index"]] == [0, 1]
    assert len({first["pid"], second["pid"], report["driver_pid"]}) == 3  # two executor processes
    assert len(first["gpus"]) == len(second["gpus"]) == 1 and first["gpus"] != second["gpus"]
    for worker in (first, second):
        assert worker["cuda_visible_devices"] == worker["gpus"][0]
    assert first["examples"] + second["examples"] == rows
    assert first["weights_sha256"] == second["weights_sha256"]
    assert np.isfinite(first["losses"]).all() and first["losses"][-1] < first["losses"][0]

    trials = report["trials"]
    assert len(trials) == 2 and all(t["status"] == "ok" for t in trials)
    for trial in trials:
        assert trial["pid"] != report["driver_pid"] and len(trial["gpus"]) == 1
        assert trial["cuda_visible_devices"] == trial["gpus"][0]


def test_towers_train_under_mixed_precision_and_still_return_float32(training):
    from fashionrec.retrieval.inputs import read_shard, tf_dataset
    from fashionrec.retrieval.model import TowerConfig, TwoTower
    from fashionrec.training.distributed import mixed_precision_policy
    from fashionrec.training.tf_env import import_tensorflow

    tf = import_tensorflow()
    spec, _, _ = training
    assert mixed_precision_policy(True) == "float32"  # requested, but this machine has no GPU
    try:
        assert mixed_precision_policy(True, on_cpu=True) == "mixed_bfloat16"
        model = TwoTower(spec.vocab, TowerConfig(embedding_dim=16))
        model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
        arrays = read_shard(spec.files, spec.vocab, 0, 1).arrays
        arrays["sampling_probability"] = spec.vocab.sampling_probability()[arrays["article_id"]]
        history = model.fit(tf_dataset(arrays, 128, 0, 0.0), epochs=3, steps_per_epoch=5, verbose=0)
        assert model.query_tower.compute_dtype == "bfloat16"
        embedded = model.candidate_tower(spec.vocab.catalog_arrays())
    finally:
        mixed_precision_policy(False)
    assert embedded.dtype == tf.float32
    # The learned part is on the unit sphere; the product memory and the sales bias follow it.
    config = TowerConfig(embedding_dim=16)
    assert embedded.shape[1] == 16 + config.memory_dim + 1
    np.testing.assert_allclose(np.linalg.norm(embedded.numpy()[:, :16], axis=1), 1.0, atol=1e-5)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_exported_string_towers_match_the_trained_towers(training, tmp_path):
    """Serving sends raw ids: the SavedModels' lookups must give what training's integer path gave."""
    import pyarrow as pa

    from fashionrec.retrieval.towers import embed_catalog, embed_queries, load_towers
    from fashionrec.retrieval.train import HyperParams, train_worker
    from fashionrec.retrieval.vocab import ARTICLE_SALES, PRODUCT
    from fashionrec.training.distributed import SINGLE

    spec, queries, _ = training
    spec.output_dir = str(tmp_path / "retrieval" / "towers")
    result = train_worker(spec, HyperParams(embedding_dim=16, batch_size=128, epochs=1), SINGLE)
    spec.vocab.save(tmp_path / "retrieval" / "towers" / "vocab.json")
    query_encoder, candidate_encoder, vocab = load_towers(tmp_path)
    from fashionrec.retrieval.train import recall_against_catalog

    sales = np.asarray(vocab.article_recent_sales, dtype=np.float32)
    catalog = embed_catalog(
        candidate_encoder,
        pa.table(
            {"article_id": vocab.articles, PRODUCT: vocab.article_products}
            | dict(vocab.article_categories)
            | {name: sales[:, i] for i, name in enumerate(ARTICLE_SALES)}
        ),
    )
    whole = embed_queries(query_encoder, queries)
    via_strings = recall_against_catalog(whole, catalog, vocab.articles, spec.validation.actual, (12, 100))
    assert via_strings == pytest.approx(result.metrics, abs=1e-6)
    # A customer's vector, bit for bit, whatever batch Spark hands it in (batch scoring, ranker rows).
    in_sevens = [embed_queries(query_encoder, queries.slice(s, 7)) for s in range(0, queries.num_rows, 7)]
    np.testing.assert_array_equal(np.concatenate(in_sevens), whole)


def test_training_is_reproducible_for_a_seed_and_varies_with_it(training):
    """Same snapshot, same seed: the same towers bit for bit (a rerun of the job must not move its figures)."""
    import dataclasses

    from fashionrec.retrieval.train import HyperParams, train_worker
    from fashionrec.training.distributed import SINGLE

    spec, _, _ = training
    spec.output_dir = None
    hp = HyperParams(embedding_dim=16, batch_size=128, epochs=1)
    first, again = (train_worker(spec, hp, SINGLE) for _ in range(2))
    assert again.weights_sha256 == first.weights_sha256
    assert again.losses == first.losses and again.metrics == first.metrics
    other = train_worker(dataclasses.replace(spec, seed=spec.seed + 1), hp, SINGLE)
    assert other.weights_sha256 != first.weights_sha256


def test_lazy_adam_moves_only_the_rows_a_batch_touched_and_matches_adam_on_them():
    from fashionrec.training.lazy_adam import LazyAdam
    from fashionrec.training.tf_env import import_tensorflow

    tf = import_tensorflow()
    start = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)

    def train(optimizer, batches):
        table = tf.Variable(start)
        for ids in batches:
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.gather(table, ids) ** 2)
            optimizer.apply_gradients([(tape.gradient(loss, table), table)])
        return table.numpy()

    # Step one touches rows 1 and 3 (row 1 twice: its gradients are summed); step two only row 4.
    batches = [tf.constant([1, 3, 1]), tf.constant([4])]
    lazy = train(LazyAdam(learning_rate=0.1), batches)
    dense_first = train(tf.keras.optimizers.Adam(learning_rate=0.1), batches[:1])
    dense_both = train(tf.keras.optimizers.Adam(learning_rate=0.1), batches)
    np.testing.assert_allclose(lazy[[1, 3]], dense_first[[1, 3]], atol=1e-5)
    np.testing.assert_array_equal(lazy[[0, 2, 5]], start[[0, 2, 5]])
    assert not np.allclose(lazy[4], start[4])
    # Plain Adam keeps moving rows 1 and 3 on step two although the batch did not contain them.
    assert not np.allclose(dense_both[1], dense_first[1])
    np.testing.assert_array_equal(lazy[[1, 3]], train(LazyAdam(learning_rate=0.1), batches[:1])[[1, 3]])


def test_random_negatives_train_and_mask_the_rows_own_positive(training):
    from fashionrec.retrieval.model import TowerConfig, TwoTower
    from fashionrec.retrieval.train import HyperParams, train_worker
    from fashionrec.training.distributed import SINGLE
    from fashionrec.training.tf_env import import_tensorflow

    spec, _, _ = training
    spec.output_dir = None
    result = train_worker(
        spec, HyperParams(embedding_dim=16, batch_size=128, epochs=2, random_negatives=64), SINGLE
    )
    assert np.isfinite(result.losses).all() and result.losses[-1] < result.losses[0]
    assert 0 < result.metrics["recall@100"] <= 1

    tf = import_tensorflow()
    model = TwoTower(spec.vocab, TowerConfig(embedding_dim=8, random_negatives=5))
    features = {k: tf.constant(v[:3]) for k, v in spec.vocab.catalog_arrays().items()}
    candidates, ids, probability = model._with_random_negatives(features, model.candidate_tower(features))
    assert candidates.shape[0] == 8 and ids.shape == (8,)
    assert ids.numpy()[:3].tolist() == [1, 2, 3]  # the batch's own articles first, then the draws
    assert (probability.numpy() > 0).all()


def test_a_vocabulary_from_transactions_is_the_one_the_feature_tables_give(spark, tiny_lake):
    """The backtest's folds build their vocabulary from the snapshot's tables (they have no feature tables
    of their week): for a week that has them, it is the vocabulary `train_retrieval` reads."""
    from fashionrec.config import Tables
    from fashionrec.lake.tables import read_table
    from fashionrec.retrieval.vocab_lake import vocabulary_from_lake, vocabulary_from_transactions

    tables, _ = tiny_lake
    week = int(read_table(spark, tables, Tables.CUSTOMER_FEATURES).agg({"as_of_week": "max"}).first()[0])
    lake = vocabulary_from_lake(spark, tables, week)
    direct = vocabulary_from_transactions(
        *(read_table(spark, tables, t) for t in (Tables.TRANSACTIONS, Tables.CUSTOMERS, Tables.ARTICLES)),
        week,
    )
    assert direct.customers == lake.customers and direct.articles == lake.articles
    assert direct.categories == lake.categories and direct.article_sales == lake.article_sales
    assert direct.age_mean == pytest.approx(lake.age_mean) and direct.age_std == pytest.approx(lake.age_std)
    assert sum(direct.article_sales) > 0


def test_a_short_fold_trains_on_smaller_batches_never_below_the_minimum():
    from fashionrec.retrieval.as_of import BATCHES_PER_EPOCH, MIN_BATCH, fold_batch_size

    assert fold_batch_size(100_000, 1024) == 1024
    assert fold_batch_size(1024 * BATCHES_PER_EPOCH - 1, 1024) == 512
    assert fold_batch_size(10, 1024) == MIN_BATCH


def test_the_product_memory_scores_every_colour_of_a_bought_product_alike(training):
    """A customer's history adds its products' memory vectors to the query; every article of a product
    carries the product's vector, so the memory part of the score is the same for each colour of a product
    bought, and the history's product matches itself better than other products do, before any training."""
    from fashionrec.retrieval.model import TowerConfig, TwoTower
    from fashionrec.training.tf_env import import_tensorflow

    tf = import_tensorflow()
    spec, _, _ = training
    vocab = spec.vocab
    config = TowerConfig(embedding_dim=8, memory_dim=64)
    model = TwoTower(vocab, config)
    catalog = vocab.catalog_arrays()
    products = catalog["product_code"]
    shared, counts = np.unique(products, return_counts=True)
    product = shared[counts > 1][0]  # a product sold in more than one colour
    colours = np.flatnonzero(products == product)
    history = np.zeros((1, 10), np.int32)
    history[0, -1] = catalog["article_id"][colours[0]]
    query = model.query_tower(
        {
            "customer_id": tf.constant([0]),
            "age": tf.constant([0.0]),
            "age_missing": tf.constant([1.0]),
            "month_sin": tf.constant([0.0]),
            "month_cos": tf.constant([1.0]),
            "history": tf.constant(history),
        }
    ).numpy()[0]
    candidates = model.candidate_tower({k: tf.constant(v) for k, v in catalog.items()}).numpy()
    memory = slice(config.embedding_dim, config.embedding_dim + config.memory_dim)
    scores = candidates[:, memory] @ query[memory]
    np.testing.assert_allclose(scores[colours], scores[colours[0]], rtol=1e-6)
    others = scores[products != product]
    assert scores[colours[0]] > np.quantile(others, 0.99)
