"""Where and to whom an article may be sold: the `article_availability` file the ingest loads.

The H&M data has no stock or region columns, so the retailer supplies `article_availability.csv`
(article_id, in_stock 0/1, regions "north;south", min_age) and the synthetic generator writes a plausible
one. A customer's region comes from the postal code (H&M's codes are hashed, so the region is a stable
bucket of the hash; a retailer with real regions maps its codes in `region_of_postal`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIONS = ("north", "south", "east", "west")
ADULT_AGE = 18
REGION_SEPARATOR = ";"


def region_index(postal_codes: np.ndarray) -> np.ndarray:
    """Region number of each postal code: the first 8 hex digits modulo the number of regions; -1 if unknown."""
    out = np.full(len(postal_codes), -1, dtype=np.int64)
    for i, code in enumerate(postal_codes):
        try:
            out[i] = int(str(code)[:8], 16) % len(REGIONS)
        except ValueError:
            continue
    return out


def synthetic_availability(
    article_ids: np.ndarray,
    buyer_regions: np.ndarray,
    underage_buyers: np.ndarray,
    last_week_sales: np.ndarray,
    seed: int,
) -> pd.DataFrame:
    """A plausible availability table, consistent with the history it follows.

    - out of stock: 5% of the articles that sold nothing in the last week (stock that ran out stops sales);
    - regional: 12% of articles are sold only in the regions their buyers came from plus one more;
    - adults only: 3% of the articles that no under-18 customer ever bought.
    `buyer_regions` is a bit mask per article (bit r: bought by a customer of region r).
    """
    rng = np.random.default_rng([seed, 7])
    n = len(article_ids)
    in_stock = ~((last_week_sales == 0) & (rng.random(n) < 0.05))
    all_regions = (1 << len(REGIONS)) - 1
    extra = 1 << rng.integers(0, len(REGIONS), n)
    regional = rng.random(n) < 0.12
    mask = np.where(regional, buyer_regions | extra, all_regions)
    regions = [
        REGION_SEPARATOR.join(r for bit, r in enumerate(REGIONS) if m >> bit & 1) for m in mask.tolist()
    ]
    adults_only = ~underage_buyers & (rng.random(n) < 0.03)
    return pd.DataFrame(
        {
            "article_id": article_ids,
            "in_stock": in_stock.astype(int),
            "regions": regions,
            "min_age": np.where(adults_only, ADULT_AGE, 0),
        }
    )
