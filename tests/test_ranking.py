"""Candidates, filters, ranker features and the ranking/diversity pass, on hand-made rows."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fashionrec.data.availability import region_index
from fashionrec.features.weeks import first_day, week_of
from fashionrec.ranking.candidates import repurchase, same_product, union_candidates, visual_cold_start
from fashionrec.ranking.features import ranking_features
from fashionrec.ranking.filters import FilterRules, apply_filters, customer_region, filter_counts
from fashionrec.ranking.model import BoosterParams, Ranker, fit
from fashionrec.ranking.rank import rank_frame

WEEK = week_of(date(2020, 9, 16))
D = first_day(WEEK)  # the target week's first day; purchases before it count


def _day(days_before: int) -> str:
    return (pd.Timestamp(D) - pd.Timedelta(days=days_before)).date().isoformat()


@pytest.fixture()
def lake_rows(spark):
    tx = spark.createDataFrame(
        [
            ("c1", "0100000001", _day(1)),
            ("c1", "0100000001", _day(20)),
            ("c1", "0200000001", _day(10)),
            ("c2", "0100000002", _day(3)),
            ("c2", "0300000001", _day(200)),  # older than the 12-week window
            ("c1", "0200000002", _day(-1)),  # in the target week: must not count
        ],
        "customer_id string, article_id string, t_dat string",
    ).selectExpr("customer_id", "article_id", "to_date(t_dat) as t_dat")
    articles = spark.createDataFrame(
        [
            ("0100000001", 1000000, 10, 1),
            ("0100000002", 1000000, 10, 2),
            ("0100000003", 1000000, 10, 3),
            ("0200000001", 2000000, 20, 1),
            ("0200000002", 2000000, 20, 2),
            ("0300000001", 3000000, 10, 1),
        ],
        "article_id string, product_code int, product_type_no int, colour_group_code int",
    )
    return tx, articles


def test_repurchase_ranks_recent_articles_within_the_window(spark, lake_rows):
    tx, _ = lake_rows
    targets = spark.createDataFrame([("c1",), ("c2",)], "customer_id string")
    rows = {
        (r["customer_id"], r["article_id"]): r["source_rank"]
        for r in repurchase(tx, targets, WEEK, 5, weeks_back=12).collect()
    }
    assert rows == {("c1", "0100000001"): 1, ("c1", "0200000001"): 2, ("c2", "0100000002"): 1}


def test_same_product_proposes_other_colours_not_the_bought_ones(spark, lake_rows):
    tx, articles = lake_rows
    targets = spark.createDataFrame([("c1",)], "customer_id string")
    rows = same_product(tx, tx, articles, targets, WEEK, 10, weeks_back=12).collect()
    # c1 bought 0100000001 and 0200000001: siblings are 0100000002 (sold in the last 4 weeks), 0100000003, 0200000002
    assert [r["article_id"] for r in sorted(rows, key=lambda r: r["source_rank"])] == [
        "0100000002",
        "0100000003",
        "0200000002",
    ]


def _similar(spark):
    """Visual neighbours: 0100000003 and 0300000002 (never sold) look like c1's and c2's purchases."""
    return spark.createDataFrame(
        [
            ("0100000001", ["0100000002", "0100000003"], [0.9, 0.8]),
            ("0200000001", ["0300000002", "0100000003"], [0.7, 0.95]),
            ("0100000002", ["0300000002", "0100000001"], [0.6, 0.9]),
        ],
        "article_id string, neighbour_ids array<string>, scores array<double>",
    )


def test_visual_source_proposes_never_sold_lookalikes_of_recent_purchases(spark, lake_rows):
    tx, _ = lake_rows
    targets = spark.createDataFrame([("c1",), ("c2",)], "customer_id string")
    rows = visual_cold_start(tx, tx, _similar(spark), targets, WEEK, 5, weeks_back=12).collect()
    got = {(r["customer_id"], r["article_id"]): (r["source_rank"], r["source_score"]) for r in rows}
    # 0100000002 has sold (c2, 3 days before): not cold. c1: 0100000003 via 0200000001 (0.95) first.
    assert got == {
        ("c1", "0100000003"): (1, 0.95),
        ("c1", "0300000002"): (2, 0.7),
        ("c2", "0300000002"): (1, 0.6),
    }


def test_union_keeps_each_sources_rank_and_one_row_per_pair(spark):
    schema = "customer_id string, article_id string, source string, source_rank int, source_score double"
    a = spark.createDataFrame([("c1", "a1", "two_tower", 1, 0.9), ("c1", "a2", "two_tower", 2, 0.5)], schema)
    b = spark.createDataFrame([("c1", "a2", "repurchase", 1, 3.0)], schema)
    rows = {r["article_id"]: r for r in union_candidates([a, b]).collect()}
    assert set(rows) == {"a1", "a2"}
    assert rows["a2"]["rank_two_tower"] == 2 and rows["a2"]["rank_repurchase"] == 1
    assert rows["a2"]["sources"] == ["repurchase", "two_tower"] and rows["a1"]["rank_repurchase"] is None


def test_region_buckets_agree_between_spark_and_the_generator(spark):
    codes = ["0f3a9c12" + "0" * 56, "ffffffff" + "1" * 56, "12345678abc", "not-hex", ""]
    expected = region_index(np.array(codes, dtype=object))
    frame = spark.createDataFrame([(c,) for c in codes], "postal_code string")
    got = [r[0] for r in frame.select(customer_region(frame["postal_code"])).collect()]
    from fashionrec.data.availability import REGIONS

    assert got == [REGIONS[i] if i >= 0 else None for i in expected]


def test_filters_flag_each_rule_and_count_removals(spark, lake_rows):
    tx, _ = lake_rows
    north = "0" * 8  # bucket 0 = north
    customers = spark.createDataFrame(
        [("c1", 30, north + "a" * 56), ("c2", 16, north + "b" * 56)],
        "customer_id string, age int, postal_code string",
    )
    availability = spark.createDataFrame(
        [
            ("0100000001", 1, "", 0),
            ("0100000002", 0, "", 0),  # out of stock
            ("0100000003", 1, "south;east", 0),  # not sold in the north
            ("0200000002", 1, "north", 18),  # adults only
        ],
        "article_id string, in_stock int, regions string, min_age int",
    )
    candidates = spark.createDataFrame(
        [
            ("c1", "0100000001"),
            ("c1", "0100000002"),
            ("c1", "0100000003"),
            ("c2", "0200000002"),
            ("c1", "0200000002"),
        ],
        "customer_id string, article_id string",
    )
    filtered, rules = apply_filters(
        candidates, tx, customers, availability, WEEK, FilterRules(already_bought_weeks=1)
    )
    kept = {(r["customer_id"], r["article_id"]) for r in filtered.where("keep").collect()}
    # c1 bought 0100000001 one day before the week: removed by the already-bought rule (1 week)
    assert kept == {("c1", "0200000002")}
    counts = filter_counts(filtered, list(rules))
    assert counts == {
        "candidates": 5,
        "already_bought": 1,
        "out_of_stock": 1,
        "region": 1,
        "age": 1,
        "kept": 1,
    }
    off, _ = apply_filters(candidates, tx, customers, availability, WEEK, FilterRules(0, False, False, False))
    assert off.where("keep").count() == 5


def test_interaction_features_count_only_purchases_before_the_week(spark, lake_rows):
    tx, articles = lake_rows
    candidates = union_candidates(
        [
            spark.createDataFrame(
                [("c1", "0100000002", "two_tower", 1, 0.8), ("c1", "0200000002", "two_tower", 2, 0.7)],
                "customer_id string, article_id string, source string, source_rank int, source_score double",
            )
        ]
    )
    empty = spark.createDataFrame([], "customer_id string, mean_price double")
    no_articles = spark.createDataFrame([], "article_id string, mean_price double")
    for column in (
        "age",
        "days_since_last_purchase",
        "n_purchases_1w",
        "n_purchases_4w",
        "n_purchases_12w",
        "n_purchases_all",
        "spend_4w",
        "online_share",
    ):
        empty = empty.withColumn(column, empty["mean_price"])
    for column in (
        "sales_1w",
        "sales_4w",
        "sales_all",
        "trend",
        "weeks_on_sale",
        "mean_buyer_age",
        "index_group_no",
        "garment_group_no",
        "graphical_appearance_no",
    ):
        no_articles = no_articles.withColumn(column, no_articles["mean_price"])
    no_articles = no_articles.join(
        articles.select("article_id", "product_type_no", "colour_group_code"), "article_id", "right"
    )
    rows = {
        r["article_id"]: r
        for r in ranking_features(
            candidates, empty, no_articles, tx, articles, WEEK, _similar(spark)
        ).collect()
    }
    sibling = rows["0100000002"]  # same product as 0100000001, bought twice (1 and 20 days before)
    assert sibling["n_bought_article"] == 0 and sibling["n_bought_product"] == 2
    assert sibling["days_since_product"] == 1 and sibling["n_bought_type"] == 2
    assert sibling["n_bought_colour"] == 0  # c1 bought colours 1 only
    other = rows["0200000002"]  # bought in the target week itself: not counted; product 2000000 once before
    assert (
        other["n_bought_article"] == 0
        and other["n_bought_product"] == 1
        and other["days_since_product"] == 10
    )
    assert other["rank_two_tower"] == 2 and other["rank_repurchase"] == 999
    # Closest visual match among c1's past purchases: 0100000001 lists 0100000002 at 0.9; none lists 0200000002.
    assert sibling["visual_similarity"] == 0.9 and other["visual_similarity"] == 0.0


class _ByColumn:
    """A scorer that returns one feature: enough to test the ordering and diversity logic."""

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return frame["x"].to_numpy()


def _candidates() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c1"] * 5 + ["c2"] * 2,
            "article_id": ["a1", "a2", "a3", "a4", "a5", "b1", "b2"],
            "x": [0.9, 0.8, 0.7, 0.6, 0.5, 0.1, 0.2],
            "product_type_no": [1, 1, 1, 2, 2, 1, 1],
            "sources": [["two_tower"]] * 6 + [["repurchase", "two_tower"]],
        }
    )


def test_rank_frame_orders_by_score_and_caps_a_product_type():
    plain = rank_frame(_candidates(), _ByColumn(), k=4, max_per_type=0).set_index("customer_id")
    assert plain.loc["c1", "article_ids"] == ["a1", "a2", "a3", "a4"]
    assert plain.loc["c2", "article_ids"] == ["b2", "b1"]
    assert plain.loc["c2", "sources"] == ["repurchase+two_tower", "two_tower"]
    diverse = rank_frame(_candidates(), _ByColumn(), k=4, max_per_type=2).set_index("customer_id")
    # a3 is the third of type 1: it moves behind the articles of type 2
    assert diverse.loc["c1", "article_ids"] == ["a1", "a2", "a4", "a5"]
    assert diverse.loc["c1", "scores"] == pytest.approx([0.9, 0.8, 0.6, 0.5])


def _real_ranker(tmp_path) -> tuple[Ranker, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i // 20:03d}" for i in range(n)],
            "article_id": [f"a{i % 50:03d}" for i in range(n)],
            "f1": rng.normal(size=n),
            "f2": rng.normal(size=n),
            "product_type_no": rng.integers(0, 4, n),
        }
    )
    frame["label"] = (frame["f1"] + 0.3 * rng.normal(size=n) > 1.0).astype(int)
    frame["qid"] = pd.factorize(frame["customer_id"])[0]
    frame["sources"] = [["two_tower"]] * n
    half = frame["qid"] < 20
    ranker, rounds = fit(frame[half], frame[~half], ["f1", "f2"], "rank:ndcg", BoosterParams(rounds=30))
    assert 1 <= rounds <= 30
    ranker.save(tmp_path / "ranker")
    return Ranker.load(tmp_path / "ranker"), frame


def test_saved_ranker_scores_like_the_trained_one_and_learns_the_signal(tmp_path):
    ranker, frame = _real_ranker(tmp_path)
    scores = ranker.score(frame)
    assert np.corrcoef(scores, frame["f1"])[0, 1] > 0.5
    assert xgb.Booster(model_file=str(tmp_path / "ranker" / "model.json")).num_boosted_rounds() >= 1
    assert ranker.importance()["f1"] > ranker.importance()["f2"]


def test_xgboost_spark_trains_a_ranker_that_learns_the_signal(spark, tmp_path):
    """The distributed path (xgboost.spark, one barrier task per worker) yields the same kind of model."""
    from fashionrec.ranking.model import fit_distributed

    _, frame = _real_ranker(tmp_path)
    half = frame["qid"] < 20
    columns = ["qid", "label", "f1", "f2"]
    ranker, rounds = fit_distributed(
        spark.createDataFrame(frame[half][columns]),
        spark.createDataFrame(frame[~half][columns]),
        ["f1", "f2"],
        "rank:ndcg",
        BoosterParams(rounds=20),
        workers=2,
    )
    assert 1 <= rounds <= 20
    assert np.corrcoef(ranker.score(frame), frame["f1"])[0, 1] > 0.5
    ranker.save(tmp_path / "distributed")
    assert Ranker.load(tmp_path / "distributed").objective == "rank:ndcg"


def _reference_rank(frame: pd.DataFrame, scores: np.ndarray, k: int, max_per_type: int) -> dict:
    """The ranking rule spelled out with pandas sorts (the first implementation), as an oracle."""
    scored = frame.assign(score=scores).sort_values(
        ["customer_id", "score", "article_id"], ascending=[True, False, True]
    )
    if max_per_type > 0:
        type_rank = scored.groupby(["customer_id", "product_type_no"], sort=False).cumcount()
        scored = scored.assign(_over=(type_rank >= max_per_type).to_numpy()).sort_values(
            ["customer_id", "_over", "score", "article_id"], ascending=[True, True, False, True]
        )
    top = scored.groupby("customer_id", sort=True).head(k)
    return {c: (g["article_id"].tolist(), g["score"].tolist()) for c, g in top.groupby("customer_id")}


@pytest.mark.parametrize("max_per_type", [0, 1, 3])
def test_rank_frame_equals_the_pandas_rule_with_ties_and_missing_types(max_per_type):
    rng = np.random.default_rng(max_per_type)
    n = 2_000
    frame = pd.DataFrame(
        {
            "customer_id": rng.choice([f"c{i}" for i in range(60)], n),
            "article_id": [f"a{i:05d}" for i in rng.permutation(n)],
            "x": rng.integers(0, 8, n) / 8.0,  # many tied scores: the article id decides
            "product_type_no": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 5, n)),
            "sources": [["two_tower"]] * n,
        }
    )
    got = rank_frame(frame, _ByColumn(), k=12, max_per_type=max_per_type).set_index("customer_id")
    expected = _reference_rank(frame, frame["x"].to_numpy(), 12, max_per_type)
    assert set(got.index) == set(expected)
    for customer, (articles, scores) in expected.items():
        assert got.loc[customer, "article_ids"] == articles
        assert got.loc[customer, "scores"] == scores


def test_in_place_scores_equal_dmatrix_scores(tmp_path):
    ranker, frame = _real_ranker(tmp_path)
    frame.loc[::7, "f2"] = np.nan
    matrix = xgb.DMatrix(frame[ranker.features].astype(np.float32), feature_names=ranker.features)
    np.testing.assert_array_equal(ranker.score(frame), ranker.booster.predict(matrix))
    np.testing.assert_array_equal(ranker.single_threaded().score(frame), ranker.booster.predict(matrix))
