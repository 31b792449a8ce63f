"""Typed parameters parsed from bundle-style argument lists."""

from __future__ import annotations

import pytest

from fashionrec.config import IngestParams, parse_params
from fashionrec.config.params import to_args


def test_parse_params_types_and_round_trip():
    params = parse_params(IngestParams, ["--data-path", "/x", "--sample-fraction", "0.25", "--catalog", ""])
    assert params.data_path == "/x" and params.sample_fraction == 0.25 and params.catalog == ""
    assert parse_params(IngestParams, to_args(params)) == params
    assert params.tables.name("articles").startswith("delta.`")


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(SystemExit, match="--data-path"):
        parse_params(IngestParams, ["--data-pth", "/x"])


def test_catalog_tables_are_three_part_names():
    params = parse_params(IngestParams, ["--catalog", "main", "--schema", "hm"])
    assert params.tables.name("transactions") == "`main`.`hm`.`transactions`"


def test_sample_fraction_is_checked():
    with pytest.raises(ValueError, match="sample_fraction"):
        IngestParams(sample_fraction=0.0)
