"""The recommender core on a hand-written snapshot: each source, the union, the business rules and the
ranker's features, with the expected values worked out by hand."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fashionrec.recommender.core import Recommender
from fashionrec.recommender.layout import ARTICLE_FEATURES, CUSTOMER_TABLE_FEATURES, FEATURES
from fashionrec.recommender.pipeline import CandidateCounts, FilterRules
from fashionrec.recommender.sources import drawn_per_customer

WEEK = 2650
DAY = WEEK * 7  # first day of the target week (day numbers since the week epoch)

# article: (product, type, colour, department, index group)
ARTICLES = {
    "0100000001": (1000000, 10, 1, 100, 1),
    "0100000002": (1000000, 10, 2, 100, 1),
    "0100000003": (1000000, 10, 3, 100, 1),
    "0200000001": (2000000, 20, 1, 200, 2),
    "0200000002": (2000000, 20, 2, 200, 2),
    "0300000001": (3000000, 10, 1, 100, 1),
    "0300000002": (3000000, 10, 2, 100, 1),
    "0400000001": (4000000, 30, 4, 300, 3),
}
SOLD_4W = {"0100000002": 3.0, "0100000001": 2.0, "0200000001": 1.0, "0400000001": 5.0}
PURCHASES = [  # (customer, article, days before the week)
    ("c1", "0100000001", 1),
    ("c1", "0100000001", 20),
    ("c1", "0200000001", 10),
    ("c2", "0100000002", 3),
    ("c2", "0300000001", 200),  # older than the 12-week window
    ("c3", "0400000001", 2),
]


def write_snapshot(folder: Path, rules: FilterRules, counts: CandidateCounts, availability: bool) -> Path:
    """A snapshot as `snapshot.build` writes it, for the rows above."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = list(ARTICLES)
    articles = pd.DataFrame(
        {
            "article_id": ids,
            **{
                f"attr_{name}": [ARTICLES[a][j] for a in ids]
                for j, name in enumerate(("product", "type", "colour", "department", "index_group"))
            },
        }
    )
    for i, column in enumerate(ARTICLE_FEATURES):
        articles[column] = [float(10 * i + j) for j in range(len(ids))]
    articles["product_type_no"] = [float(ARTICLES[a][1]) for a in ids]
    articles["sales_4w_source"] = [SOLD_4W.get(a) for a in ids]
    articles["has_sold"] = [a in {p[1] for p in PURCHASES} for a in ids]
    if availability:
        articles["in_stock"] = [0 if a == "0100000002" else 1 for a in ids]
        articles["regions"] = ["south;east" if a == "0100000003" else "" for a in ids]
        articles["min_age"] = [18 if a == "0200000002" else 0 for a in ids]
    articles.to_parquet(folder / "articles.parquet")
    tops = pd.DataFrame(
        [
            ("trending", None, "0400000001", 1, 5.0),
            ("age_band", -1, "0400000001", 1, 5.0),
            ("decayed_popularity", None, "0400000001", 1, 4.0),
            ("decayed_popularity", None, "0100000002", 2, 2.5),
            ("type", 10, "0300000002", 1, 3.0),
            ("type", 10, "0100000002", 2, 2.5),
            ("type", 20, "0200000002", 1, 1.0),
            ("type", 30, "0400000001", 1, 4.0),
        ],
        columns=["list", "band", "article_id", "source_rank", "source_score"],
    ).astype({"band": "Int64"})
    tops.to_parquet(folder / "tops.parquet")
    pd.DataFrame(
        {
            "article_id": ["0100000001", "0200000001", "0100000002"],
            "neighbour_id": ["0100000003", "0300000002", "0300000002"],
            "similarity": [0.8, 0.7, 0.6],
        }
    ).to_parquet(folder / "similar.parquet")
    pd.DataFrame(
        {
            "article_id": ["0100000001", "0200000001", "0100000001"],
            "other_id": ["0400000001", "0400000001", "0200000001"],
            "count": [2.0, 1.0, 4.0],
        }
    ).to_parquet(folder / "pairs.parquet")
    meta = {
        "week": WEEK,
        "has_availability": availability,
        "has_similar": True,
        "has_pairs": True,
        "pipeline": {"rules": asdict(rules), "candidates": asdict(counts), "k": 12, "max_per_type": 4},
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def load(
    tmp_path: Path,
    rules: FilterRules | None = None,
    availability: bool = False,
    reverse_articles: bool = False,
) -> Recommender:
    rules = rules or FilterRules(0, True, True, True)
    counts = CandidateCounts(
        two_tower=0,
        repurchase=12,
        same_product=12,
        trending=1,
        age_band=1,
        visual=12,
        popular=2,
        bought_together=12,
        favourite_type=3,
        repurchase_weeks=12,
    )
    snapshot = write_snapshot(tmp_path / "snapshot", rules, counts, availability)
    if reverse_articles:  # Spark writes the catalogue's rows in no fixed order
        pd.read_parquet(snapshot / "articles.parquet").iloc[::-1].to_parquet(snapshot / "articles.parquet")
    core = Recommender(snapshot, tmp_path, False, ranker=False)
    north = "north"
    customers = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "age": [30.0, 16.0, np.nan],
            "band": [30, 16, -1],
            "region": [north, north, None],
            **{c: [1.0, 2.0, 3.0] for c in CUSTOMER_TABLE_FEATURES if c != "age"},
            "feature_age": [30.0, 16.0, np.nan],
        }
    )
    histories: dict[str, list[tuple[str, int]]] = {}
    for customer, article, before in PURCHASES:
        histories.setdefault(customer, []).append((article, DAY - before))
    core.use_customers(customers, histories)
    return core


