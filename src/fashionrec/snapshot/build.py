"""The compact feature snapshot the online recommender answers from, built in Spark from the lakehouse.

Training writes one for each target week too (`ranking.frames`): the ranker learns from the rows the
core computes from it. Serving's is pinned to what batch scoring last used (`scoring_state`: target week, transactions and customers
versions, popularity snapshot), and built with the same Spark functions, so an online answer equals the
customer's row in `recommendations`. Files (parquet, small enough to load into memory once):

- purchases: every purchase before the week (customer_id, article_id, day number);
- customers: age, region and the ranker's customer features;
- articles: attributes, the ranker's article features, availability, 4-week sales, "has sold" flag;
- tops: trending, age-band, decayed-popularity and per-product-type best-seller lists;
- pairs: articles bought together (the `bought_together` source);
- similar: visual neighbour pairs (when the image tasks ran);
- meta.json: week, table versions, the pipeline config (rules, candidate counts, k, diversity).
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from fashionrec import __version__
from fashionrec.config import TableLocator, Tables
from fashionrec.evaluation.baselines import age_band_tops, decayed_sales, known_band
from fashionrec.features.article import article_features
from fashionrec.features.customer import customer_features
from fashionrec.features.weeks import EPOCH, first_day, week_col, week_of
from fashionrec.lake.ingest import EVENT_ID
from fashionrec.lake.tables import current_version, read_changes, read_table, table_id, table_identity
from fashionrec.recommender.layout import ARTICLE_TABLE_FEATURES as BASE_ARTICLE_FEATURES
from fashionrec.recommender.layout import CONFIG_FILE, CUSTOMER_TABLE_FEATURES, FALLBACK_DEPTH, STREAMED_FILE
from fashionrec.recommender.pipeline import PipelineConfig
from fashionrec.snapshot.lists import (
    article_sales,
    bought_together_pairs,
    customer_region,
    decayed_top,
    product_columns,
    trending_top,
    type_tops,
    visual_pairs,
)

ROWS_PER_PART = 2_000_000  # rows per collect when a snapshot table is written (~200 MB of arrow)
GLOBAL_CACHE = Path("scoring") / "global"  # under artifacts_dir: global halves by the key of their inputs
KEEP_GLOBAL = 2  # cached global halves kept (the current one and the one before)
PAIR_WEEKS = 12  # the bought_together pairs count customers who bought both within this many weeks
# Each product type's list is this many times `favourite_type` deep: the taste weights reorder it
# (on `small`'s choice weeks lists 4x deep found 5% more purchases than 2x deep; docs/journal.md).
TYPE_LIST_DEPTH = 4


def _day_number(column: str) -> F.Column:
    """Days since the week epoch: integer dates for numpy (week = day // 7)."""
    return F.datediff(F.col(column), F.lit(EPOCH)).cast("int").alias("day")


def write_rows(df: DataFrame, folder: Path, name: str, rows_per_part: int = ROWS_PER_PART) -> int:
    """Write `df` to `folder`/`name`.parquet through the driver, one hash bucket of the first column at a
    time when it is large: one collect is capped by `spark.driver.maxResultSize` (1 GiB by default), and
    the full data set's purchase histories alone are over it. Returns the number of rows."""
    import pyarrow.parquet as pq

    cached = df.persist(StorageLevel.MEMORY_AND_DISK)  # counted, then read once per part
    try:
        total = cached.count()
        parts = max(1, -(-total // rows_per_part))
        if parts == 1:
            pq.write_table(cached.toArrow(), folder / f"{name}.parquet")
            return total
        bucket = F.pmod(F.xxhash64(F.col(cached.columns[0])), F.lit(parts))
        with pq.ParquetWriter(folder / f"{name}.parquet", cached.limit(0).toArrow().schema) as writer:
            for part in range(parts):
                writer.write_table(cached.where(bucket == part).toArrow())
        return total
    finally:
        cached.unpersist()


def scoring_snapshot(spark: SparkSession, tables: TableLocator) -> dict[str, Any]:
    """The week and table versions batch scoring last used (run batch_score first)."""
    if current_version(spark, tables, Tables.SCORING_STATE) is None:
        raise ValueError(f"scoring_state not found in {tables.describe()}: run batch_score first")
    row = read_table(spark, tables, Tables.SCORING_STATE).first()
    if row is None:
        raise ValueError("scoring_state is empty: run batch_score first")
    return row.asDict()


def history_week(state: dict[str, Any]) -> int:
    """Purchases before this week are the customers' histories: the target week, or a later one when days
    of the target week have landed since the models' snapshot (a daily refresh: what a customer bought
    today shapes tomorrow's list, while popularity and the models stay as of the target week)."""
    return int(state.get("history_week") or state["week"])


def purchase_rows(personal_tx: DataFrame, week: int) -> DataFrame:
    """(customer_id, article_id, day) of every purchase before the week: the customers' histories."""
    return personal_tx.where(week_col(F.col("t_dat")) < week).select(
        "customer_id", "article_id", _day_number("t_dat")
    )


def write_streamed(transactions: DataFrame, week: int, folder: Path) -> int:
    """`STREAMED_FILE`: the event ids of the stream's purchases among the histories (those before `week`).
    Landing-file rows have no event id, so Delta skips their files by the column's null count."""
    if EVENT_ID in transactions.columns:
        streamed = transactions.where(F.col(EVENT_ID).isNotNull() & (week_col(F.col("t_dat")) < week))
        streamed = streamed.select(EVENT_ID)
    else:  # a lakehouse from before the stream job
        streamed = transactions.sparkSession.createDataFrame([], f"{EVENT_ID} string")
    return write_rows(streamed, folder, Path(STREAMED_FILE).stem)


def customer_rows(personal_tx: DataFrame, customers: DataFrame, articles: DataFrame, week: int) -> DataFrame:
    """Age, age band, region and the ranker's customer features of `customers` as of the week."""
    features = customer_features(personal_tx, customers, articles, [week]).select(
        "customer_id",
        *[c for c in CUSTOMER_TABLE_FEATURES if c not in ("age", "customer_mean_price")],
        F.col("age").cast("double").alias("feature_age"),
        F.col("mean_price").alias("customer_mean_price"),
    )
    return customers.select(
        "customer_id",
        F.col("age").cast("double").alias("age"),
        known_band(F.col("age")).alias("band"),
        customer_region(F.col("postal_code")).alias("region"),
    ).join(features, "customer_id", "left")


def changed_customers(
    spark: SparkSession,
    tables: TableLocator,
    since: tuple[int, int],
    until: tuple[int, int],
) -> DataFrame:
    """Distinct ids of customers whose transactions or customer record changed between the (transactions,
    customers) versions `since` (exclusive) and `until`, from the change feeds: the customers whose lists
    and serving rows must be recomputed."""
    parts = []
    if until[0] > since[0]:
        parts.append(
            read_changes(spark, tables, Tables.TRANSACTIONS, since[0], until[0]).select("customer_id")
        )
    if until[1] > since[1]:
        parts.append(
            read_changes(spark, tables, Tables.CUSTOMERS, since[1], until[1])
            .where(F.col("_change_type") != "update_preimage")
            .select("customer_id")
        )
    if not parts:
        return spark.createDataFrame([], "customer_id string")
    return functools.reduce(DataFrame.unionByName, parts).distinct()


@dataclass
class GlobalInputs:
    """What the snapshot's global half is computed from: transactions before the week count."""

    global_tx: DataFrame  # popularity, trends, pairs, article features
    customers: DataFrame  # age bands of the buyers
    articles: DataFrame
    availability: DataFrame | None = None  # stock, regions, age limits (the business rules)
    similar: DataFrame | None = None  # visual neighbours (the image tasks)
    # `features.article.article_features` rows already computed for the week (the article_features
    # table, or one computation for many weeks in the backtest); None: computed here.
    article_features: DataFrame | None = None


def global_inputs(spark: SparkSession, tables: TableLocator, state: dict[str, Any]) -> GlobalInputs:
    """The global inputs at the versions `state` names (the optional tables at their latest)."""

    def optional(table: str) -> DataFrame | None:
        if current_version(spark, tables, table) is None:
            return None
        return read_table(spark, tables, table)

    return GlobalInputs(
        read_table(spark, tables, Tables.TRANSACTIONS, version=int(state["global_version"])),
        read_table(spark, tables, Tables.CUSTOMERS, version=int(state["customers_version"])),
        read_table(spark, tables, Tables.ARTICLES),
        optional(Tables.ARTICLE_AVAILABILITY),
        optional(Tables.SIMILAR_ARTICLES),
    )


def write_global_part(
    inputs: GlobalInputs, week: int, config: dict[str, Any], folder: Path, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The snapshot's global half (articles, lists, pairs, neighbours, meta.json) as of `week`, for the
    pipeline `config` (pipeline.json's rules, candidate counts, k), into an existing `folder`; returns
    the meta (`meta` adds to it: table versions)."""
    typed = PipelineConfig.from_dict(config)  # refuses a config with a missing field
    k, counts = typed.k, typed.candidates
    global_tx, customers, articles = inputs.global_tx, inputs.customers, inputs.articles
    rows: dict[str, int] = {}
    computed = inputs.article_features
    if computed is None or computed.where(F.col("as_of_week") == week).limit(1).count() == 0:
        computed = article_features(global_tx, customers, articles, [week])
    item_features = computed.where(F.col("as_of_week") == week).select(
        "article_id",
        *[c for c in BASE_ARTICLE_FEATURES if c != "article_mean_price"],
        F.col("mean_price").alias("article_mean_price"),
    )
    sold = global_tx.where(week_col(F.col("t_dat")) < week).select("article_id").distinct()
    catalogue = (
        articles.select(  # what interactions match on (the ranker's copies come from the features)
            "article_id",
            F.col("product_code").alias("attr_product"),
            F.col("product_type_no").alias("attr_type"),
            F.col("colour_group_code").alias("attr_colour"),
            F.col("department_no").alias("attr_department"),
            F.col("index_group_no").alias("attr_index_group"),
        )
        .join(item_features, "article_id", "left")
        .join(
            article_sales(global_tx, week, 4).withColumnRenamed("sales", "sales_4w_source"),
            "article_id",
            "left",
        )
        .join(decayed_sales(global_tx, week), "article_id", "left")
        .join(product_columns(global_tx, articles, week), "article_id", "left")
        .join(sold.withColumn("has_sold", F.lit(True)), "article_id", "left")
        .fillna(False, ["has_sold"])
        .fillna(0.0, ["decayed_sales"])
    )
    if inputs.availability is not None:
        catalogue = catalogue.join(
            inputs.availability.select("article_id", "in_stock", "regions", "min_age"), "article_id", "left"
        )
    rows["articles"] = write_rows(catalogue, folder, "articles")
    depth = max(FALLBACK_DEPTH * k, counts.age_band)
    popular_depth = max(k, counts.popular)

    def listed(df: DataFrame, name: str, band: F.Column | None = None) -> DataFrame:
        return df.withColumn("band", band if band is not None else F.col("band")).withColumn(
            "list", F.lit(name)
        )

    no_band = F.lit(None).cast("int")
    tops = (
        listed(trending_top(global_tx, week, max(k, counts.trending)), "trending", no_band)
        .unionByName(listed(age_band_tops(global_tx, customers, week, depth), "age_band"))
        .unionByName(listed(decayed_top(global_tx, week, popular_depth), "decayed_popularity", no_band))
    )
    if counts.favourite_type > 0:
        tops = tops.unionByName(
            listed(type_tops(global_tx, articles, week, TYPE_LIST_DEPTH * counts.favourite_type), "type")
        )
    tops = tops.select("list", "band", "article_id", "source_rank", F.col("source_score").cast("double"))
    rows["tops"] = write_rows(tops, folder, "tops")
    if counts.bought_together > 0:
        pairs = bought_together_pairs(global_tx, week, PAIR_WEEKS, counts.bought_together)
        rows["pairs"] = write_rows(pairs, folder, "pairs")
    if inputs.similar is not None:
        rows["similar"] = write_rows(visual_pairs(inputs.similar), folder, "similar")
    meta = {
        "week": week,
        "week_start": str(first_day(week)),
        **(meta or {}),
        "has_availability": inputs.availability is not None,
        "has_similar": inputs.similar is not None,
        "has_pairs": "pairs" in rows,
        "pipeline": config,
        "rows": rows,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def global_key(
    spark: SparkSession, tables: TableLocator, state: dict[str, Any], config: dict[str, Any]
) -> str:
    """What the global half is a function of: the week, the transactions and customers versions it is read
    at, the tables it reads at their latest (articles, availability, neighbours: id and version), the
    pipeline config and this package's version. Daily runs keep the week and the global version, so
    batch scoring and register compute the global half once per training, not once per task."""
    parts = {
        "week": int(state["week"]),
        "transactions": f"{table_id(spark, tables, Tables.TRANSACTIONS)}@{int(state['global_version'])}",
        "customers": f"{table_id(spark, tables, Tables.CUSTOMERS)}@{int(state['customers_version'])}",
        **{
            table: table_identity(spark, tables, table)
            for table in (Tables.ARTICLES, Tables.ARTICLE_AVAILABILITY, Tables.SIMILAR_ARTICLES)
        },
        "config": config,
        "package": __version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached_global_part(
    spark: SparkSession,
    tables: TableLocator,
    state: dict[str, Any],
    config: dict[str, Any],
    folder: Path,
    versions: dict[str, Any],
    cache_root: Path,
) -> dict[str, Any]:
    """`write_global_part` into `folder`, or a copy of the cached one computed from the same inputs; a new
    one is cached (staged, then renamed: a half-written entry is never read) and older entries pruned."""
    cached = cache_root / global_key(spark, tables, state, config)
    if not cached.is_dir():
        week = int(state["week"])
        write_global_part(global_inputs(spark, tables, state), week, config, folder, versions)
        staging = cache_root / f".{cached.name}.tmp-{uuid.uuid4().hex[:8]}"
        shutil.copytree(folder, staging)
        try:
            staging.rename(cached)
        except OSError:  # another run cached the same inputs first
            shutil.rmtree(staging, ignore_errors=True)
        entries = [entry for entry in cache_root.iterdir() if not entry.name.startswith(".")]
        for old in sorted(entries, key=lambda entry: entry.stat().st_mtime)[:-KEEP_GLOBAL]:
            shutil.rmtree(old, ignore_errors=True)
        return json.loads((folder / "meta.json").read_text())
    for file in cached.iterdir():
        shutil.copy2(file, folder / file.name)
    cached.touch()  # recently used: kept by the pruning above
    meta = json.loads((folder / "meta.json").read_text()) | versions
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def _personal_base(state: dict[str, Any], table_ids: list[str], base: Path | None) -> dict[str, Any] | None:
    """The meta of an earlier snapshot whose personal half can be brought up to `state` by recomputing only
    the customers changed since (None when it cannot): the same week, tables (their Delta ids) and package
    version, versions no newer than `state`'s, and every purchase of its transactions version in its
    histories (then a later end of the histories adds rows only for customers with new purchases).
    `table_ids`: `_personal_tables` now."""
    if base is None or not (base / "meta.json").exists():
        return None
    meta = json.loads((base / "meta.json").read_text())
    personal = meta.get("personal")
    if not personal or not personal["complete"] or int(meta["week"]) != int(state["week"]):
        return None
    usable = (
        personal["tables"] == table_ids
        and personal.get("package") == __version__  # the rows' code: another version recomputes them all
        and int(meta["transactions_version"]) <= int(state["transactions_version"])
        and int(meta["customers_version"]) <= int(state["customers_version"])
        and int(personal["history_week"]) <= history_week(state)
    )
    return meta if usable else None


def _personal_tables(spark: SparkSession, tables: TableLocator) -> list[str]:
    """The Delta ids of the tables the personal half reads (a rebuilt table restarts its versions)."""
    return [str(table_id(spark, tables, t)) for t in (Tables.TRANSACTIONS, Tables.CUSTOMERS)]


def _replace_rows(base_file: Path, new_rows: DataFrame, changed: list[str], folder: Path, name: str) -> int:
    """`folder`/`name`.parquet: the rows of `base_file` whose customer is not in `changed`, then
    `new_rows` (the changed customers' rows), streamed one row group at a time. Returns the rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    fresh = folder / f".{name}.changed.parquet"
    write_rows(new_rows, folder, fresh.stem)
    leaving = pa.array(changed, pa.string())
    rows = 0
    base, update = pq.ParquetFile(base_file), pq.ParquetFile(fresh)
    with pq.ParquetWriter(folder / f"{name}.parquet", base.schema_arrow) as writer:
        for group in range(base.num_row_groups):
            part = base.read_row_group(group)
            part = part.filter(pc.invert(pc.is_in(part["customer_id"], value_set=leaving)))
            writer.write_table(part)
            rows += part.num_rows
        for group in range(update.num_row_groups):
            part = update.read_row_group(group).cast(base.schema_arrow)
            writer.write_table(part)
            rows += part.num_rows
    fresh.unlink()
    return rows


def _write_personal_part(
    spark: SparkSession, tables: TableLocator, state: dict[str, Any], folder: Path, base: Path | None
) -> dict[str, Any]:
    """purchases.parquet and customers.parquet for `state` into `folder`: from the snapshot in `base`
    where it allows (`_personal_base`), copying its rows of unchanged customers and computing only the
    changed customers' rows (a daily refresh touches ~1% of them). Returns the rows written per file
    and the facts a later refresh needs."""
    tx_version, customers_version = int(state["transactions_version"]), int(state["customers_version"])
    week, histories = int(state["week"]), history_week(state)
    transactions = read_table(spark, tables, Tables.TRANSACTIONS, version=tx_version)
    personal = transactions
    people = read_table(spark, tables, Tables.CUSTOMERS, version=customers_version)
    articles = read_table(spark, tables, Tables.ARTICLES)
    table_ids = _personal_tables(spark, tables)
    base_meta = _personal_base(state, table_ids, base)
    changed: list[str] | None = None
    if base_meta is not None:
        since = (int(base_meta["transactions_version"]), int(base_meta["customers_version"]))
        ids = changed_customers(spark, tables, since, (tx_version, customers_version)).toArrow()
        changed = ids.column("customer_id").to_pylist()
        keys = spark.createDataFrame(ids) if changed else spark.createDataFrame([], "customer_id string")
        personal = personal.join(F.broadcast(keys), "customer_id", "left_semi")
        people = people.join(F.broadcast(keys), "customer_id", "left_semi")
    rows: dict[str, int] = {}
    for name, df in (
        ("purchases", purchase_rows(personal, histories)),
        ("customers", customer_rows(personal, people, articles, week)),
    ):
        if changed is None:
            rows[name] = write_rows(df, folder, name)
        else:
            assert base is not None
            rows[name] = _replace_rows(base / f"{name}.parquet", df, changed, folder, name)
    rows["streamed"] = write_streamed(transactions, histories, folder)
    latest = transactions.agg(F.max("t_dat")).first()[0]
    return {
        "rows": rows,
        "personal": {
            "history_week": histories,
            "complete": latest is None or week_of(latest) < histories,
            "tables": table_ids,
            "package": __version__,
            "recomputed_customers": None if changed is None else len(changed),
        },
    }


def build_snapshot(
    spark: SparkSession,
    tables: TableLocator,
    artifacts_dir: str | Path,
    out: str | Path,
    state: dict[str, Any] | None = None,
    customers: bool = True,
) -> dict[str, Any]:
    """Write the snapshot folder `out` atomically (a staging folder renamed at the end), for `state`
    (default: what batch scoring last used); without `customers`, only its global half."""
    state = state or scoring_snapshot(spark, tables)
    out = Path(out)
    staging = out.with_name(f"{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    config = json.loads((Path(artifacts_dir) / CONFIG_FILE).read_text())
    versions = {
        "transactions_version": int(state["transactions_version"]),
        "customers_version": int(state["customers_version"]),
        "global_version": int(state["global_version"]),
        "model_version": state["model_version"],
    }
    cache_root = Path(artifacts_dir) / GLOBAL_CACHE
    cache_root.mkdir(parents=True, exist_ok=True)
    meta = _cached_global_part(spark, tables, state, config, staging, versions, cache_root)
    if customers:
        # The last snapshot in `out` is the base a daily refresh updates (`_personal_base` decides).
        part = _write_personal_part(spark, tables, state, staging, out if out.is_dir() else None)
        meta["rows"] |= part["rows"]
        meta["personal"] = part["personal"]
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return meta
