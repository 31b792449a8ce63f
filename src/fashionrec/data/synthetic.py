"""An H&M-shaped synthetic data set with real signal, written exactly in the Kaggle file formats.

The latent model (all of it saved to `truth.npz`, so an oracle can rank by true propensities):
- articles: products of a product type sold under an index, 1-8 colour variants each
  (`article_id = product_code * 1000 + variant`), power-law popularity, launches spread over time,
  a life cycle that fades with a per-product half-life, summer/winter seasonality, short viral boosts;
- customers: an age that shapes taste over index groups (Divided for the young, Ladieswear, Menswear,
  children's wear for parents, Sport), a sparse taste over product types and colours, a purchase rate
  (log-normal), a repurchase habit (same article or the same product in another colour), an online share,
  and an active window (new customers join, some go quiet for months);
- transactions: weekly visits with baskets of several items on one day and channel, a weekly volume
  cycle, each new item drawn as index x product type (customer taste x what is in the shops that week),
  then colour (taste), then article (popularity that week).

Deterministic under a seed; each week has its own random stream, so chunking does not change output.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm import tqdm

from fashionrec.data import vocabulary as V
from fashionrec.data.availability import region_index, synthetic_availability
from fashionrec.data.daily import split_last_days
from fashionrec.data.images import RENDER_VERSION, write_images

GENERATOR_VERSION = 6  # 5: shoppers measured against real ones; 6: tastes as weak as real ones (realism)
END_DATE = date(2020, 9, 22)  # last day of the Kaggle transactions; weeks run Wednesday to Tuesday
HISTORY_SLOTS = 12  # recent purchases remembered per customer for repurchases
MEAN_BASKET = 3.0  # items per visit
SAME_ARTICLE_SHARE = 0.15  # a repurchase is the same article, else another colour of the same product
REPEAT_BETA = (1.5, 14.0)  # per-customer repurchase habit ~ Beta: 10% of items on average
PRICE_SCALE = 590.0  # Kaggle prices are SEK / 590 (approximately)
# Popularity shape: log-normal base demand, slow fading. With the `small` scale below, 721 random
# generated customers match 721 real ones (`../shared/hm_real_dev`) within 25% on repeat purchases of an
# article / a product, last week's top-12 share, activity, purchases per active week, the Gini of article
# sales, prices, the online share and the strength of tastes (`python -m benchmarks --only realism`).
POPULARITY_SIGMA = 0.75
HALF_LIFE_WEEKS = 12.0
FADE_FLOOR = 0.15


@dataclass(frozen=True)
class Taste:
    """How far a shopper's index, product-type and colour preferences stray from the population's: the
    scale of the index logits (age and sex effects included) and the spread of the personal
    log-preferences over product types and colours."""

    index_scale: float
    type_sigma: float
    colour_sigma: float


# Fitted so that a purchase falls in the shopper's favourite index group, product type and colour group
# about as much more often than chance as at H&M (the realism benchmark's taste_* figures); version 5's
# STRONG_TASTE made them 1.8x / 1.1x / 1.3x as strong as the real shoppers'.
REAL_TASTE = Taste(index_scale=0.3, type_sigma=0.8, colour_sigma=0.45)
STRONG_TASTE = Taste(index_scale=1.0, type_sigma=1.0, colour_sigma=1.0)


@dataclass(frozen=True)
class Scale:
    name: str
    customers: int
    articles: int
    weeks: int
    items_per_customer_week: float
    taste: Taste = REAL_TASTE


SCALES: dict[str, Scale] = {
    # `tiny` is the tests' world: 800 heavy shoppers, where a job graph must find taste to learn from in
    # seconds, so its tastes stay strong; `small` and `full` are fitted to real shoppers.
    "tiny": Scale("tiny", 800, 400, 12, 0.6, STRONG_TASTE),
    "small": Scale("small", 45_000, 24_000, 26, 0.14),
    "full": Scale("full", 1_371_980, 105_542, 105, 0.221),
}


def week_start(weeks: int, week: int) -> date:
    """First day (a Wednesday) of generated week `week` of `weeks`, ending on END_DATE."""
    return END_DATE - timedelta(days=7 * (weeks - week) - 1)


# ----------------------------------------------------------------------------------------- catalogue
@dataclass
class Catalogue:
    frame: pd.DataFrame  # articles.csv rows
    product: np.ndarray  # product index per article
    cell: np.ndarray  # index x product type cell per article
    master: np.ndarray  # perceived colour master position per article
    base_pop: np.ndarray
    launch: np.ndarray  # launch week (may be negative: launched before the window)
    halflife: np.ndarray  # weeks
    season: np.ndarray  # +1 summer ... -1 winter
    boost_week: np.ndarray  # start of a 3-week viral boost, or -1000
    price: np.ndarray  # typical price, Kaggle scale
    variant_start: np.ndarray  # per product: first article position
    variant_count: np.ndarray  # per product: number of variants

    def popularity(self, week: int, weeks: int) -> np.ndarray:
        """Relative demand for each article in `week` (0 before launch)."""
        age = week - self.launch
        ramp = np.clip((age + 1) / 2.0, 0.0, 1.0)
        fade = np.power(0.5, np.maximum(age, 0) / self.halflife)
        woy = (week_start(weeks, week).isocalendar()[1] - 28) / 52.0
        seasonal = np.exp(0.8 * self.season * math.cos(2 * math.pi * woy))
        boosted = np.where((week >= self.boost_week) & (week < self.boost_week + 3), 4.0, 1.0)
        return np.where(age >= 0, self.base_pop * ramp * (FADE_FLOOR + fade) * seasonal * boosted, 0.0)


MASTERS = sorted({c[4] for c in V.COLOURS})


def make_catalogue(rng: np.random.Generator, n_articles: int, weeks: int) -> Catalogue:
    types = V.PRODUCT_TYPES
    counts: list[int] = []
    while sum(counts) < n_articles:
        counts.append(int(min(8, 1 + rng.geometric(0.5) - 1 + (rng.random() < 0.3))))
    counts[-1] -= sum(counts) - n_articles
    counts = [c for c in counts if c > 0]
    n_products = len(counts)

    type_share = np.array([t.share for t in types])
    p_type = rng.choice(len(types), n_products, p=type_share / type_share.sum())
    p_index = np.empty(n_products, dtype=np.int64)
    index_pos = {ix.code: i for i, ix in enumerate(V.INDEXES)}
    for i, t in enumerate(p_type):
        codes = types[t].indexes
        w = 0.55 ** np.arange(len(codes))
        p_index[i] = index_pos[codes[rng.choice(len(codes), p=w / w.sum())]]
    app_w = np.array([a[2] for a in V.APPEARANCES])
    p_app = rng.choice(len(V.APPEARANCES), n_products, p=app_w / app_w.sum())
    p_launch = np.where(
        rng.random(n_products) < 0.35, rng.integers(-60, 0, n_products), rng.integers(0, weeks, n_products)
    )
    order = np.argsort(p_launch, kind="stable")  # older products have smaller product codes, as at H&M
    codes_sorted = np.sort(rng.choice(np.arange(108_000, 960_000), n_products, replace=False))
    p_code = np.empty(n_products, dtype=np.int64)
    p_code[order] = codes_sorted
    p_pop = rng.lognormal(0.0, POPULARITY_SIGMA, n_products)
    basics = np.isin([types[t].garment for t in p_type], ["jersey_basic", "underwear", "socks"])
    p_half = rng.lognormal(math.log(HALF_LIFE_WEEKS), 0.6, n_products) * np.where(basics, 4.0, 1.0)
    p_word = rng.integers(0, len(V.NAME_WORDS), n_products)
    p_mat = rng.integers(0, len(V.MATERIALS), n_products)
    p_det = rng.integers(0, len(V.DETAILS), n_products)
    p_section = rng.integers(0, 100, n_products)
    p_price = np.array([types[t].price for t in p_type]) * rng.lognormal(0.0, 0.25, n_products)

    colour_w = np.array([c[6] for c in V.COLOURS])
    rows: list[dict[str, Any]] = []
    product_of, pop, master = [], [], []
    variant_start = np.zeros(n_products, dtype=np.int64)
    departments: dict[tuple[str, str], int] = {}
    for p in range(n_products):
        t, ix = types[p_type[p]], V.INDEXES[p_index[p]]
        gg_no, gg_name = V.GARMENT_GROUPS[t.garment]
        dept_no = departments.setdefault((t.garment, ix.code), 1200 + 17 * len(departments))
        sec_no, sec_name = ix.sections[p_section[p] % len(ix.sections)]
        app_no, app_name, _ = V.APPEARANCES[p_app[p]]
        n_var = counts[p]
        colours = rng.choice(len(V.COLOURS), n_var, replace=False, p=colour_w / colour_w.sum())
        variants = np.sort(rng.choice(np.arange(1, 60), n_var, replace=False))
        shares = np.sort(rng.dirichlet(np.full(n_var, 0.8)))[::-1]
        variant_start[p] = len(rows)
        name = f"{V.NAME_WORDS[p_word[p]]} {t.noun}"
        desc = f"{V.MATERIALS[p_mat[p]]} {t.noun} with {V.DETAILS[p_det[p]]}."
        if rng.random() < 0.004:
            desc = None
        for v, c, s in zip(variants, colours, shares, strict=True):
            code, cname, val_id, val_name, m_id, m_name, _ = V.COLOURS[c]
            rows.append(
                {
                    "article_id": f"{p_code[p] * 1000 + v:010d}",
                    "product_code": int(p_code[p]),
                    "prod_name": name,
                    "product_type_no": t.no,
                    "product_type_name": t.name,
                    "product_group_name": t.group,
                    "graphical_appearance_no": app_no,
                    "graphical_appearance_name": app_name,
                    "colour_group_code": code,
                    "colour_group_name": cname,
                    "perceived_colour_value_id": val_id,
                    "perceived_colour_value_name": val_name,
                    "perceived_colour_master_id": m_id,
                    "perceived_colour_master_name": m_name,
                    "department_no": dept_no,
                    "department_name": f"{gg_name} {ix.group_name}",
                    "index_code": ix.code,
                    "index_name": ix.name,
                    "index_group_no": ix.group_no,
                    "index_group_name": ix.group_name,
                    "section_no": sec_no,
                    "section_name": sec_name,
                    "garment_group_no": gg_no,
                    "garment_group_name": gg_name,
                    "detail_desc": desc,
                }
            )
            product_of.append(p)
            pop.append(p_pop[p] * s)
            master.append(MASTERS.index(m_id))
    product = np.array(product_of)
    n = len(rows)
    boost = np.where(rng.random(n) < 0.03, rng.integers(0, weeks, n), -1000)
    return Catalogue(
        frame=pd.DataFrame(rows),
        product=product,
        cell=p_index[product] * len(types) + p_type[product],
        master=np.array(master),
        base_pop=np.array(pop),
        launch=p_launch[product],
        halflife=p_half[product],
        season=np.array([types[t].season for t in p_type])[product],
        boost_week=boost,
        price=p_price[product],
        variant_start=variant_start,
        variant_count=np.array(counts),
    )


# ----------------------------------------------------------------------------------------- customers
@dataclass
class Customers:
    frame: pd.DataFrame  # customers.csv rows
    index_pref: np.ndarray  # (n, indexes)
    type_pref: np.ndarray  # (n, product types)
    colour_pref: np.ndarray  # (n, colour masters)
    rate: np.ndarray  # expected items per active week
    repeat: np.ndarray  # probability that an item is a repurchase
    online: np.ndarray  # probability of buying online
    start: np.ndarray  # first active week
    end: np.ndarray  # first inactive week


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_customers(
    rng: np.random.Generator, n: int, weeks: int, items_per_week: float, taste: Taste
) -> Customers:
    mix = rng.random(n)
    age = np.where(
        mix < 0.55, rng.normal(26, 5, n), np.where(mix < 0.85, rng.normal(50, 9, n), rng.uniform(16, 80, n))
    )
    age = np.clip(np.round(age), 16, 99)
    man = rng.random(n) < 0.12
    parent = rng.random(n) < np.where((age >= 26) & (age <= 45), 0.35, 0.08)
    sporty = rng.random(n) < 0.10
    codes = [ix.code for ix in V.INDEXES]
    logits = rng.normal(0, 0.7, (n, len(codes)))

    def add(code: str, value: np.ndarray | float) -> None:
        logits[:, codes.index(code)] += value

    young = age < 28
    add("A", np.where((age >= 25) & ~man, 1.5, 0.0) - 3 * man)
    add("B", 0.5 - 3 * man)
    add("C", 0.2 - 3 * man)
    add("D", np.where(young, 2.0, np.where(age < 36, 0.5, -1.0)))
    add("F", np.where(man, 3.5, -2.0))
    for code in "GHIJ":
        add(code, np.where(parent, 2.0, -1.5))
    add("S", np.where(sporty, 2.0, -1.0))
    type_share = np.array([t.share for t in V.PRODUCT_TYPES])
    type_pref = np.exp(rng.normal(0, 1.0, (n, len(type_share))) * taste.type_sigma) * type_share
    master_w = np.array([sum(c[6] for c in V.COLOURS if c[4] == m) for m in MASTERS])
    colour_pref = np.exp(rng.normal(0, 1.0, (n, len(MASTERS))) * taste.colour_sigma) * master_w
    rate = rng.lognormal(0, 1.0, n)
    start = np.where(rng.random(n) < 0.25, rng.integers(0, weeks, n), 0)
    end = np.where(rng.random(n) < 0.2, start + rng.integers(1, weeks + 1, n), weeks + 1000)
    # Calibrate so the expected number of items over all customer-weeks is items_per_week * n * weeks.
    volume = np.cumsum([0.0] + [weekly_volume(weeks, w) for w in range(weeks)])
    active_volume = volume[np.minimum(end, weeks)] - volume[np.minimum(start, weeks)]
    rate *= items_per_week * n * weeks / float((rate * active_volume).sum())

    fn = rng.random(n) < np.where(young, 0.45, 0.3)
    active = np.where(fn, rng.random(n) < 0.97, rng.random(n) < 0.01)
    club = rng.choice(
        np.array(["ACTIVE", "PRE-CREATE", "LEFT CLUB", ""], dtype=object),
        n,
        p=[0.9275, 0.0677, 0.0004, 0.0044],
    )
    news = np.where(
        fn,
        np.where(rng.random(n) < 0.98, "Regularly", "Monthly"),
        np.where(rng.random(n) < 0.985, "NONE", ""),
    )
    n_postal = max(1, n // 4)
    postal_pool = _hex_ids(rng, n_postal)
    postal = np.where(rng.random(n) < 0.08, postal_pool[0], postal_pool[rng.zipf(1.6, n) % n_postal])
    missing_age = rng.random(n) < 0.012
    frame = pd.DataFrame(
        {
            "customer_id": _hex_ids(rng, n),
            "FN": np.where(fn, 1.0, np.nan),
            "Active": np.where(active, 1.0, np.nan),
            "club_member_status": club,
            "fashion_news_frequency": news,
            "age": np.where(missing_age, np.nan, age),
            "postal_code": postal,
        }
    )
    return Customers(
        frame=frame,
        index_pref=_softmax(logits * taste.index_scale).astype(np.float32),
        type_pref=(type_pref / type_pref.sum(axis=1, keepdims=True)).astype(np.float32),
        colour_pref=(colour_pref / colour_pref.sum(axis=1, keepdims=True)).astype(np.float32),
        rate=rate,
        repeat=rng.beta(*REPEAT_BETA, n),
        online=rng.beta(4, 2, n),
        start=start,
        end=end,
    )


def _hex_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    raw = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    return np.array([row.tobytes().hex() for row in raw], dtype=object)


# ----------------------------------------------------------------------------------------- purchases
WEEKDAY_WEIGHTS = np.array([0.13, 0.13, 0.14, 0.16, 0.17, 0.15, 0.12])  # Wednesday ... Tuesday


def weekly_volume(weeks: int, week: int) -> float:
    """Shop-wide demand multiplier: a yearly cycle with a late-November peak."""
    start = week_start(weeks, week)
    woy = start.isocalendar()[1]
    peak = 1.6 if woy in (47, 48) else 1.0
    return peak * (1.0 + 0.2 * math.sin(2 * math.pi * (woy - 10) / 52.0))


class _History:
    """The last HISTORY_SLOTS purchases of every customer (ring buffer), for repurchases."""

    def __init__(self, n: int) -> None:
        self.items = np.full((n, HISTORY_SLOTS), -1, dtype=np.int32)
        self.count = np.zeros(n, dtype=np.int64)

    def pick(self, customers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        filled = np.minimum(self.count[customers], HISTORY_SLOTS)
        slot = (rng.random(len(customers)) * filled).astype(np.int64)
        return self.items[customers, slot]

    def add(self, customers: np.ndarray, articles: np.ndarray) -> None:
        order = np.argsort(customers, kind="stable")
        c, a = customers[order], articles[order]
        first = np.r_[0, np.flatnonzero(np.diff(c)) + 1]
        rank = np.arange(len(c)) - np.repeat(first, np.diff(np.r_[first, len(c)]))
        pos = (self.count[c] + rank) % HISTORY_SLOTS
        self.items[c, pos] = a
        np.add.at(self.count, c, 1)


def _choose(prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of an (unnormalised) probability matrix."""
    cum = np.cumsum(prob, axis=1)
    u = rng.random(len(prob)) * cum[:, -1]
    return (cum < u[:, None]).sum(axis=1)


