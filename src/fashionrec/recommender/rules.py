"""The business rules (`recommender.pipeline.FilterRules`): not bought within the window, in stock, sold in
the customer's region, not age-restricted for them. A missing value never removes a candidate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fashionrec.recommender.keys import find, key_table
from fashionrec.recommender.state import SnapshotState


class BusinessRules(SnapshotState):
    """The rules' verdicts over the loaded snapshot."""

    def keep(
        self, customer_ids: list[str], article_ids: list[str], already_bought_weeks: int | None = None
    ) -> np.ndarray:
        """The business rules' verdict for (customer, article) rows: not bought within the window, in
        stock, sold in the customer's region and not age-restricted for them (each rule that is on).
        `already_bought_weeks` as in `removals`."""
        removed = self.removals(customer_ids, article_ids, already_bought_weeks)
        ok = np.ones(len(article_ids), dtype=bool)
        for flags in removed.values():
            ok &= ~flags
        return ok

    def removals(
        self, customer_ids: list[str], article_ids: list[str], already_bought_weeks: int | None = None
    ) -> dict[str, np.ndarray]:
        """Per active rule, which rows it removes (a row can fail several; they are counted per rule).
        A missing value never removes a row. `already_bought_weeks` replaces the config's window (0: the
        rule is off), for the live method's own articles and for choosing the window on validation."""
        weeks = self.rules.already_bought_weeks if already_bought_weeks is None else already_bought_weeks
        on = bool(self.meta["has_availability"])  # without the availability table the rules have no data
        stock, region, age = (on and self.rules.out_of_stock, on and self.rules.region, on and self.rules.age)
        person, people = pd.factorize(np.asarray(customer_ids, dtype=object))
        article = np.fromiter((self.code_of.get(a, -1) for a in article_ids), np.int64, len(article_ids))
        known, at = article >= 0, np.maximum(article, 0)
        removed: dict[str, np.ndarray] = {}
        if weeks > 0:
            who, bought, day = self._purchases(list(people))
            recent = day // 7 >= self.week - weeks
            width = len(self.code_of) + 1
            keys, _, _ = key_table(who[recent] * width + bought[recent], day[recent])
            removed["already_bought"] = find(keys, np.where(known, person * width + article, -1))[1]
        if stock:
            removed["out_of_stock"] = known & self.stock_out[at]
        if region:
            home = np.array([self.region_column.get(c, -1) for c in people], dtype=np.int64)[person]
            restricted = known & self.region_restricted[at] & (home >= 0)
            removed["region"] = restricted & ~self.region_allowed[at, np.maximum(home, 0)]
        if age:
            ages = np.array([self.customer_age.get(c, math.nan) for c in people], dtype=np.float64)[person]
            removed["age"] = ages < np.where(known, self.min_age_of[at], 0.0)
        return removed