def proposals(core: Recommender, customer: str) -> dict[str, dict[str, tuple[float, float]]]:
    """{source: {article: (rank, score)}} of one customer's candidates."""
    found = core.candidates([customer])
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for row, article in enumerate(found.article_ids):
        for slot, source in enumerate(core_sources()):
            if not np.isnan(found.ranks[row, slot]):
                out.setdefault(source, {})[article] = (found.ranks[row, slot], found.scores[row, slot])
    return out


def core_sources() -> tuple[str, ...]:
    from fashionrec.recommender.layout import SOURCES

    return SOURCES


def test_each_source_proposes_what_it_should(tmp_path):
    c1 = proposals(load(tmp_path), "c1")
    # Repurchase: most recent first (0100000001 one day before), score = times bought.
    assert c1["repurchase"] == {"0100000001": (1, 2.0), "0200000001": (2, 1.0)}
    # Other colours of bought products, best 4-week sellers first; the bought ones are not proposed.
    assert list(c1["same_product"]) == ["0100000002", "0100000003", "0200000002"]
    # Never-sold lookalikes of recent purchases, closest first (0300000002 via 0200000001: 0.7).
    assert c1["visual"] == {"0100000003": (1, 0.8), "0300000002": (2, 0.7)}
    # Bought together with c1's articles, summed over them; c1's own articles excluded.
    assert c1["bought_together"] == {"0400000001": (1, 3.0)}
    # Best sellers of c1's types weighted by taste: decayed sales x type share (10: 2/3, 20: 1/3) x
    # colour share (colour 2 never bought: 0.5 / 3.5) x department share (100: 2.5 / 3.5, 200: 1.5 / 3.5).
    taste = sorted(c1["favourite_type"].items(), key=lambda item: item[1][0])
    assert [(article, rank) for article, (rank, _) in taste] == [
        ("0300000002", 1),
        ("0100000002", 2),
        ("0200000002", 3),
    ]
    expected = [3.0 * 2 / 3 / 7 * 5 / 7, 2.5 * 2 / 3 / 7 * 5 / 7, 1.0 / 3 / 7 * 3 / 7]
    np.testing.assert_allclose([score for _, (_, score) in taste], expected)
    assert c1["popular"] == {"0400000001": (1, 4.0), "0100000002": (2, 2.5)}
    assert c1["trending"] == {"0400000001": (1, 5.0)}


def test_other_colours_that_never_sold_follow_the_most_recently_bought_product(tmp_path):
    core = load(tmp_path)
    # c1 now bought product 2000000 yesterday and product 1000000 twenty days ago: among the unsold
    # colours, 0200000002 comes before 0100000003; the best seller 0100000002 stays first.
    core.use_customers(
        core.customers.reset_index(), {"c1": [("0200000001", DAY - 1), ("0100000001", DAY - 20)]}
    )
    assert list(proposals(core, "c1")["same_product"]) == ["0100000002", "0200000002", "0100000003"]


def test_old_purchases_fall_out_of_the_window_and_unknown_customers_get_global_lists(tmp_path):
    core = load(tmp_path)
    c2 = proposals(core, "c2")
    assert c2["repurchase"] == {"0100000002": (1, 1.0)}  # 0300000001 is 200 days old
    assert set(proposals(core, "nobody")) == {"trending", "popular", "age_band"}


def test_union_holds_one_row_per_article_with_every_sources_rank(tmp_path):
    found = load(tmp_path).candidates(["c1"])
    assert len(found.article_ids) == len(set(found.article_ids))
    row = found.article_ids.index("0100000002")
    assert found.sources[row] == ["favourite_type", "popular", "same_product"]


def test_random_negatives_have_no_source_rank(tmp_path):
    core = load(tmp_path)
    plain = set(core.candidates(["c3"]).article_ids)
    found = core.candidates(["c3"], random_negatives=20, seed=1)
    drawn = [i for i, s in enumerate(found.sources) if s == ["random"]]
    assert drawn and all(found.article_ids[i] not in plain for i in drawn)
    assert np.isnan(found.ranks[drawn]).all()
    assert found.sources == core.candidates(["c3"], random_negatives=20, seed=1).sources  # seeded