def _new_items(
    cat: Catalogue, cus: Customers, who: np.ndarray, pop: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    n_types, n_masters = len(V.PRODUCT_TYPES), len(MASTERS)
    n_cells = len(V.INDEXES) * n_types
    groups = cat.cell * n_masters + cat.master
    group_mass = np.bincount(groups, weights=pop, minlength=n_cells * n_masters).reshape(n_cells, n_masters)
    cell_mass = group_mass.sum(axis=1).reshape(len(V.INDEXES), n_types)
    order = np.argsort(groups, kind="stable")
    cum_pop = np.cumsum(pop[order])
    group_first = np.searchsorted(groups[order], np.arange(n_cells * n_masters))
    before = np.where(group_first > 0, cum_pop[np.maximum(group_first - 1, 0)], 0.0)
    out = np.empty(len(who), dtype=np.int64)
    for lo in range(0, len(who), 20_000):
        c = who[lo : lo + 20_000]
        p_cell = np.einsum("bi,bt,it->bit", cus.index_pref[c], cus.type_pref[c], cell_mass).reshape(
            len(c), -1
        )
        cell = _choose(p_cell, rng)
        m = _choose(cus.colour_pref[c] * group_mass[cell], rng)
        g = cell * n_masters + m
        target = before[g] + rng.random(len(c)) * group_mass[cell, m]
        pos = np.minimum(np.searchsorted(cum_pop, target, side="right"), len(order) - 1)
        out[lo : lo + len(c)] = order[pos]
    return out


def generate_week(
    week: int, weeks: int, cat: Catalogue, cus: Customers, history: _History, seed: int
) -> pd.DataFrame:
    """All transactions of one week, as Kaggle rows (customer and article positions until written)."""
    rng = np.random.default_rng([seed, 1_000 + week])
    pop = cat.popularity(week, weeks)
    active = (week >= cus.start) & (week < cus.end)
    visits = rng.poisson(cus.rate * active * weekly_volume(weeks, week) / MEAN_BASKET)
    visitor = np.repeat(np.arange(len(visits)), visits)
    size = 1 + rng.poisson(MEAN_BASKET - 1, len(visitor))
    day = rng.choice(7, len(visitor), p=WEEKDAY_WEIGHTS)
    online = rng.random(len(visitor)) < cus.online[visitor]
    who = np.repeat(visitor, size)
    item_day = np.repeat(day, size)
    item_channel = np.repeat(np.where(online, 2, 1), size)

    articles = np.empty(len(who), dtype=np.int64)
    repeat = (rng.random(len(who)) < cus.repeat[who]) & (history.count[who] > 0)
    if repeat.any():
        earlier = history.pick(who[repeat], rng).astype(np.int64)
        # Another colour: one of the product's other variants (the same one when it has no other).
        first, count = cat.variant_start[cat.product[earlier]], cat.variant_count[cat.product[earlier]]
        shift = 1 + (rng.random(len(earlier)) * np.maximum(count - 1, 1)).astype(np.int64)
        other = first + (earlier - first + shift) % count
        same = rng.random(len(earlier)) < SAME_ARTICLE_SHARE
        articles[repeat] = np.where(same, earlier, other)
    if (~repeat).any():
        articles[~repeat] = _new_items(cat, cus, who[~repeat], pop, rng)
    history.add(who, articles)

    discount = np.where(rng.random(len(who)) < 0.2, rng.uniform(0.5, 0.8, len(who)), 1.0)
    sek = np.round(cat.price[articles] * PRICE_SCALE * discount, 1) + 0.09
    start = week_start(weeks, week)
    dates = np.array([(start + timedelta(days=int(d))).isoformat() for d in range(7)], dtype=object)
    frame = pd.DataFrame(
        {
            "t_dat": dates[item_day],
            "customer": who,
            "article": articles,
            "price": np.round(sek / PRICE_SCALE, 16),
            "sales_channel_id": item_channel,
        }
    )
    return frame.sort_values(["t_dat", "customer"], kind="stable")


# ----------------------------------------------------------------------------------------- writing
def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".csv.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def generate(
    scale: str | Scale,
    out: str | Path,
    seed: int = 42,
    progress: bool = True,
    images: bool | None = None,
    daily_files: int = 0,
) -> dict[str, Any]:
    """Write articles.csv, customers.csv, transactions_train.csv, article_availability.csv and truth.npz
    under `out`, and product images under `out/images` (by default for every scale but `full`).
    With `daily_files` N, the last N days go to `out/arrivals/<day>.csv` instead (`data.daily`).

    Skips the work when `out` already holds the same scale, seed and daily split (see manifest.json).
    """
    sc = SCALES[scale] if isinstance(scale, str) else scale
    manifest = _generate_tables(sc, Path(out), seed, progress, daily_files)
    if images if images is not None else sc.name != "full":
        manifest["images"] = ensure_images(Path(out), progress)
    return manifest


