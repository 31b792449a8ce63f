"""Realism of the generator: the same shopper figures on the real development set (`../shared/hm_real_dev`)
and on a generated data set (`data/<scale>`, `make demo` writes `small`), side by side with their ratio.
Popularity figures depend on the number of shoppers, so the generated set is also measured on a random
sample of as many customers as the real set has. `python -m benchmarks --only realism --scale small`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fashionrec.evaluation.realism import folder_realism

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "hm_real_dev"


def run(scale: str) -> dict[str, Any]:
    if not REAL.exists():
        raise RuntimeError(
            f"{REAL} is not here: the realism benchmark compares with the real development set"
        )
    generated = Path("data") / ("small" if scale == "full" else scale)
    if not (generated / "transactions_train.csv").exists():
        raise RuntimeError(
            f"no generated data in {generated}: run `make demo` (or fashionrec generate) first"
        )
    real = folder_realism(REAL)
    customers = pd.read_csv(REAL / "customers.csv", usecols=["customer_id"])["customer_id"].nunique()
    ours = folder_realism(generated)
    ours_sampled = folder_realism(generated, customers=customers)
    rows = []
    for name, value in real.items():
        rows.append(
            {
                "figure": name,
                "real (hm_real_dev)": round(value, 4),
                f"generated ({generated.name})": round(ours[name], 4),
                f"generated, {customers} customers": round(ours_sampled[name], 4),
                "ratio (sampled / real)": round(ours_sampled[name] / value, 2) if value else None,
            }
        )
    within = sum(
        1 for r in rows if r["ratio (sampled / real)"] and 0.75 <= r["ratio (sampled / real)"] <= 1.25
    )
    return {"table": rows, "within_25_percent": f"{within} of {len(rows)}"}
