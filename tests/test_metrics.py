"""Metric definitions against hand-computed values (MAP@12 as the H&M competition defines it)."""

from __future__ import annotations

import math

import pytest

from fashionrec.evaluation.metrics import (
    average_precision_at_k,
    evaluate,
    hit_rate_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)


def test_average_precision_hand_computed():
    # hits at ranks 1 and 3: (1/1 + 2/3) / min(2, 12)
    assert average_precision_at_k(["a", "b"], ["a", "x", "b"]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision_at_k(["a"], ["x", "a"]) == pytest.approx(0.5)
    fillers = [f"x{i}" for i in range(12)]
    assert average_precision_at_k(["a"], [*fillers[:11], "a"]) == pytest.approx(1 / 12)
    assert average_precision_at_k(["a"], [*fillers, "a"]) == 0.0  # rank 13 is past k


def test_average_precision_divides_by_min_of_actual_and_k():
    actual = [f"a{i}" for i in range(13)]
    assert average_precision_at_k(actual, actual[:12]) == pytest.approx(1.0)
    assert average_precision_at_k(["a", "b", "c"], ["a"]) == pytest.approx(1 / 3)


def test_duplicates_in_predictions_earn_nothing_twice():
    assert average_precision_at_k(["a", "b"], ["a", "a", "b"]) == pytest.approx(1.0)
    assert precision_at_k(["a"], ["a", "a"], 2) == pytest.approx(0.5)


def test_recall_precision_ndcg_hit_rate():
    assert recall_at_k(["a", "b", "c"], ["a", "x", "b"], 2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "b", "c"], ["a", "x", "b"], 3) == pytest.approx(2 / 3)
    assert precision_at_k(["a"], ["a"], 12) == pytest.approx(1 / 12)
    assert ndcg_at_k(["a"], ["x", "a"]) == pytest.approx(1 / math.log2(3))
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(["a", "b"], ["b", "x", "a"]) == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert hit_rate_at_k(["a"], ["x", "a"]) == 1.0 and hit_rate_at_k(["a"], ["x"]) == 0.0


def test_map_excludes_customers_without_purchases_and_counts_missing_predictions_as_zero():
    result = evaluate({"c1": ["a"], "c2": []}, {"c1": ["a"], "c2": ["x"]}, k=12)
    assert result["map@12"] == pytest.approx(1.0) and result["customers"] == 1
    result = evaluate({"c1": ["a"], "c2": ["b"]}, {"c1": ["a"]}, k=12)
    assert result["map@12"] == pytest.approx(0.5)


def test_coverage_and_diversity():
    result = evaluate(
        {"c1": ["a"], "c2": ["c"]},
        {"c1": ["a", "b"], "c2": ["b", "c"]},
        k=12,
        catalog_size=10,
        product_type={"a": "Dress", "b": "Dress", "c": "Top"},
    )
    assert result["coverage"] == pytest.approx(0.3)
    assert result["diversity"] == pytest.approx((1 + 2) / 2)


def test_no_buyers_is_an_error():
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate({"c1": []}, {"c1": ["a"]})
