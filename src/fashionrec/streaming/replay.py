"""`fashionrec replay`: append a file of events to the `events` table at N events a second, as a shop
would (one commit a second, with what is due by then: a slow commit is caught up, not dropped)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession

from fashionrec.config.tables import TableLocator
from fashionrec.streaming.events_table import append_events


@dataclass(frozen=True)
class Appended:
    """One commit of the replay: its events and the wall-clock time it was committed (seconds)."""

    event_ids: list[str]
    committed_at: float
    version: int


def read_events(path: str | Path) -> pd.DataFrame:
    """The events file (parquet or JSON lines), in event time order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such events file (make one with `fashionrec generate --events N`)"
        )
    frame = pd.read_json(path, lines=True) if path.suffix in (".jsonl", ".json") else pd.read_parquet(path)
    if "event_id" not in frame.columns:
        raise ValueError(f"{path}: no event_id column (columns: {', '.join(frame.columns)})")
    return frame.reset_index(drop=True)


def replay(
    spark: SparkSession,
    tables: TableLocator,
    events: pd.DataFrame,
    rate: float,
    limit: int | None = None,
    progress: bool = True,
    on_commit: Callable[[Appended], None] = lambda commit: None,
) -> list[Appended]:
    """Append `events` (the first `limit`) at `rate` events a second; returns each commit, and hands each
    to `on_commit` as it is made."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    rows = events if limit is None else events.head(limit)
    tick = max(1.0, 1.0 / rate)  # one commit a second (or one event a commit below one a second)
    started, done, commits, ticks = time.monotonic(), 0, [], 0
    while done < len(rows):
        due = min(len(rows), max(done + 1, int((time.monotonic() - started) * rate)))
        chunk = rows.iloc[done:due]
        version = append_events(spark, tables, chunk)
        commits.append(Appended(chunk["event_id"].astype(str).tolist(), time.time(), version))
        on_commit(commits[-1])
        done = due
        if progress:
            print(f"replay: {done}/{len(rows)} events appended (events version {version})", flush=True)
        ticks += 1
        wait = started + ticks * tick - time.monotonic()
        if wait > 0 and done < len(rows):
            time.sleep(wait)
    return commits
