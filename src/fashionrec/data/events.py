"""A day of shop events after the generated history (`fashionrec generate --events N`): purchases by
recently active shoppers of recently selling articles, a few sell-outs of best sellers, and a few new
articles (another colour of a best seller) with rendered photos, some of them bought later that day.

The history files are left as they are, so the events are news to every snapshot built from them (and
the demo's and backtest's figures do not move). Pure pandas: the stream job and the replay read the file.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from fashionrec.data.images import IMAGE_SIZE, image_path, jpeg_bytes, render

EVENTS_FILE = "events.parquet"
PHOTOS_DIR = "event_photos"
RECENT_DAYS = 7


def make_events(
    folder: str | Path, count: int, seed: int = 11, new_articles: int = 3, sell_outs: int = 3
) -> Path:
    """Write `count` events for the day after the last transaction into `folder/events.parquet` (and the
    new articles' photos under `folder/event_photos`); returns the file."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    tx = pd.read_csv(folder / "transactions_train.csv", dtype={"article_id": str, "customer_id": str})
    articles = pd.read_csv(folder / "articles.csv", dtype={"article_id": str})
    last = date.fromisoformat(tx["t_dat"].max())
    recent = tx[pd.to_datetime(tx["t_dat"]).dt.date > last - timedelta(days=RECENT_DAYS)]
    day = datetime.combine(last + timedelta(days=1), datetime.min.time())
    best = recent["article_id"].value_counts().index.tolist()

    new_rows = _new_articles(articles, best, new_articles, rng)
    photos = folder / PHOTOS_DIR
    for row in new_rows:
        path = image_path(photos, row["article_id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(render(row, IMAGE_SIZE)))

    n_new, n_out = len(new_rows), min(sell_outs, len(best))
    n_buy = max(count - n_new - n_out, 0)
    pick = rng.integers(0, len(recent), size=(n_buy, 2))
    purchases = pd.DataFrame(
        {
            "type": "purchase",
            "customer_id": recent["customer_id"].to_numpy()[pick[:, 0]],
            "article_id": recent["article_id"].to_numpy()[pick[:, 1]],
            "price": recent["price"].to_numpy()[pick[:, 1]],
            "sales_channel_id": recent["sales_channel_id"].to_numpy()[pick[:, 1]],
        }
    )
    # the last purchases of the day include the new articles (bought by the day's shoppers)
    for i, row in enumerate(new_rows):
        if len(purchases) > 2 * (i + 1):
            purchases.loc[len(purchases) - 1 - i, "article_id"] = row["article_id"]
    seconds = np.sort(rng.uniform(0, 86_400, size=len(purchases)))
    purchases["event_time"] = [day + timedelta(seconds=float(s)) for s in seconds]
    others = [
        {"type": "stock", "article_id": a, "in_stock": 0, "event_time": day + timedelta(hours=1 + i)}
        for i, a in enumerate(best[:n_out])
    ] + [
        {
            "type": "new_article",
            "article_id": row["article_id"],
            "article": json.dumps({k: v for k, v in row.items() if k != "article_id"}),
            "photo_path": str(image_path(photos, row["article_id"]).resolve()),
            "event_time": day + timedelta(minutes=30 * (i + 1)),
        }
        for i, row in enumerate(new_rows)
    ]
    events = pd.concat([purchases, pd.DataFrame(others)], ignore_index=True).sort_values(
        "event_time", kind="stable"
    )
    events.insert(0, "event_id", [f"ev-{seed}-{i:07d}" for i in range(len(events))])
    events["in_stock"] = events["in_stock"].astype("Int64") if "in_stock" in events else pd.NA
    path = folder / EVENTS_FILE
    events.reset_index(drop=True).to_parquet(path, index=False)
    return path


def _new_articles(articles: pd.DataFrame, best: list[str], n: int, rng: np.random.Generator) -> list[dict]:
    """Another colour of `n` best sellers, each with a fresh 10-digit id."""
    by_id = articles.set_index("article_id")
    colours = articles.drop_duplicates("colour_group_code")[["colour_group_code", "colour_group_name"]]
    taken = set(articles["article_id"])
    rows = []
    for source in best[:n]:
        row = by_id.loc[source].to_dict()
        other = colours[colours["colour_group_code"] != row["colour_group_code"]].iloc[
            int(rng.integers(0, len(colours) - 1))
        ]
        row["colour_group_code"], row["colour_group_name"] = (
            int(other["colour_group_code"]),
            other["colour_group_name"],
        )
        number = int(row["product_code"]) * 1000 + 900
        while f"{number:010d}" in taken:
            number += 1
        taken.add(f"{number:010d}")
        clean = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        clean = {k: (int(v) if isinstance(v, np.integer) else v) for k, v in clean.items()}
        rows.append({"article_id": f"{number:010d}", **clean})
    return rows
