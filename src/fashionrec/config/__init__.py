"""Typed task parameters and table names; no Spark here."""

from fashionrec.config.params import EvaluateParams, FeaturesParams, IngestParams, LakeParams, parse_params
from fashionrec.config.tables import TableLocator, Tables

__all__ = ["EvaluateParams", "FeaturesParams", "IngestParams", "LakeParams", "TableLocator", "Tables", "parse_params"]
