"""Notebook parameters that work in both places a notebook runs: Databricks widgets on the cluster, and
`FASHIONREC_<NAME>` environment variables when the same file runs locally as a script (and in the tests)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def widget_reader(dbutils: Any = None) -> Callable[[str, str], str]:
    """`parameter(name, default)` for a notebook: pass it the notebook's `globals().get("dbutils")`, which
    Databricks puts there and a local run does not."""

    def parameter(name: str, default: str) -> str:
        if dbutils is not None:
            dbutils.widgets.text(name, default)
            return dbutils.widgets.get(name)
        return os.environ.get(f"FASHIONREC_{name.upper()}", default)

    return parameter


def table_location(parameter: Callable[[str, str], str], lakehouse: str = "lakehouse") -> dict[str, str]:
    """The `lakehouse`, `catalog` and `schema` widgets every notebook reads (a `TableLocator`'s or a job
    configuration's fields: Unity Catalog when `catalog` is set, the folder otherwise)."""
    return {
        "lakehouse": parameter("lakehouse", lakehouse),
        "catalog": parameter("catalog", ""),
        "schema": parameter("schema", "fashionrec"),
    }
