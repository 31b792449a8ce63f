"""Each notebook runs top to bottom as a script against a real lakehouse."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# call_recommender.py needs a running endpoint: tests/test_serving.py runs it against one.
NOTEBOOKS = sorted(p for p in (REPO_ROOT / "notebooks").glob("*.py") if p.name != "call_recommender.py")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_notebook_runs_as_a_script(notebook, tiny_lake):
    tables, _ = tiny_lake
    assert notebook.read_text().startswith("# Databricks notebook source")
    env = {**os.environ, "FASHIONREC_LAKEHOUSE": tables.lakehouse, "FASHIONREC_DRIVER_MEMORY": "1g"}
    result = subprocess.run(
        [sys.executable, str(notebook)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transactions" in result.stdout and "version" in result.stdout
