"""Sorted integer key tables: how the core joins a batch's candidate rows with its customers' purchases
without a dictionary per row (rules and features use them)."""

from __future__ import annotations

import numpy as np


def key_table(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct `keys` in order, with each key's number of rows and the largest of its `values`."""
    if not len(keys):
        return keys, np.zeros(0, np.int64), np.zeros(0, values.dtype)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    counts = np.diff(np.append(starts, len(keys)))
    return ordered[starts], counts, np.maximum.reduceat(values[order], starts)


def find(keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's position in the sorted `keys` and whether it is there (negative queries never are)."""
    if not len(keys):
        return np.zeros(len(queries), np.int64), np.zeros(len(queries), bool)
    at = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    return at, (keys[at] == queries) & (queries >= 0)
