"""The metric table (method x metric) and the MAP@12 bar chart."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def metric_rows(
    results: Mapping[str, Mapping[str, float]], oracle: str | None = "oracle"
) -> list[dict[str, float | str]]:
    """One row per method, best MAP first, with its share of the oracle's MAP when there is one."""
    key = next(k for k in next(iter(results.values())) if k.startswith("map@"))
    bound = results.get(oracle, {}).get(key) if oracle else None
    rows = []
    for method, metrics in sorted(results.items(), key=lambda kv: -kv[1][key]):
        row: dict[str, float | str] = {
            "method": method,
            **{k: v for k, v in metrics.items() if k != "customers"},
        }
        if bound:
            row["share_of_oracle"] = metrics[key] / bound
        rows.append(row)
    return rows


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Lay out, write atomically (a reader never sees half a PNG) and close a figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def map_bar_chart(rows: list[dict[str, float | str]], path: str | Path, title: str) -> Path:
    """Horizontal bars of MAP@k per method; written atomically."""
    key = next(k for k in rows[0] if str(k).startswith("map@"))
    methods = [str(r["method"]) for r in rows][::-1]
    values = [float(r[key]) for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    colours = ["#999999" if m == "oracle" else "#1f77b4" for m in methods]
    ax.barh(methods, values, color=colours)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.4f}", va="center", fontsize=9)
    ax.set_xlabel(key.upper())
    ax.set_title(title)
    ax.set_xlim(0, max(values) * 1.25 if max(values) > 0 else 1)
    return save_figure(fig, path)
