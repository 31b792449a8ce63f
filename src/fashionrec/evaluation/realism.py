"""How much a data set's shoppers behave like real H&M shoppers: the figures a recommender's headroom
depends on, computed the same way on any Kaggle-format folder (real or generated).

Measured over the last `weeks` weeks of the file (weeks run Wednesday to Tuesday):
- repeat_article / repeat_product: share of a week's purchases whose article / product code the customer
  bought in an earlier week;
- last_week_top12: share of a week's purchases that are among the previous week's 12 best sellers;
- purchases_per_active_customer_week, active_customer_share (of customers with any purchase before);
- sales_gini: concentration of article sales over the whole file (0 equal, 1 one article sells all);
- price quantiles (p10, p50, p90) and the online share;
- with the articles, taste_<attribute> (index group, product type, colour group): how much more often than
  chance a purchase falls in the shopper's favourite value of the attribute (the most frequent among their
  purchases of the TASTE_WINDOW weeks before), chance being the week's share of purchases with that value.
  An oracle that knows each shopper's true taste gains over one that estimates it from their purchases as
  far as tastes are strong, so a generated world's oracle bound means something only if these match.
Pure pandas: reads transactions_train.csv and articles.csv, no Spark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

EPOCH = pd.Timestamp("1970-01-07")  # a Wednesday, as features.weeks
TASTE_ATTRIBUTES = {
    "taste_index_group": "index_group_name",
    "taste_product_type": "product_type_name",
    "taste_colour_group": "colour_group_name",
}
TASTE_WINDOW = 18  # weeks of purchases that show a shopper's favourite (a generated `small` holds 26)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0: all equal)."""
    values = np.sort(np.asarray(counts, dtype=float))
    if values.size == 0 or values.sum() == 0:
        return 0.0
    n = values.size
    cumulative = np.cumsum(values)
    return float((n + 1 - 2 * (cumulative / cumulative[-1]).sum()) / n)


def taste_lift(tx: pd.DataFrame, attribute: str, weeks: int, window: int = TASTE_WINDOW) -> float:
    """Purchases in the shopper's favourite `attribute` value over the purchases chance puts there, pooled
    over the last `weeks` weeks of `tx` (with a `week` column); shoppers with no purchase in the `window`
    weeks before a week are left out of it."""
    last = int(tx["week"].max())
    hits = chance = 0.0
    for week in range(last - weeks + 1, last + 1):
        before = tx[(tx["week"] < week) & (tx["week"] >= week - window)]
        counts = before.groupby(["customer_id", attribute]).size().rename("n").reset_index()
        favourite = (
            counts.sort_values(["customer_id", "n", attribute], ascending=[True, False, True])
            .drop_duplicates("customer_id")
            .set_index("customer_id")[attribute]
        )
        now = tx[(tx["week"] == week) & tx["customer_id"].isin(favourite.index)]
        if now.empty:
            continue
        liked = now["customer_id"].map(favourite)
        hits += float((now[attribute].to_numpy() == liked.to_numpy()).sum())
        chance += float(liked.map(now[attribute].value_counts(normalize=True)).sum())
    return hits / chance if chance else float("nan")


def realism(
    transactions: pd.DataFrame, weeks: int = 8, articles: pd.DataFrame | None = None
) -> dict[str, float]:
    """The figures above from a frame with t_dat, customer_id, article_id, price, sales_channel_id (and
    the taste figures when `articles` holds article_id and the TASTE_ATTRIBUTES columns)."""
    tx = transactions.copy()
    tx["week"] = (pd.to_datetime(tx["t_dat"]) - EPOCH).dt.days // 7
    tx["product"] = tx["article_id"].astype(str).str[:-3]
    last = int(tx["week"].max())
    repeat_article, repeat_product, top12, per_customer, active = [], [], [], [], []
    for week in range(last - weeks + 1, last + 1):
        before, now = tx[tx["week"] < week], tx[tx["week"] == week]
        if now.empty:
            continue
        seen_articles = set(zip(before["customer_id"], before["article_id"], strict=True))
        seen_products = set(zip(before["customer_id"], before["product"], strict=True))
        repeat_article.append(
            np.mean([p in seen_articles for p in zip(now["customer_id"], now["article_id"], strict=True)])
        )
        repeat_product.append(
            np.mean([p in seen_products for p in zip(now["customer_id"], now["product"], strict=True)])
        )
        top = set(before[before["week"] == week - 1]["article_id"].value_counts().index[:12])
        top12.append(float(now["article_id"].isin(top).mean()))
        per_customer.append(len(now) / now["customer_id"].nunique())
        known = set(before["customer_id"])
        returning = now.loc[now["customer_id"].isin(known), "customer_id"].nunique()
        active.append(returning / max(len(known), 1))
    prices = tx["price"].to_numpy(dtype=float)
    taste: dict[str, float] = {}
    if articles is not None:
        attributes = list(TASTE_ATTRIBUTES.values())
        described = tx.merge(articles[["article_id", *attributes]], on="article_id", how="left")
        taste = {name: taste_lift(described, column, weeks) for name, column in TASTE_ATTRIBUTES.items()}
    return {
        "repeat_article": float(np.mean(repeat_article)),
        "repeat_product": float(np.mean(repeat_product)),
        "last_week_top12": float(np.mean(top12)),
        "purchases_per_active_customer_week": float(np.mean(per_customer)),
        "active_customer_share": float(np.mean(active)),
        "sales_gini": gini(tx["article_id"].value_counts().to_numpy()),
        "price_p10": float(np.quantile(prices, 0.1)),
        "price_p50": float(np.quantile(prices, 0.5)),
        "price_p90": float(np.quantile(prices, 0.9)),
        "online_share": float((tx["sales_channel_id"] == 2).mean()),
        **taste,
    }


def sample_customers(transactions: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """All purchases of `n` customers drawn at random: popularity figures (top-12 share, Gini) depend on
    how many shoppers there are, so a generated world is compared with a real sample at the same size."""
    customers = transactions["customer_id"].drop_duplicates()
    if len(customers) <= n:
        return transactions
    kept = set(customers.sample(n, random_state=seed))
    return transactions[transactions["customer_id"].isin(kept)]


def folder_realism(folder: str | Path, weeks: int = 8, customers: int | None = None) -> dict[str, float]:
    tx = pd.read_csv(Path(folder) / "transactions_train.csv", dtype={"article_id": str, "customer_id": str})
    articles = pd.read_csv(
        Path(folder) / "articles.csv",
        dtype={"article_id": str},
        usecols=["article_id", *TASTE_ATTRIBUTES.values()],
    )
    if customers:
        tx = sample_customers(tx, customers)
    return realism(tx, weeks, articles)
