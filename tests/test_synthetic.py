"""The synthetic generator writes the Kaggle formats and carries the signal a recommender needs."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd
import pytest

from fashionrec.data.schema import ARTICLES, CUSTOMERS, TRANSACTIONS
from fashionrec.data.synthetic import generate
from tests.conftest import HM_ROWS


@pytest.fixture(scope="module")
def frames(tiny_data):
    read = lambda name: pd.read_csv(tiny_data / name, dtype=str, keep_default_na=False)  # noqa: E731
    return read("articles.csv"), read("customers.csv"), read("transactions_train.csv")


def test_headers_match_the_real_kaggle_files(tiny_data):
    for spec in (ARTICLES, CUSTOMERS, TRANSACTIONS):
        ours = (tiny_data / spec.default_file).read_text().splitlines()[0]
        real = (HM_ROWS / spec.default_file).read_text().splitlines()[0]
        assert ours == real == ",".join(spec.column_names)


def test_ids_and_value_formats(frames):
    articles, customers, transactions = frames
    assert articles["article_id"].str.fullmatch(r"0\d{9}").all()
    assert (articles["article_id"].astype(int) // 1000 == articles["product_code"].astype(int)).all()
    assert articles["article_id"].is_unique
    assert customers["customer_id"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert set(customers["FN"]) == {"", "1.0"} and set(customers["Active"]) == {"", "1.0"}
    assert (customers["age"] == "").any() and customers["age"][customers["age"] != ""].str.fullmatch(
        r"\d+\.0"
    ).all()
    assert set(transactions["sales_channel_id"]) == {"1", "2"}
    prices = transactions["price"].astype(float)
    assert (prices > 0).all() and 0.005 < prices.median() < 0.06  # the Kaggle scale
    assert transactions["price"].str.len().max() >= 16  # full precision, like the real file
    assert transactions["article_id"].isin(articles["article_id"]).all()
    assert transactions["customer_id"].isin(customers["customer_id"]).all()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", transactions["t_dat"].iloc[0])


def test_deterministic_under_a_seed(tmp_path):
    def digest(folder):
        return {
            f: hashlib.sha256((folder / f).read_bytes()).hexdigest()
            for f in ("articles.csv", "customers.csv", "transactions_train.csv")
        }

    generate("tiny", tmp_path / "a", seed=3, progress=False)
    generate("tiny", tmp_path / "b", seed=3, progress=False)
    generate("tiny", tmp_path / "c", seed=4, progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert (
        digest(tmp_path / "a")["transactions_train.csv"] != digest(tmp_path / "c")["transactions_train.csv"]
    )


def test_purchases_carry_signal(frames):
    articles, customers, transactions = frames
    counts = transactions["article_id"].value_counts()
    top_decile = counts.iloc[: max(1, len(articles) // 10)].sum() / counts.sum()
    assert top_decile > 0.3  # power-law popularity
    repeat_same = transactions.duplicated(["customer_id", "article_id"]).mean()
    assert repeat_same > 0.02
    product = transactions["article_id"].str[:7]
    other_colour = transactions.assign(p=product).groupby(["customer_id", "p"])["article_id"].nunique()
    assert (other_colour > 1).sum() > 10  # the same product bought in another colour
    ages = customers.set_index("customer_id")["age"].replace("", np.nan).astype(float)
    merged = transactions.merge(articles[["article_id", "index_group_name"]], on="article_id")
    merged["age"] = merged["customer_id"].map(ages)
    divided = merged.groupby("index_group_name")["age"].mean()
    assert divided["Divided"] < divided["Ladieswear"]  # taste depends on age
    buyers = transactions["customer_id"].nunique()
    assert buyers < len(customers)  # some customers stay inactive


def test_truth_file_holds_the_latent_model(tiny_data):
    truth = np.load(tiny_data / "truth.npz")
    n_customers = len(truth["customer_ids"])
    assert truth["index_pref"].shape[0] == n_customers
    assert np.allclose(truth["type_pref"].sum(axis=1), 1.0, atol=1e-4)
    assert truth["popularity"].shape[1] == len(truth["article_ids"])
