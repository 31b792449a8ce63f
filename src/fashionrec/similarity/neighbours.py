"""Visual neighbours and how good they are: precision@k of same product type / colour, and a picture."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fashionrec.evaluation.report import save_figure
from fashionrec.retrieval.index import ArticleIndex


def nearest(embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows [n, k], scores [n, k]) of each item's k nearest other items by cosine (exact inner product)."""
    index = ArticleIndex.build(
        embeddings.astype(np.float32), [str(i) for i in range(len(embeddings))], "exact"
    )
    scores, ids = index.search(embeddings, k + 1)
    rows = np.full((len(embeddings), k), -1, dtype=np.int64)
    out_scores = np.zeros((len(embeddings), k), dtype=np.float32)
    for i, (row, score) in enumerate(zip(ids, scores, strict=True)):
        others = [(int(j), float(s)) for j, s in zip(row, score, strict=False) if int(j) != i][:k]
        rows[i, : len(others)] = [j for j, _ in others]
        out_scores[i, : len(others)] = [s for _, s in others]
    return rows, out_scores


def precision_at_k(rows: np.ndarray, labels: np.ndarray) -> float:
    """Mean share of an item's neighbours that carry its label."""
    valid = rows >= 0
    same = (labels[np.where(valid, rows, 0)] == labels[:, None]) & valid
    return float(same.sum() / max(valid.sum(), 1))


def random_rows(n: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n - 1, (n, k))
    return rows + (rows >= np.arange(n)[:, None])  # never the item itself


def precision_table(
    methods: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]
) -> list[dict[str, float | str]]:
    """One row per method: precision@k for each label (e.g. product type, colour group)."""
    return [
        {
            "method": name,
            **{
                f"precision@{rows.shape[1]}_same_{label}": round(precision_at_k(rows, values), 4)
                for label, values in labels.items()
            },
        }
        for name, rows in methods.items()
    ]


def neighbour_grid(
    pixels: np.ndarray, rows: np.ndarray, queries: list[int], captions: list[str], path: str | Path
) -> Path:
    """Each query image (left) with its neighbours, one row per query; written atomically."""
    k = rows.shape[1]
    fig, axes = plt.subplots(len(queries), k + 1, figsize=(1.3 * (k + 1), 1.4 * len(queries)))
    axes = np.atleast_2d(axes)
    for r, q in enumerate(queries):
        for c in range(k + 1):
            item = q if c == 0 else rows[q, c - 1]
            ax = axes[r, c]
            ax.imshow(pixels[item])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(("query\n" if c == 0 else "") + captions[item], fontsize=6)
            if c == 0:
                for spine in ax.spines.values():
                    spine.set_edgecolor("#d62728")
                    spine.set_linewidth(2)
    return save_figure(fig, path)