def ensure_images(out: Path, progress: bool = True) -> int:
    """Render one image per article of `out/articles.csv` into `out/images` unless already complete."""
    marker = out / "images" / ".complete"
    articles = pd.read_csv(out / "articles.csv", dtype={"article_id": str})
    done = f"{len(articles)} images, renderer {RENDER_VERSION}"
    if marker.exists() and marker.read_text().strip() == done:
        return len(articles)
    rows = tqdm(
        articles.to_dict("records"), desc="rendering images", unit="image", disable=not progress, miniters=500
    )
    written = write_images(rows, out / "images")
    marker.write_text(done)
    return written


def _generate_tables(sc: Scale, out: Path, seed: int, progress: bool, daily_files: int = 0) -> dict[str, Any]:
    manifest_path = out / "manifest.json"
    wanted = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scale": asdict(sc),
        "daily_files": daily_files,
    }
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if {k: manifest.get(k, 0 if k == "daily_files" else None) for k in wanted} == wanted:
            return manifest
    out.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)

    rng = np.random.default_rng(seed)
    cat = make_catalogue(rng, sc.articles, sc.weeks)
    cus = make_customers(rng, sc.customers, sc.weeks, sc.items_per_customer_week, sc.taste)
    _write_csv(cat.frame, out / "articles.csv")
    _write_csv(cus.frame, out / "customers.csv")

    article_ids = cat.frame["article_id"].to_numpy(dtype=object)
    customer_ids = cus.frame["customer_id"].to_numpy(dtype=object)
    history = _History(sc.customers)
    customer_region = region_index(cus.frame["postal_code"].to_numpy())
    underage = cus.frame["age"].fillna(99).to_numpy() < 18
    buyer_regions = np.zeros(len(article_ids), dtype=np.int64)
    underage_buyers = np.zeros(len(article_ids), dtype=bool)
    last_week_sales = np.zeros(len(article_ids), dtype=np.int64)
    tmp = out / "transactions_train.csv.tmp"
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    rows = 0
    schema = pa.schema(
        [
            ("t_dat", pa.string()),
            ("customer_id", pa.string()),
            ("article_id", pa.string()),
            ("price", pa.float64()),
            ("sales_channel_id", pa.int64()),
        ]
    )
    weeks = tqdm(
        range(sc.weeks), desc=f"generating {sc.name} transactions", unit="week", disable=not progress
    )
    with open(tmp, "wb") as sink, pacsv.CSVWriter(sink, schema, write_options=options) as writer:
        sink.write((",".join(schema.names) + "\n").encode())  # Kaggle's header is unquoted
        for week in weeks:
            frame = generate_week(week, sc.weeks, cat, cus, history, seed)
            table = pa.table(
                {
                    "t_dat": frame["t_dat"].to_numpy(dtype=object),
                    "customer_id": customer_ids[frame["customer"].to_numpy()],
                    "article_id": article_ids[frame["article"].to_numpy()],
                    "price": frame["price"].to_numpy(),
                    "sales_channel_id": frame["sales_channel_id"].to_numpy(),
                },
                schema=schema,
            )
            writer.write_table(table)
            rows += len(frame)
            buyers, bought = frame["customer"].to_numpy(), frame["article"].to_numpy()
            known = customer_region[buyers] >= 0
            np.bitwise_or.at(buyer_regions, bought[known], 1 << customer_region[buyers[known]])
            underage_buyers[bought[underage[buyers]]] = True
            if week == sc.weeks - 1:
                last_week_sales = np.bincount(bought, minlength=len(article_ids))
    tmp.replace(out / "transactions_train.csv")
    availability = synthetic_availability(article_ids, buyer_regions, underage_buyers, last_week_sales, seed)
    _write_csv(availability, out / "article_availability.csv")

    np.savez_compressed(
        out / "truth.npz",
        customer_ids=customer_ids.astype(str),
        article_ids=article_ids.astype(str),
        index_pref=cus.index_pref,
        type_pref=cus.type_pref,
        colour_pref=cus.colour_pref,
        rate=cus.rate,
        repeat=cus.repeat,
        start=cus.start,
        end=cus.end,
        article_cell=cat.cell,
        article_master=cat.master,
        article_product=cat.product,
        popularity=np.stack([cat.popularity(w, sc.weeks) for w in range(sc.weeks + 2)]).astype(np.float32),
        volume=np.array([weekly_volume(sc.weeks, w) for w in range(sc.weeks + 2)]),
    )
    arrivals = [Path(p).name for p in split_last_days(out, daily_files)] if daily_files else []
    manifest = {
        **wanted,
        "arrivals": arrivals,
        "articles": len(cat.frame),
        "customers": len(cus.frame),
        "transactions": rows,
        "first_day": week_start(sc.weeks, 0).isoformat(),
        "last_day": END_DATE.isoformat(),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return manifest
