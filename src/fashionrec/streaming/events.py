"""The shop's events and their validation, in pandas (no Spark: unit-tested, and the stream job's
micro-batches are small).

An event is a purchase, a stock change or a new article. Each row gets one verdict: accepted, or rejected
with the first reason found (the field it names and why), so a bad event goes to quarantine, never away.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fashionrec.data.schema import ARTICLES, ID_PATTERN, normalise_article_id

PURCHASE, STOCK, NEW_ARTICLE = "purchase", "stock", "new_article"
EVENT_TYPES = (PURCHASE, STOCK, NEW_ARTICLE)
# The events table's columns and Spark SQL types (`streaming.events_table` creates it from these).
EVENT_COLUMNS = {
    "event_id": "string",
    "event_time": "timestamp",
    "type": "string",
    "customer_id": "string",
    "article_id": "string",
    "price": "double",
    "sales_channel_id": "int",
    "in_stock": "int",
    "article": "string",  # new_article: its catalogue row (articles.csv columns) as a JSON object
    "photo_path": "string",  # new_article: its photo, a file the stream job can read
}
# Clocks disagree a little; an event stamped later than this after it was appended is from the future.
FUTURE_TOLERANCE = pd.Timedelta(minutes=5)
MAX_PRICE = 1e6
_ID = re.compile(ID_PATTERN)
_INT_COLUMNS = {c.name for c in ARTICLES.columns if c.kind == "int"}


@dataclass(frozen=True)
class Verdicts:
    """`accepted`: valid events, first occurrence of each id, new articles first; `rejected`: the other
    rows with `column` and `reason`."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame


def catalogue_row(text: object, article_id: str) -> dict[str, object]:
    """A new article's catalogue row from its JSON text, typed as articles.csv's columns; ValueError says
    what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("missing: a new article needs its catalogue row")
    try:
        row = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    unknown = sorted(set(row) - set(ARTICLES.column_names))
    if unknown:
        raise ValueError(f"unknown column(s) {', '.join(unknown)}")
    out: dict[str, object] = {c: None for c in ARTICLES.column_names}
    for name, value in row.items():
        if name in _INT_COLUMNS and value is not None:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | str)
                or not str(value).strip().isdigit()
            ):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
            value = int(value)
        out[name] = value
    if out["product_code"] is None:
        raise ValueError("product_code is required")
    out["article_id"] = article_id
    return out


def validate_events(
    batch: pd.DataFrame,
    known_customer: Callable[[str], bool],
    known_article: Callable[[str], bool],
    seen_before: dict[str, int],
    photo_exists: Callable[[str], bool] = lambda path: True,
) -> Verdicts:
    """Verdicts for one micro-batch. `batch` has the event columns and `appended_at` (when the row was
    committed to the events table); `seen_before`: ids accepted by an earlier batch, with that batch.
    Rows are taken in append order (`appended_at`, then id): the first of a repeated id wins, and a
    purchase may name an article added earlier in the same batch."""
    rows = batch.copy()
    rows["article_id"] = [normalise_article_id(a) if isinstance(a, str) else a for a in rows["article_id"]]
    rows = rows.sort_values(["appended_at", "event_id"], kind="stable", na_position="last")
    rows = rows.reset_index(drop=True)
    reasons: list[tuple[str, str] | None] = [None] * len(rows)
    catalogue: list[object] = [None] * len(rows)
    taken: set[str] = set()
    added: set[str] = set()

    def article_ok(article: str) -> bool:
        return article in added or known_article(article)

    def check(i: int, row: pd.Series) -> tuple[str, str] | None:
        event_id, kind = row["event_id"], row["type"]
        if not isinstance(event_id, str) or not _ID.match(event_id):
            return "event_id", "missing or not an id (letters, digits, _ . -, at most 128)"
        if kind not in EVENT_TYPES:
            return "type", f"{kind!r} is not one of {', '.join(EVENT_TYPES)}"
        when = row["event_time"]
        if pd.isna(when):
            return "event_time", "missing"
        if pd.Timestamp(when) > pd.Timestamp(row["appended_at"]) + FUTURE_TOLERANCE:
            return "event_time", f"{when} is in the future (appended at {row['appended_at']})"
        if event_id in seen_before:
            return "event_id", f"duplicate: event {event_id} was applied in batch {seen_before[event_id]}"
        if event_id in taken:
            return "event_id", f"duplicate: event {event_id} appears twice in this batch"
        article = row["article_id"]
        if kind == NEW_ARTICLE:
            if not isinstance(article, str) or not _ID.match(article):
                return "article_id", "missing or not an id"
            if article_ok(article):
                return "article_id", f"article {article} is already in the catalogue"
            try:
                catalogue[i] = catalogue_row(row["article"], article)
            except ValueError as error:
                return "article", str(error)
            photo = row["photo_path"]
            if isinstance(photo, str) and photo and not photo_exists(photo):
                return "photo_path", f"{photo} cannot be read"
            return None
        if not isinstance(article, str) or not article:
            return "article_id", "missing"
        if not article_ok(article):
            return "article_id", f"unknown article {article}"
        if kind == STOCK:
            if pd.isna(row["in_stock"]) or int(row["in_stock"]) not in (0, 1):
                return "in_stock", f"must be 0 or 1, got {row['in_stock']!r}"
            return None
        customer = row["customer_id"]
        if not isinstance(customer, str) or not customer:
            return "customer_id", "missing"
        if not known_customer(customer):
            return "customer_id", f"unknown customer {customer}"
        price = row["price"]
        if pd.isna(price) or not 0 < float(price) <= MAX_PRICE:
            return "price", f"must be in (0, {MAX_PRICE:g}], got {price!r}"
        return None

    for i, row in rows.iterrows():
        found = check(int(i), row)
        reasons[int(i)] = found
        if found is None:
            taken.add(row["event_id"])
            if row["type"] == NEW_ARTICLE:
                added.add(row["article_id"])
    ok = np.array([r is None for r in reasons], dtype=bool)
    accepted = rows[ok].copy()
    accepted["catalogue"] = [c for c, good in zip(catalogue, ok, strict=True) if good]
    rejected = rows[~ok].copy()
    rejected["column"] = [r[0] for r in reasons if r is not None]
    rejected["reason"] = [r[1] for r in reasons if r is not None]
    order = {NEW_ARTICLE: 0, STOCK: 1, PURCHASE: 2}
    accepted = accepted.sort_values(
        ["type", "appended_at", "event_id"],
        key=lambda s: s.map(order) if s.name == "type" else s,
        kind="stable",
    )
    return Verdicts(accepted.reset_index(drop=True), rejected.reset_index(drop=True))


def event_json(row: pd.Series, columns: Iterable[str] = EVENT_COLUMNS) -> str:
    """An event as JSON text (the quarantine's `raw`)."""
    return json.dumps({c: None if pd.isna(row[c]) else str(row[c]) for c in columns}, sort_keys=True)
