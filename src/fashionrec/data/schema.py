"""The H&M (Kaggle) file layout as column rules: what each column must look like and its bronze type.

One `TableSpec` per source file. Validation (`fashionrec.data.validation`) turns the rules into Spark
expressions, so a new retailer with the same shape only edits this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["string", "id", "int", "float", "date"]

ID_PATTERN = r"^[0-9A-Za-z_.\-]{1,128}$"
HEX64_PATTERN = r"^[0-9a-f]{64}$"


@dataclass(frozen=True)
class Column:
    """One source column: its bronze type and the checks a value must pass."""

    name: str
    kind: Kind = "string"
    required: bool = False  # empty is a quarantine reason
    pattern: str | None = None  # regex the raw text must match
    minimum: float | str | None = None  # numbers, or ISO dates for kind="date"
    maximum: float | str | None = None
    exclusive_minimum: bool = False
    allowed: tuple[float, ...] | None = None  # allowed numeric values
    pad_digits: int | None = None  # all-digit ids are left-padded with zeros to this width


@dataclass(frozen=True)
class TableSpec:
    table: str
    default_file: str
    columns: tuple[Column, ...]
    keys: tuple[str, ...]
    foreign_keys: dict[str, str] = field(default_factory=dict)  # column -> referenced table

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def normalise_article_id(value: str, width: int = 10) -> str:
    """The one spelling of an article id everywhere (ingest, serving, `exclude`): all-digit ids are
    left-padded with zeros to Kaggle's 10 digits, so `108775015` and `0108775015` are the same article."""
    text = value.strip()
    return text.zfill(width) if text.isdigit() and len(text) < width else text


ARTICLE_ID = Column("article_id", "id", required=True, pattern=ID_PATTERN, pad_digits=10)
CUSTOMER_ID = Column("customer_id", "id", required=True, pattern=ID_PATTERN)

_int = "int"

ARTICLES = TableSpec(
    table="articles",
    default_file="articles.csv",
    keys=("article_id",),
    columns=(
        ARTICLE_ID,
        Column("product_code", _int, required=True, minimum=0),
        Column("prod_name"),
        Column("product_type_no", _int),
        Column("product_type_name"),
        Column("product_group_name"),
        Column("graphical_appearance_no", _int),
        Column("graphical_appearance_name"),
        Column("colour_group_code", _int),
        Column("colour_group_name"),
        Column("perceived_colour_value_id", _int),
        Column("perceived_colour_value_name"),
        Column("perceived_colour_master_id", _int),
        Column("perceived_colour_master_name"),
        Column("department_no", _int),
        Column("department_name"),
        Column("index_code"),
        Column("index_name"),
        Column("index_group_no", _int),
        Column("index_group_name"),
        Column("section_no", _int),
        Column("section_name"),
        Column("garment_group_no", _int),
        Column("garment_group_name"),
        Column("detail_desc"),
    ),
)

CUSTOMERS = TableSpec(
    table="customers",
    default_file="customers.csv",
    keys=("customer_id",),
    columns=(
        CUSTOMER_ID,
        Column("FN", "float", allowed=(1.0,)),
        Column("Active", "float", allowed=(1.0,)),
        Column("club_member_status"),
        Column("fashion_news_frequency"),
        Column("age", _int, minimum=10, maximum=110),
        Column("postal_code"),
    ),
)

TRANSACTIONS = TableSpec(
    table="transactions",
    default_file="transactions_train.csv",
    keys=("txn_id",),
    foreign_keys={"customer_id": "customers", "article_id": "articles"},
    columns=(
        Column("t_dat", "date", required=True, minimum="2000-01-01", maximum="2100-01-01"),
        CUSTOMER_ID,
        ARTICLE_ID,
        Column("price", "float", required=True, minimum=0.0, exclusive_minimum=True, maximum=1e6),
        Column("sales_channel_id", _int, required=True, allowed=(1, 2)),
    ),
)

# Optional: stock, regions and age limits per article (not part of the Kaggle data; see data/availability.py).
ARTICLE_AVAILABILITY = TableSpec(
    table="article_availability",
    default_file="article_availability.csv",
    keys=("article_id",),
    columns=(
        ARTICLE_ID,
        Column("in_stock", _int, required=True, allowed=(0, 1)),
        Column("regions"),  # ";"-separated region names; empty: sold everywhere
        Column("min_age", _int, minimum=0, maximum=110),
    ),
)

SPECS: dict[str, TableSpec] = {s.table: s for s in (ARTICLES, CUSTOMERS, TRANSACTIONS, ARTICLE_AVAILABILITY)}
