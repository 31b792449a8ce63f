"""The synthetic generator's true purchase propensities, for an oracle ranking.

For a customer c in week w the generator draws each item either as a repurchase (probability
repeat[c], from the customer's recent purchases: the same article or another colour of its product) or
as a new item: index x product type by taste times what is in the shops, then colour by taste, then the
article by its popularity that week. The probability of article a is therefore

    P(a) = (1 - repeat[c]) * P_new(a | c, w) + repeat[c] * P_repeat(a | history of c),

and ranking articles by P(a) is the best a recommender could do without seeing the future draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fashionrec.data.synthetic import HISTORY_SLOTS, SAME_ARTICLE_SHARE, week_start
from fashionrec.data.vocabulary import PRODUCT_TYPES


class SyntheticTruth:
    """truth.npz of one generated data set."""

    def __init__(self, path: str | Path) -> None:
        data = np.load(Path(path))
        self.customer_ids = data["customer_ids"]
        self.article_ids = data["article_ids"]
        self.customer_pos = {c: i for i, c in enumerate(self.customer_ids)}
        self.article_pos = {a: i for i, a in enumerate(self.article_ids)}
        self.index_pref, self.type_pref, self.colour_pref = (
            data["index_pref"],
            data["type_pref"],
            data["colour_pref"],
        )
        self.repeat = data["repeat"]
        self.cell, self.master, self.product = (
            data["article_cell"],
            data["article_master"],
            data["article_product"],
        )
        self.popularity = data["popularity"]
        self.weeks = self.popularity.shape[0] - 2
        self._by_product = np.argsort(self.product, kind="stable")
        self._product_start = np.searchsorted(
            self.product[self._by_product], np.arange(self.product.max() + 2)
        )

    def generated_week(self, first_day_iso: str) -> int:
        """The generator's week number of a week starting on `first_day_iso` (a Wednesday)."""
        for w in range(self.popularity.shape[0]):
            if week_start(self.weeks, w).isoformat() == first_day_iso:
                return w
        raise ValueError(f"{first_day_iso} is not the first day of a generated week")

    def scores(self, customers: Sequence[str], week: int, history: Mapping[str, Sequence[str]]) -> np.ndarray:
        """P(article) for each customer (rows) in generator week `week`; history = recent articles, newest last."""
        n_types = len(PRODUCT_TYPES)
        n_masters = self.colour_pref.shape[1]
        pop = self.popularity[week].astype(np.float64)
        groups = self.cell * n_masters + self.master
        n_cells = self.index_pref.shape[1] * n_types
        group_mass = np.bincount(groups, weights=pop, minlength=n_cells * n_masters).reshape(
            n_cells, n_masters
        )
        cell_mass = group_mass.sum(axis=1)
        rows = np.array([self.customer_pos[c] for c in customers])
        cell_index = np.arange(n_cells) // n_types
        cell_type = np.arange(n_cells) % n_types
        # P(cell | c) for every cell, then P(master | c, cell).
        p_cell = self.index_pref[rows][:, cell_index] * self.type_pref[rows][:, cell_type] * cell_mass
        p_cell /= p_cell.sum(axis=1, keepdims=True)
        z_colour = self.colour_pref[rows] @ group_mass.T  # (customers, cells)
        with np.errstate(divide="ignore", invalid="ignore"):
            within = np.where(
                group_mass[self.cell, self.master] > 0, pop / group_mass[self.cell, self.master], 0.0
            )
            p_new = (
                p_cell[:, self.cell]
                * self.colour_pref[rows][:, self.master]
                * group_mass[self.cell, self.master]
                / z_colour[:, self.cell]
                * within
            )
        p_new = np.nan_to_num(p_new)
        out = np.empty_like(p_new)
        for i, c in enumerate(customers):
            recent = [
                self.article_pos[a]
                for a in list(history.get(c, ()))[-HISTORY_SLOTS:]
                if a in self.article_pos
            ]
            if not recent:
                out[i] = p_new[i]
                continue
            p_rep = np.zeros(len(pop))
            share = 1.0 / len(recent)
            for a in recent:
                p_rep[a] += share * SAME_ARTICLE_SHARE
                p = self.product[a]
                siblings = self._by_product[self._product_start[p] : self._product_start[p + 1]]
                p_rep[siblings] += share * (1 - SAME_ARTICLE_SHARE) / len(siblings)
            out[i] = (1 - self.repeat[rows[i]]) * p_new[i] + self.repeat[rows[i]] * p_rep
        return out

    def top_k(
        self,
        customers: Sequence[str],
        week: int,
        history: Mapping[str, Sequence[str]],
        k: int,
        chunk: int = 512,
    ) -> dict[str, list[str]]:
        known = [c for c in customers if c in self.customer_pos]
        out: dict[str, list[str]] = {}
        for lo in range(0, len(known), chunk):
            part = known[lo : lo + chunk]
            scores = self.scores(part, week, history)
            best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            for c, row in zip(part, best, strict=True):
                out[c] = [str(self.article_ids[j]) for j in row]
        return out
