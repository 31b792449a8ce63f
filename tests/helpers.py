"""Small helpers for tests that edit Kaggle-format CSV files."""

from __future__ import annotations

from pathlib import Path


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def last_day(transactions: Path) -> str:
    return max(line.split(",", 1)[0] for line in read_lines(transactions)[1:])
