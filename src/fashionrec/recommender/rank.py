"""Score candidates with the ranker, apply the diversity pass and cut the top-k: one function used on
the driver (validation, evaluation) and by the online recommender (batch scoring's Spark tasks and the
serving endpoint), so all of them agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fashionrec.recommender.ranker import Ranker

RESULT_COLUMNS = ["customer_id", "article_ids", "scores", "sources"]


def rank_frame(frame: pd.DataFrame, ranker: Ranker, k: int, max_per_type: int) -> pd.DataFrame:
    """Top-`k` per customer of `frame` (candidates with the ranker's features, `product_type_no`, `sources`),
    one row per customer: customer_id, article_ids, scores, sources (joined with "+" per article)."""
    if frame.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    ranked = rank_arrays(
        frame["customer_id"].to_numpy(),
        frame["article_id"].to_numpy(),
        ranker.score(frame),
        frame["product_type_no"].to_numpy(),
        frame["sources"].to_numpy(),
        k,
        max_per_type,
    )
    return pd.DataFrame(ranked, columns=RESULT_COLUMNS)


def rank_arrays(
    customer_ids: np.ndarray,
    article_ids: np.ndarray,
    scores: np.ndarray,
    product_types: np.ndarray,
    sources: Sequence[Sequence[str]],
    k: int,
    max_per_type: int,
) -> list[tuple[str, list[str], list[float], list[str]]]:
    """The ranking rule on scored candidate rows, customers in id order.

    Order: score descending, ties by article id. Diversity: an article whose product type already has
    `max_per_type` better-scored articles in the list moves behind every article that does not break
    the rule (a greedy pass; 0 turns it off). Sorting is done on integer codes with numpy: the serving
    endpoint calls this for one customer per request, batch scoring for thousands per Arrow batch.
    """
    scores = np.asarray(scores, dtype=np.float64)
    customer_code, customers = pd.factorize(customer_ids, sort=True)
    article_code, articles = pd.factorize(article_ids, sort=True)
    order = np.lexsort((article_code, -scores, customer_code))
    if max_per_type > 0:
        over = _beyond_type_cap(customer_code[order], np.asarray(product_types)[order], max_per_type)
        order = order[np.argsort(2 * customer_code[order] + over, kind="stable")]
    top = order[_position_in_runs(customer_code[order]) < k]
    owner = customer_code[top]
    bounds = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1], [True]))).tolist()
    ids = np.asarray(articles)[article_code[top]].tolist()
    values = scores[top].tolist()
    joined = ["+".join(sources[i]) for i in top.tolist()]
    names = np.asarray(customers)[owner[bounds[:-1]]].tolist()
    return [
        (name, ids[a:b], values[a:b], joined[a:b])
        for name, a, b in zip(names, bounds[:-1], bounds[1:], strict=True)
    ]


def _beyond_type_cap(customer: np.ndarray, product_type: np.ndarray, cap: int) -> np.ndarray:
    """For rows in rank order: does the row's product type already have `cap` rows above it for this
    customer? Rows without a product type never do."""
    type_code = pd.factorize(product_type)[0]  # missing types get -1
    key = customer.astype(np.int64) * (int(type_code.max()) + 2) + type_code + 1
    by_key = np.argsort(key, kind="stable")
    rank = np.empty(len(key), dtype=np.int64)
    rank[by_key] = _position_in_runs(key[by_key])
    return (rank >= cap) & (type_code >= 0)


def _position_in_runs(keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal consecutive `keys` (np.concatenate: np.r_ costs more for
    the one-customer arrays of a serving request)."""
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    lengths = np.diff(np.concatenate((starts, [len(keys)])))
    return np.arange(len(keys)) - np.repeat(starts, lengths)
