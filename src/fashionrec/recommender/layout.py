"""Names the recommender core and its callers agree on: candidate sources, ranker features, artifact paths.

A candidate row carries each source's rank and score (`rank_<source>`, `score_<source>`; ABSENT_RANK and
NaN where the source did not propose the article), so the ranker learns how far to trust each source.
"""

from __future__ import annotations

from pathlib import Path

SOURCES = (
    "two_tower",  # ANN neighbours of the query tower's embedding
    "repurchase",  # the customer's own recent articles
    "same_product",  # other colours of products the customer bought
    "trending",  # last week's best sellers
    "age_band",  # best sellers among customers of the same age band
    "visual",  # never-sold lookalikes of recent purchases (cold start)
    "popular",  # time-decayed best sellers (the baseline's list, deeper)
    "bought_together",  # articles other customers bought with the customer's recent articles
    "favourite_type",  # best sellers of the customer's product types, weighted by type, colour, department
)
RANDOM_SOURCE = "random"  # training-only easy negatives: no rank column, so serving never differs
ABSENT_RANK = 999  # rank feature of a source that did not propose the article
FALLBACK_DEPTH = 4  # fallback lists draw from this many times k best sellers, before the filters

RANKER_DIR = Path("ranking") / "ranker"
CONFIG_FILE = Path("ranking") / "pipeline.json"
QUALITY_FILE = Path("ranking") / "quality.json"
QUERY_FILE = "query_embeddings.npz"  # in a serving snapshot: every warm customer's query embedding
# In a snapshot: the stream events whose purchases its histories hold (the online store's later events are
# news to it; these are not, so nothing is counted twice).
STREAMED_FILE = "streamed.parquet"
GALLERY_FILE = "photo_gallery.npz"  # in a serving snapshot: every article's image embedding (search by photo)


# Columns of the feature tables (`features.customer` / `features.article`, point in time) ...
CUSTOMER_TABLE_FEATURES = [
    "age",
    "days_since_last_purchase",
    "n_purchases_1w",
    "n_purchases_4w",
    "n_purchases_12w",
    "n_purchases_all",
    "spend_4w",
    "online_share",
    "customer_mean_price",
]
ARTICLE_TABLE_FEATURES = [
    "sales_1w",
    "sales_4w",
    "sales_all",
    "trend",
    "weeks_on_sale",
    "article_mean_price",
    "mean_buyer_age",
    "product_type_no",
    "index_group_no",
    "garment_group_no",
    "colour_group_code",
    "graphical_appearance_no",
]
# ... and what the snapshot (`snapshot.lists`) or the core add to them.
CUSTOMER_FEATURES = [
    *CUSTOMER_TABLE_FEATURES,
    "repeat_share",  # share of the customer's purchases that repeat an article they had bought
]
ARTICLE_FEATURES = [
    *ARTICLE_TABLE_FEATURES,
    "decayed_sales",  # sales weighted by 0.5 ** (days before the week / 7), last 8 weeks
    "product_sales_4w",  # sales of all colours of the product, last 4 weeks
    "product_weeks_on_sale",  # weeks since any colour of the product first sold
    "repeat_rate",  # share of the article's buyers who bought it more than once
]
INTERACTION_FEATURES = [
    "n_bought_article",
    "n_bought_product",
    "n_bought_type",
    "n_bought_colour",
    "n_bought_department",
    "n_bought_index_group",
    "type_share",
    "department_share",
    "colour_share",
    "index_group_share",
    "days_since_article",
    "days_since_product",
    "price_ratio",
    "age_gap",
    "visual_similarity",
]
SOURCE_FEATURES = [f"rank_{s}" for s in SOURCES] + [f"score_{s}" for s in SOURCES] + ["n_sources"]
FEATURES = SOURCE_FEATURES + CUSTOMER_FEATURES + ARTICLE_FEATURES + INTERACTION_FEATURES
