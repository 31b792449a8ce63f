"""Candidates, filters, ranker features and the ranking/diversity pass, on hand-made rows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from fashionrec.data.availability import region_index
from fashionrec.ranking.model import BoosterParams, fit
from fashionrec.recommender.rank import rank_frame
from fashionrec.recommender.ranker import Ranker
from fashionrec.snapshot.lists import customer_region

# Deep, lightly regularised trees for the few hundred hand-made rows below (the task's defaults,
# `RankingParams`, suit tens of thousands of real candidate rows).
TEST_BOOSTER = BoosterParams(max_depth=6, learning_rate=0.1, rounds=30, min_child_weight=1.0, seed=42)


def test_region_buckets_agree_between_spark_and_the_generator(spark):
    codes = ["0f3a9c12" + "0" * 56, "ffffffff" + "1" * 56, "12345678abc", "not-hex", ""]
    expected = region_index(np.array(codes, dtype=object))
    frame = spark.createDataFrame([(c,) for c in codes], "postal_code string")
    got = [r[0] for r in frame.select(customer_region(frame["postal_code"])).collect()]
    from fashionrec.data.availability import REGIONS

    assert got == [REGIONS[i] if i >= 0 else None for i in expected]


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
    ranker, rounds = fit(frame[half], frame[~half], ["f1", "f2"], "rank:ndcg", TEST_BOOSTER)
    assert 1 <= rounds <= 30
    assert ranker.booster.num_boosted_rounds() == rounds  # the chosen round is the one served
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
        replace(TEST_BOOSTER, rounds=20),
        workers=2,
    )
    assert 1 <= rounds <= 20
    assert ranker.booster.num_boosted_rounds() == rounds
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


def test_in_sample_two_tower_rows_and_scores_are_blanked_for_earlier_weeks():
    from fashionrec.ranking.task import without_in_sample_two_tower

    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c1"],
            "article_id": ["a1", "a2", "a3"],
            "sources": [["two_tower"], ["repurchase", "two_tower"], ["popular"]],
            "rank_two_tower": [1.0, 2.0, 999.0],
            "score_two_tower": [0.9, 0.8, np.nan],
            "n_sources": [1.0, 2.0, 1.0],
        }
    )
    out = without_in_sample_two_tower(frame)
    assert out["article_id"].tolist() == ["a2", "a3"]  # a1: only the two-tower proposed it
    assert (out["rank_two_tower"] == 999).all() and out["score_two_tower"].isna().all()
    assert out["n_sources"].tolist() == [1.0, 1.0] and out["sources"].tolist() == [
        ["repurchase"],
        ["popular"],
    ]
    # A week without candidates keeps its columns (an empty selection must not drop them).
    empty = without_in_sample_two_tower(frame.iloc[:0])
    assert empty.empty and set(frame.columns) <= set(empty.columns)


def test_cold_start_reach_counts_new_article_purchases_by_how_they_arrived():
    import pandas as pd

    from fashionrec.ranking.frames import cold_start_reach

    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c2"],
            "article_id": ["new1", "old", "new2", "new3"],
            "sources": [["visual"], ["repurchase"], ["visual", "trending"], ["random"]],
        }
    )
    actual = {"c1": ["new1", "old"], "c2": ["new2", "new3", "new4"]}
    reach = cold_start_reach(frame, actual, {"old"}, {"c1": ["new1", "old"], "c2": ["x"]}, 12)
    # New-article purchases: c1/new1, c2/new2, c2/new3, c2/new4. new3 came only as a random negative.
    assert reach == {
        "new_article_purchases": 4,
        "in_candidates": 0.5,  # new1 and new2 (a random negative is no candidate)
        "in_candidates_without_visual": 0.25,  # only new2 also came from trending
        "in_top12": 0.25,
    }
    # No new-article purchase among the candidates: zeros, not a KeyError (an empty frame kept its columns).
    none = cold_start_reach(frame, {"c1": ["new9"]}, {"old"}, {"c1": ["new9"]}, 12)
    assert none == {
        "new_article_purchases": 1,
        "in_candidates": 0.0,
        "in_candidates_without_visual": 0.0,
        "in_top12": 1.0,
    }


def test_candidate_hit_rate_is_the_bought_share_of_each_sources_candidates():
    import pandas as pd

    from fashionrec.ranking.frames import candidate_hit_rate
    from fashionrec.recommender.layout import ABSENT_RANK, SOURCES

    absent = [ABSENT_RANK] * 4
    frame = pd.DataFrame(
        {
            "label": [1, 0, 0, 1],
            **{f"rank_{s}": absent for s in SOURCES},
            "rank_repurchase": [0, 1, ABSENT_RANK, ABSENT_RANK],  # 1 of its 2 candidates bought
            "rank_trending": [ABSENT_RANK, 0, 1, 2],  # 1 of 3
            "rank_popular": [0, ABSENT_RANK, ABSENT_RANK, 3],  # 2 of 2
        }
    )
    # Sources that proposed nothing (every other one here) are left out rather than reported as 0.
    assert candidate_hit_rate(frame) == {"repurchase": 0.5, "trending": 0.3333, "popular": 1.0}


def test_candidate_recall_reports_the_union_without_each_learned_source():
    import pandas as pd

    from fashionrec.ranking.frames import candidate_recall
    from fashionrec.recommender.layout import ABSENT_RANK, SOURCES

    absent = [ABSENT_RANK] * 4
    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c2"],
            "article_id": ["a", "b", "c", "d"],
            "label": [1, 1, 1, 0],
            **{f"rank_{s}": absent for s in SOURCES},
            "rank_two_tower": [0, 1, ABSENT_RANK, 2],
            "rank_repurchase": [0, ABSENT_RANK, ABSENT_RANK, ABSENT_RANK],
            "rank_visual": [ABSENT_RANK, ABSENT_RANK, 0, ABSENT_RANK],
            "sources": [["two_tower", "repurchase"], ["two_tower"], ["visual"], ["two_tower"]],
        }
    )
    recall = candidate_recall(frame, {"c1": ["a", "b"], "c2": ["c", "e"]})
    assert recall["union"] == 0.75  # a, b, c of the 4 purchases
    assert recall["union_without_two_tower"] == 0.5  # b was the two-tower's alone
    assert recall["union_without_visual"] == 0.5  # c was the visual source's alone
    assert recall["two_tower"] == 0.5 and recall["visual"] == 0.25


def test_the_job_and_the_backtest_choose_among_the_rankers_their_parameters_name():
    from fashionrec.config import BacktestParams, RankingParams
    from fashionrec.ranking.choose import ranker_choices

    booster, objectives, windows = ranker_choices(RankingParams(max_depth=4, min_child_weight=2.0))
    assert (booster.max_depth, booster.min_child_weight) == (4, 2.0)
    assert objectives == ("rank:ndcg", "binary:logistic") and windows == (0, 1, 4)  # auto / -1: every one
    _, objectives, windows = ranker_choices(BacktestParams(objective="rank:ndcg", already_bought_weeks=1))
    assert objectives == ("rank:ndcg",) and windows == (1,)
