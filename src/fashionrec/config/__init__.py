"""Typed task parameters and table names; no Spark here."""

from fashionrec.config.params import (
    BacktestParams,
    EvaluateParams,
    FeaturesParams,
    ImageIndexParams,
    ImageIngestParams,
    ImageSimilarityParams,
    IndexParams,
    IngestParams,
    LakeParams,
    RankingParams,
    RegisterParams,
    RetrievalParams,
    ScoringParams,
    StreamParams,
    parse_params,
)
from fashionrec.config.tables import TableLocator, Tables

__all__ = [
    "BacktestParams",
    "EvaluateParams",
    "FeaturesParams",
    "ImageIndexParams",
    "ImageIngestParams",
    "ImageSimilarityParams",
    "IndexParams",
    "IngestParams",
    "LakeParams",
    "RankingParams",
    "RegisterParams",
    "RetrievalParams",
    "ScoringParams",
    "StreamParams",
    "TableLocator",
    "Tables",
    "parse_params",
]
