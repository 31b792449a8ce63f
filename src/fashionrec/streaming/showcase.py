"""`fashionrec realtime` (the end of `make demo`): one shopper's answer from the served core before and
after the stream applies a day's first events, among them a purchase by that shopper and a sell-out of an
article on their list. Real Spark, Delta and online store; the core is the one the served model runs.

The stream writes into a scratch copy of the lakehouse's tables and a scratch store: the day's events
are the day after the history, and the demo's own tables (and its next run's test week) stay as they
were."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from fashionrec.config import StreamParams
from fashionrec.lake.session import get_spark
from fashionrec.online.store import open_store
from fashionrec.recommender.core import Recommender
from fashionrec.streaming.events_table import append_events
from fashionrec.streaming.replay import read_events
from fashionrec.streaming.task import run_stream


@dataclass(frozen=True)
class ShowcaseParams:
    lakehouse: str = "lakehouse"
    artifacts_dir: str = "artifacts"
    events: str = "data/small/events.parquet"
    first_events: int = 50  # of the events file, replayed with the shopper's own two


SCRATCH_TABLES = ("articles", "customers", "transactions", "article_availability", "quarantine")


def showcase(params: ShowcaseParams) -> dict[str, Any]:
    """Replay, stream, and answer the shopper before and after; returns the figures printed."""
    with tempfile.TemporaryDirectory(prefix="fashionrec-realtime-") as scratch:
        for table in SCRATCH_TABLES:  # path-based Delta tables: a copied folder is the same table
            if (Path(params.lakehouse) / table).exists():
                shutil.copytree(Path(params.lakehouse) / table, Path(scratch) / "lakehouse" / table)
        return _showcase(params, str(Path(scratch) / "lakehouse"))


def _showcase(params: ShowcaseParams, lakehouse: str) -> dict[str, Any]:
    stream = StreamParams(lakehouse=lakehouse, available_now=True, artifacts_dir=params.artifacts_dir)
    snapshot = Path(params.artifacts_dir) / "serving" / "snapshot"
    store = open_store(stream.store_url())
    core = Recommender(snapshot, params.artifacts_dir, online_store=store)
    events = read_events(params.events).head(params.first_events)
    buyers = [c for c in events.loc[events["type"] == "purchase", "customer_id"] if core.is_warm(c)]
    if not buyers:
        raise ValueError(
            f"none of the first {params.first_events} events of {params.events} is by a known shopper"
        )
    shopper = buyers[0]
    before = core.recommend([shopper])[0]
    when = pd.Timestamp(events["event_time"].min()) + timedelta(minutes=1)
    own = pd.DataFrame(
        [
            {
                "event_id": f"showcase-buy-{shopper[:8]}-{core.week}",
                "type": "purchase",
                "customer_id": shopper,
                "article_id": before.article_ids[0],
                "price": 0.03,
                "sales_channel_id": 2,
                "event_time": when,
            },
            {
                "event_id": f"showcase-sellout-{before.article_ids[1]}-{core.week}",
                "type": "stock",
                "article_id": before.article_ids[1],
                "in_stock": 0,
                "event_time": when,
            },
        ]
    )
    spark = get_spark("fashionrec-realtime")
    append_events(spark, stream.tables, pd.concat([events, own], ignore_index=True))
    figures = run_stream(stream, spark)
    after = core.recommend([shopper])[0]
    rows = []
    for rank in range(max(len(before.article_ids), len(after.article_ids))):
        old = before.article_ids[rank] if rank < len(before.article_ids) else ""
        new = after.article_ids[rank] if rank < len(after.article_ids) else ""
        note = (
            "bought now"
            if old == own["article_id"][0]
            else "sold out now"
            if old == own["article_id"][1]
            else ""
        )
        rows.append((rank + 1, old, note, new, after.sources[rank] if new else ""))
    print(
        f"shopper {shopper}: their top-{len(before.article_ids)} before and after the stream applied "
        f"{figures['events']} events (their purchase of {own['article_id'][0]}, a sell-out of {own['article_id'][1]})"
    )
    print(f"{'rank':>4}  {'before':<12}{'':<14}{'after':<12}source")
    for rank, old, note, new, source in rows:
        print(f"{rank:>4}  {old:<12}{note:<14}{new:<12}{source}")
    store.close()
    return {
        **figures,
        "shopper": shopper,
        "sold_out_gone": own["article_id"][1] not in after.article_ids,
        "answer_changed": before.article_ids != after.article_ids,
    }
