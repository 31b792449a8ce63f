"""Realism figures (evaluation.realism) on hand-made purchases."""

from __future__ import annotations

import pandas as pd
import pytest

from fashionrec.evaluation.realism import gini, realism


def test_gini_of_equal_and_concentrated_sales():
    assert gini([3, 3, 3, 3]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75)


def test_realism_figures_of_one_week_by_hand():
    # Week of 2020-09-09 (a Wednesday) and the week before. A re-buys x; B buys y2 (product of y1, which
    # B bought before) and the last week's best seller x; C is new.
    rows = [
        ("2020-09-02", "A", "0100000001", 0.01, 1),
        ("2020-09-03", "B", "0100000002", 0.02, 2),
        ("2020-09-03", "D", "0100000001", 0.03, 2),
        ("2020-09-09", "A", "0100000001", 0.01, 2),
        ("2020-09-10", "B", "0100000003", 0.02, 2),
        ("2020-09-10", "B", "0100000001", 0.04, 1),
        ("2020-09-11", "C", "0200000001", 0.05, 2),
    ]
    tx = pd.DataFrame(rows, columns=["t_dat", "customer_id", "article_id", "price", "sales_channel_id"])
    figures = realism(tx, weeks=1)
    assert figures["repeat_article"] == pytest.approx(1 / 4)  # A's x
    assert figures["repeat_product"] == pytest.approx(
        3 / 4
    )  # A's x, B's 0100000003 and B's x (product 0100000)
    assert figures["last_week_top12"] == pytest.approx(2 / 4)  # the two x purchases
    assert figures["purchases_per_active_customer_week"] == pytest.approx(4 / 3)
    assert figures["active_customer_share"] == pytest.approx(2 / 3)  # A and B of A, B, D
    assert figures["online_share"] == pytest.approx(5 / 7)


def test_taste_lift_by_hand():
    # The week before: A buys two tops and a skirt (favourite: top), B a skirt (favourite: skirt). This
    # week A buys a top (in the favourite) and a skirt, B a top. Chance puts A's two purchases in "top"
    # with the week's share 2/3 each and B's in "skirt" with 1/3: 5/3 expected, 1 seen.
    rows = [
        ("2020-09-02", "A", "0100000001"),
        ("2020-09-03", "A", "0100000001"),
        ("2020-09-03", "A", "0200000001"),
        ("2020-09-04", "B", "0200000001"),
        ("2020-09-09", "A", "0100000001"),
        ("2020-09-10", "A", "0200000001"),
        ("2020-09-10", "B", "0100000001"),
    ]
    tx = pd.DataFrame(rows, columns=["t_dat", "customer_id", "article_id"]).assign(
        price=0.01, sales_channel_id=2
    )
    articles = pd.DataFrame(
        {
            "article_id": ["0100000001", "0200000001"],
            "index_group_name": ["Ladieswear", "Ladieswear"],
            "product_type_name": ["Top", "Skirt"],
            "colour_group_name": ["Black", "White"],
        }
    )
    figures = realism(tx, weeks=1, articles=articles)
    assert figures["taste_product_type"] == pytest.approx(1 / (5 / 3))
    assert figures["taste_colour_group"] == pytest.approx(1 / (5 / 3))  # colour follows type here
    assert figures["taste_index_group"] == pytest.approx(1.0)  # one index group: every purchase is chance
    assert "taste_product_type" not in realism(tx, weeks=1)  # no articles, no taste figures


# Measured on the 721 real customers of ../shared/hm_real_dev (last 8 weeks; docs/journal.md), so
# this test runs without ../shared.
REAL_FIGURES = {
    "repeat_article": 0.034,
    "repeat_product": 0.084,
    "last_week_top12": 0.010,
    "purchases_per_active_customer_week": 3.50,
    "active_customer_share": 0.055,
    "sales_gini": 0.285,
    "online_share": 0.696,
    "taste_index_group": 1.074,
    "taste_product_type": 1.830,
    "taste_colour_group": 1.089,
}


def test_the_generated_small_set_resembles_real_shoppers(tmp_path):
    """721 random generated customers of `small` within 25% of 721 real ones on every figure."""
    from fashionrec.data.synthetic import generate
    from fashionrec.evaluation.realism import folder_realism

    generate("small", tmp_path, seed=42, progress=False, images=False)
    figures = folder_realism(tmp_path, weeks=8, customers=721)
    off = {
        name: round(figures[name] / real, 2)
        for name, real in REAL_FIGURES.items()
        if not 0.75 <= figures[name] / real <= 1.25
    }
    assert not off, f"generated / real outside 0.75-1.25: {off}"
