"""The ranker's features of candidate rows (`recommender.layout.FEATURES`): source ranks and scores,
customer and article columns of the snapshot, and the customer-article interactions, whole batches at once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fashionrec.recommender.keys import find, key_table
from fashionrec.recommender.layout import ABSENT_RANK, SOURCES
from fashionrec.recommender.ranker import Ranker
from fashionrec.recommender.sources import Candidates
from fashionrec.recommender.state import ARTICLE_COLUMNS, ATTRIBUTES, CUSTOMER_COLUMNS, SnapshotState


class RankerFeatures(SnapshotState):
    """Feature rows over the loaded snapshot (`ranker`: the loaded ranker, whose columns are the default)."""

    ranker: Ranker | None

    def features(self, candidates: Candidates, names: list[str] | None = None) -> np.ndarray:
        """The ranker's features of the candidate rows (`layout.FEATURES`; NaN where unknown): a float32
        matrix with the columns `names` (default: the loaded ranker's)."""
        if names is None:
            if self.ranker is None:
                raise ValueError("no ranker loaded: name the feature columns")
            names = self.ranker.features
        n = len(candidates.article_ids)
        person, people = pd.factorize(np.asarray(candidates.customer_ids, dtype=object))
        article = np.fromiter((self.code_of.get(a, -1) for a in candidates.article_ids), np.int64, n)
        counts, since, visual, totals = self._interactions(person, list(people), article)
        columns: dict[str, np.ndarray] = {f"n_bought_{name}": counts[name] for name in counts}
        with np.errstate(divide="ignore", invalid="ignore"):
            for name in ("type", "department", "colour", "index_group"):
                columns[f"{name}_share"] = np.where(totals > 0, counts[name] / totals, np.nan)
        columns["days_since_article"], columns["days_since_product"] = since["article"], since["product"]
        columns["visual_similarity"] = visual
        columns["repeat_share"] = self._repeat_share(list(people))[person]
        customer_rows = self._rows(self.customer_matrix, self.customer_row, list(people))[person]
        for i, column in enumerate(CUSTOMER_COLUMNS):
            columns["age" if column == "feature_age" else column] = customer_rows[:, i]
        # Article codes of the catalogue are its rows (`_article_codes`); others get NaN (a left join).
        in_catalogue = (article >= 0) & self.in_catalogue[np.maximum(article, 0)]
        items = self.article_matrix[np.where(in_catalogue, article, 0)]
        items[~in_catalogue] = np.nan
        for i, column in enumerate(ARTICLE_COLUMNS):
            columns[column] = items[:, i]
        price = columns["customer_mean_price"]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = columns["article_mean_price"] / price
        columns["price_ratio"] = np.where(price != 0, ratio, np.nan)  # Spark: x / 0 is null
        columns["age_gap"] = columns["age"] - columns["mean_buyer_age"]
        columns["n_sources"] = np.count_nonzero(~np.isnan(candidates.ranks), axis=1).astype(np.float64)
        ranks = np.where(np.isnan(candidates.ranks), ABSENT_RANK, candidates.ranks)
        scores = candidates.scores
        for slot, source in enumerate(SOURCES):
            columns[f"rank_{source}"] = ranks[:, slot]
            columns[f"score_{source}"] = scores[:, slot]
        matrix = np.empty((n, len(names)), dtype=np.float32)
        for j, column in enumerate(names):
            matrix[:, j] = columns[column]
        return matrix

    def _repeat_share(self, people: list[str]) -> np.ndarray:
        """Per customer, the share of their purchases that repeat an article they bought before (NaN
        without purchases): how much "buy it again" fits them."""
        out = np.full(len(people), np.nan)
        for i, customer in enumerate(people):
            rows = self.history_rows.get(customer)
            if rows:
                out[i] = 1.0 - len({a for a, _ in rows}) / len(rows)
        return out

    def _interactions(
        self, person: np.ndarray, people: list[str], article: np.ndarray
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Per candidate row (`people[person]` and article code `article`, -1 when unknown): how often
        the customer bought the article / each of its attributes (`ATTRIBUTES`) before the week, days
        since the last purchase of the article / product, the best visual similarity to their purchases
        (0 without any) and their number of purchases. Whole batches at once: purchases and candidates
        become integer keys (customer position × code), looked up in sorted key tables.

        Purchases of articles outside the catalogue count for nothing, and a missing attribute never
        matches."""
        n = len(article)
        who, bought, day = self._purchases(people)
        width = len(self.code_of) + 1
        counts: dict[str, np.ndarray] = {}
        last: dict[str, np.ndarray] = {}
        for j, name in enumerate(("article", *ATTRIBUTES)):
            if name == "article":
                mine, theirs = bought, article
            else:
                mine = self.attr_codes[bought, j - 1]
                theirs = np.where(article >= 0, self.attr_codes[np.maximum(article, 0), j - 1], -1)
            ok = mine >= 0
            keys, count, latest = key_table(who[ok] * width + mine[ok], day[ok])
            at, found = find(keys, np.where(theirs >= 0, person * width + theirs, -1))
            counts[name] = np.where(found, count[at], 0).astype(np.float64)
            if name in ("article", "product"):
                last[name] = np.where(found, self.first_day - latest[at], np.nan)
        visual = np.full(n, np.nan)
        if self.similar is not None:
            visual = self._visual(person, article, who, bought, width)
        totals = np.bincount(who, minlength=len(people)).astype(np.float64)[person]
        return counts, last, visual, totals

    def _visual(
        self, person: np.ndarray, article: np.ndarray, who: np.ndarray, bought: np.ndarray, width: int
    ) -> np.ndarray:
        """The best similarity between each candidate and its customer's purchased articles."""
        pairs = np.unique(who * width + bought)  # distinct (customer, article) purchases
        owner, item = pairs // width, pairs % width
        begin = self.neighbour_start[item]
        sizes = self.neighbour_start[item + 1] - begin
        offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        at_pair = np.repeat(begin, sizes) + offsets  # positions in the neighbour arrays
        keys, _, best = key_table(
            np.repeat(owner, sizes) * width + self.neighbour_code[at_pair], self.neighbour_similarity[at_pair]
        )
        at, found = find(keys, np.where(article >= 0, person * width + article, -1))
        return np.where(found, best[at], 0.0)

    @staticmethod
    def _rows(matrix: np.ndarray, row_of: dict[str, int], ids: list[str]) -> np.ndarray:
        """Rows of `matrix` for `ids`; NaN for ids it does not hold (Spark's left join)."""
        picked = np.array([row_of.get(i, -1) for i in ids], dtype=np.int64)
        out = matrix[np.maximum(picked, 0)]
        out[picked < 0] = np.nan
        return out
