"""The oracle-gap benchmark: its taste estimate by hand, and a run on the `tiny` set."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from benchmarks import oracle_gap
from fashionrec.data.vocabulary import PRODUCT_TYPES


def test_taste_estimate_is_the_shoppers_share_over_the_populations_smoothed():
    n_types = len(PRODUCT_TYPES)
    # Three articles: index 0 / type 0 / colour 0, index 0 / type 1 / colour 1, index 1 / type 1 / colour 1.
    truth = SimpleNamespace(
        cell=np.array([0, 1, n_types + 1]),
        master=np.array([0, 1, 1]),
        customer_ids=np.array(["a", "b"]),
        index_pref=np.zeros((2, 2)),
        type_pref=np.zeros((2, n_types)),
        colour_pref=np.zeros((2, 2)),
    )
    everyone = np.array([0, 1, 2, 2])  # the population bought type 1 three times in four
    index, kind, colour = oracle_gap._estimated_taste(truth, np.array([1]), [[0, 0]], 2.0, everyone)
    # Shopper "b" bought article 0 twice: type 0 count 2 of 2, population share 1/4, pseudo-count 2.
    assert kind[1, 0] == (2 + 2 * 0.25) / (2 + 2) / 0.25
    assert kind[1, 1] == (0 + 2 * 0.75) / (2 + 2) / 0.75
    assert index[1, 0] == (2 + 2 * 0.5) / 4 / 0.5 and colour[1, 1] == (0 + 2 * 0.75) / 4 / 0.75
    assert (index[0] == 1).all()  # shoppers without purchases keep the population's taste


def test_the_true_inputs_rank_best_on_the_tiny_set(spark, tiny_data, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tiny").symlink_to(tiny_data)
    monkeypatch.chdir(tmp_path)
    figures = oracle_gap.run("tiny")
    rows = figures["table"]
    assert figures["buyers"] > 0 and len(rows) == 2 + 2 * len(oracle_gap.SMOOTHING) + 1
    assert rows[0]["share of oracle"] == 1.0
    assert all(r["map@12"] <= rows[0]["map@12"] for r in rows)