def test_random_negatives_of_a_customer_do_not_depend_on_its_batch(tmp_path):
    # Spark hands the core its customers in batches whose make-up and order vary between runs.
    core = load(tmp_path)

    def drawn(batch: list[str], seed: int = 1) -> set[str]:
        found = core.candidates(batch, random_negatives=3, seed=seed)
        rows = zip(found.customer_ids, found.article_ids, found.sources, strict=True)
        return {a for c, a, s in rows if c == "c3" and "random" in s}

    alone = drawn(["c3"])
    assert alone and alone == drawn(["c1", "c2", "c3"]) == drawn(["c3", "c1"])
    # ... and still random: another seed or another customer draws other articles.
    many = drawn_per_customer(["c1", "c3"], 1_000_000, 5, seed=1)
    assert (many[1] == drawn_per_customer(["c3"], 1_000_000, 5, seed=1)[0]).all()
    assert (many[0] != many[1]).any() and (many[1] != drawn_per_customer(["c3"], 1_000_000, 5, seed=2)).any()


def test_candidates_do_not_depend_on_the_row_order_of_the_catalogue_file(tmp_path):
    # Spark writes the snapshot's articles in another order each run; row positions pick random negatives.
    batch = ["c1", "c2", "c3"]
    core, reversed_core = load(tmp_path / "as_written"), load(tmp_path / "reversed", reverse_articles=True)
    found = core.candidates(batch, random_negatives=3, seed=1)
    again = reversed_core.candidates(batch, random_negatives=3, seed=1)
    assert (again.customer_ids, again.article_ids, again.sources) == (
        found.customer_ids,
        found.article_ids,
        found.sources,
    )
    np.testing.assert_array_equal(again.ranks, found.ranks)
    np.testing.assert_array_equal(reversed_core.features(again, FEATURES), core.features(found, FEATURES))


def test_business_rules_flag_each_removal(tmp_path):
    core = load(tmp_path, FilterRules(1, True, True, True), availability=True)
    pairs = [
        ("c1", "0100000001"),  # bought one day before the week: already bought
        ("c1", "0100000002"),  # out of stock
        ("c1", "0100000003"),  # not sold in the north
        ("c2", "0200000002"),  # adults only, c2 is 16
        ("c1", "0200000002"),  # kept
        ("c3", "0100000003"),  # region unknown: a missing value never removes
    ]
    removed = core.removals([c for c, _ in pairs], [a for _, a in pairs])
    assert {rule: np.flatnonzero(flags).tolist() for rule, flags in removed.items()} == {
        "already_bought": [0],
        "out_of_stock": [1],
        "region": [2],
        "age": [3],
    }
    assert core.keep([c for c, _ in pairs], [a for _, a in pairs]).tolist() == [0, 0, 0, 0, 1, 1]
    off = load(tmp_path / "off", FilterRules(0, False, False, False), availability=True)
    assert off.keep([c for c, _ in pairs], [a for _, a in pairs]).all()


def test_interaction_features_count_purchases_before_the_week(tmp_path):
    core = load(tmp_path)
    found = core.candidates(["c1"])
    matrix = pd.DataFrame(core.features(found, FEATURES), columns=FEATURES, index=found.article_ids)
    sibling = matrix.loc["0100000002"]  # same product as 0100000001, bought twice (1 and 20 days before)
    assert sibling["n_bought_article"] == 0 and sibling["n_bought_product"] == 2
    assert sibling["days_since_product"] == 1 and sibling["n_bought_type"] == 2
    assert sibling["n_bought_colour"] == 0  # c1 bought colour 1 only
    assert sibling["type_share"] == pytest.approx(2 / 3) and sibling["department_share"] == pytest.approx(
        2 / 3
    )
    own = matrix.loc["0100000001"]
    assert own["n_bought_article"] == 2 and own["days_since_article"] == 1
    assert own["repeat_share"] == pytest.approx(1 / 3)  # 3 purchases, 2 distinct articles
    assert own["rank_repurchase"] == 1 and own["rank_two_tower"] == 999
    # Closest visual match among c1's purchases (0100000001 lists 0100000003 at 0.8); none: 0.
    assert matrix.loc["0100000003", "visual_similarity"] == pytest.approx(0.8)
    assert matrix.loc["0400000001", "visual_similarity"] == 0.0
    assert matrix.loc["0400000001", "n_sources"] == 3  # trending, popular, bought together


def test_purchase_histories_keep_row_order_per_customer_in_order_of_first_appearance():
    from fashionrec.recommender.state import purchase_histories

    rows = pd.DataFrame(
        {
            "customer_id": ["b", "a", "b", "c", "a"],
            "article_id": ["x", "y", "z", "w", "v"],
            "day": [3, 1, 2, 5, 4],
        }
    )
    histories = purchase_histories(rows)
    assert histories == {"b": [("x", 3), ("z", 2)], "a": [("y", 1), ("v", 4)], "c": [("w", 5)]}
    assert list(histories) == ["b", "a", "c"]
    assert purchase_histories(rows.iloc[:0]) == {}
