"""Typed task parameters and table names; no Spark here."""

from fashionrec.config.params import IngestParams, LakeParams, parse_params
from fashionrec.config.tables import TableLocator, Tables

__all__ = ["IngestParams", "LakeParams", "TableLocator", "Tables", "parse_params"]
