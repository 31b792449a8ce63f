"""Synthetic product images with real visual signal, in the Kaggle layout `images/<3 digits>/<id>.jpg`.

Each article is drawn from its metadata, deterministically: the silhouette from the product type (a
T-shirt has short sleeves, a sweater long ones, trousers two legs, a bag a handle), the colour from the
colour group, the pattern from the graphical appearance (stripes, dots, checks, melange, a front print).
Jitter keeps articles apart: the product's shape parameters vary per `product_code` (colour variants of
one product share them), and position, scale and lighting per article. So visual neighbours should share
product type and colour, which the similarity model is judged on.

Framed like retail product photos, so that a model trained on them transfers to real ones (measured on
H&M photos, docs/journal.md): the product fills most of the frame whatever its shape, and socks and
briefs are often shown as multipacks.
"""

from __future__ import annotations

import colorsys
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
RENDER_VERSION = 2  # 2: products fill the frame, multipacks; bump to re-render existing image folders
_SUPER = 2  # draw at twice the size, then downsample: smooth edges
FILL = (0.78, 0.92)  # share of the canvas the product's longer side spans, drawn per article
SHAPE_JITTER = 0.15  # per-product relative variation of every shape parameter
MULTIPACKS = {"sock": (2, 6, 0.7), "brief": (2, 5, 0.6)}  # kind: (fewest, most items, share of products)

# product type name -> (shape, parameters); parameters are fractions of the canvas
SHAPES: dict[str, tuple[str, dict[str, float]]] = {
    "T-shirt": ("top", {"sleeve": 0.25, "length": 0.62, "width": 0.42, "neck": 0.10}),
    "Top": ("top", {"sleeve": 0.12, "length": 0.55, "width": 0.38, "neck": 0.16}),
    "Vest top": ("top", {"sleeve": 0.0, "length": 0.60, "width": 0.34, "neck": 0.20}),
    "Blouse": ("top", {"sleeve": 0.45, "length": 0.60, "width": 0.44, "neck": 0.12}),
    "Shirt": ("top", {"sleeve": 0.55, "length": 0.66, "width": 0.42, "neck": 0.06, "placket": 1}),
    "Sweater": ("top", {"sleeve": 0.62, "length": 0.62, "width": 0.48, "neck": 0.08}),
    "Hoodie": ("top", {"sleeve": 0.62, "length": 0.64, "width": 0.48, "neck": 0.08, "hood": 1}),
    "Cardigan": ("top", {"sleeve": 0.60, "length": 0.66, "width": 0.46, "neck": 0.14, "placket": 1}),
    "Jacket": (
        "top",
        {"sleeve": 0.62, "length": 0.60, "width": 0.52, "neck": 0.12, "placket": 1, "collar": 1},
    ),
    "Blazer": (
        "top",
        {"sleeve": 0.62, "length": 0.68, "width": 0.50, "neck": 0.18, "placket": 1, "collar": 1},
    ),
    "Coat": ("top", {"sleeve": 0.64, "length": 0.86, "width": 0.52, "neck": 0.12, "placket": 1, "collar": 1}),
    "Bodysuit": ("top", {"sleeve": 0.15, "length": 0.70, "width": 0.36, "neck": 0.14, "crotch": 1}),
    "Underwear body": ("top", {"sleeve": 0.0, "length": 0.66, "width": 0.32, "neck": 0.20, "crotch": 1}),
    "Swimsuit": ("top", {"sleeve": 0.0, "length": 0.62, "width": 0.30, "neck": 0.22, "crotch": 1}),
    "Dress": ("dress", {"length": 0.84, "width": 0.36, "flare": 0.22}),
    "Pyjama set": ("set", {"length": 0.40, "width": 0.40}),
    "Garment Set": ("set", {"length": 0.36, "width": 0.44}),
    "Trousers": ("legs", {"length": 0.82, "width": 0.40, "gap": 0.04}),
    "Leggings/Tights": ("legs", {"length": 0.84, "width": 0.30, "gap": 0.02}),
    "Underwear Tights": ("legs", {"length": 0.80, "width": 0.26, "gap": 0.01}),
    "Shorts": ("legs", {"length": 0.36, "width": 0.42, "gap": 0.05}),
    "Skirt": ("skirt", {"length": 0.50, "width": 0.34, "flare": 0.22}),
    "Underwear bottom": ("brief", {"length": 0.26, "width": 0.46}),
    "Swimwear bottom": ("brief", {"length": 0.22, "width": 0.50}),
    "Bra": ("bra", {"width": 0.60}),
    "Bikini top": ("bra", {"width": 0.52}),
    "Socks": ("sock", {"length": 0.56}),
    "Boots": ("shoe", {"height": 0.50}),
    "Sneakers": ("shoe", {"height": 0.22}),
    "Bag": ("bag", {"width": 0.56, "height": 0.40}),
    "Hat/beanie": ("hat", {"width": 0.54}),
    "Scarf": ("scarf", {"width": 0.22}),
    "Earring": ("earring", {"radius": 0.10}),
    "Belt": ("belt", {"width": 0.80}),
    "Other accessories": ("bag", {"width": 0.30, "height": 0.30}),
}

_HUES = {
    "Black": (0.0, 0.0, 0.10),
    "White": (0.0, 0.0, 0.97),
    "Off White": (0.12, 0.10, 0.92),
    "Grey": (0.0, 0.0, 0.55),
    "Light Grey": (0.0, 0.0, 0.75),
    "Dark Grey": (0.0, 0.0, 0.32),
    "Beige": (0.10, 0.30, 0.78),
    "Light Beige": (0.10, 0.20, 0.86),
    "Blue": (0.60, 0.70, 0.70),
    "Dark Blue": (0.63, 0.75, 0.35),
    "Light Blue": (0.57, 0.40, 0.90),
    "Red": (0.99, 0.85, 0.80),
    "Dark Red": (0.98, 0.85, 0.45),
    "Pink": (0.93, 0.45, 0.92),
    "Light Pink": (0.93, 0.22, 0.96),
    "Light Orange": (0.07, 0.55, 0.97),
    "Yellow": (0.15, 0.85, 0.95),
    "Yellowish Brown": (0.09, 0.70, 0.55),
    "Greenish Khaki": (0.20, 0.45, 0.50),
    "Dark Green": (0.35, 0.70, 0.35),
    "Turquoise": (0.48, 0.65, 0.75),
    "Purple": (0.78, 0.55, 0.55),
    "Gold": (0.13, 0.65, 0.80),
    "Silver": (0.0, 0.0, 0.82),
}


def colour_rgb(colour_group_name: str) -> np.ndarray:
    """RGB (0..1) of a colour group name; unknown names get a stable colour from their hash."""
    h, s, v = _HUES.get(colour_group_name, (0.0, 0.0, 0.0))
    if colour_group_name not in _HUES:
        digest = sum(map(ord, colour_group_name or "?"))
        h, s, v = (digest % 97) / 97.0, 0.5, 0.6
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def _shape_polygons(kind: str, p: dict[str, float], size: float) -> list[list[tuple[float, float]]]:
    """Polygons (canvas coordinates) of one silhouette; 0.5 is the canvas centre."""

    def pts(*xy: tuple[float, float]) -> list[tuple[float, float]]:
        return [(x * size, y * size) for x, y in xy]

    cx = 0.5
    if kind == "top":
        w, length, sleeve, neck = p["width"], p["length"], p["sleeve"], p["neck"]
        top, bottom = 0.5 - length / 2, 0.5 + length / 2
        polys = [
            pts(
                (cx - w / 2, top),
                (cx - neck / 2, top),
                (cx, top + neck * 0.8),
                (cx + neck / 2, top),
                (cx + w / 2, top),
                (cx + w / 2, bottom),
                (cx - w / 2, bottom),
            )
        ]
        if sleeve > 0:
            for side in (-1, 1):
                x0 = cx + side * w / 2
                polys.append(
                    pts(
                        (x0, top),
                        (x0 + side * 0.14, top + 0.04 + sleeve * 0.55),
                        (x0 + side * 0.04, top + 0.08 + sleeve * 0.6),
                        (x0, top + 0.16),
                    )
                )
        if p.get("hood"):
            polys.append(pts((cx - 0.10, top), (cx, top - 0.12), (cx + 0.10, top)))
        if p.get("crotch"):
            polys.append(
                pts(
                    (cx - w / 2, bottom),
                    (cx + w / 2, bottom),
                    (cx + 0.06, bottom + 0.08),
                    (cx - 0.06, bottom + 0.08),
                )
            )
        return polys
    if kind in ("dress", "skirt"):
        w, length, flare = p["width"], p["length"], p["flare"]
        top, bottom = 0.5 - length / 2, 0.5 + length / 2
        waist = top + (0.30 * length if kind == "dress" else 0.0)
        polys = [
            pts(
                (cx - w / 2 * 0.8, waist),
                (cx + w / 2 * 0.8, waist),
                (cx + w / 2 + flare, bottom),
                (cx - w / 2 - flare, bottom),
            )
        ]
        if kind == "dress":
            polys.append(
                pts(
                    (cx - w / 2, top), (cx + w / 2, top), (cx + w / 2 * 0.8, waist), (cx - w / 2 * 0.8, waist)
                )
            )
        return polys
    if kind == "legs":
        w, length, gap = p["width"], p["length"], p["gap"]
        top, bottom = 0.5 - length / 2, 0.5 + length / 2
        return [
            pts((cx - w / 2, top), (cx + w / 2, top), (cx + w / 2, top + 0.12), (cx - w / 2, top + 0.12)),
            pts(
                (cx - w / 2, top + 0.1),
                (cx - gap, top + 0.1),
                (cx - gap - 0.02, bottom),
                (cx - w / 2 + 0.02, bottom),
            ),
            pts(
                (cx + gap, top + 0.1),
                (cx + w / 2, top + 0.1),
                (cx + w / 2 - 0.02, bottom),
                (cx + gap + 0.02, bottom),
            ),
        ]
    if kind == "set":
        w, length = p["width"], p["length"]
        return [
            pts(
                (cx - w / 2, 0.08),
                (cx + w / 2, 0.08),
                (cx + w / 2, 0.08 + length),
                (cx - w / 2, 0.08 + length),
            ),
            pts((cx - w / 2, 0.52), (cx - 0.02, 0.52), (cx - 0.03, 0.94), (cx - w / 2, 0.94)),
            pts((cx + 0.02, 0.52), (cx + w / 2, 0.52), (cx + w / 2, 0.94), (cx + 0.03, 0.94)),
        ]
    if kind == "brief":
        w, length = p["width"], p["length"]
        return [
            pts((cx - w / 2, 0.4), (cx + w / 2, 0.4), (cx + 0.06, 0.4 + length), (cx - 0.06, 0.4 + length))
        ]
    if kind == "bra":
        w = p["width"]
        return [
            pts((cx - w / 2, 0.55), (cx - 0.02, 0.55), (cx - 0.10, 0.36)),
            pts((cx + 0.02, 0.55), (cx + w / 2, 0.55), (cx + 0.10, 0.36)),
            pts((cx - w / 2, 0.55), (cx + w / 2, 0.55), (cx + w / 2, 0.60), (cx - w / 2, 0.60)),
        ]
    if kind == "sock":
        length = p["length"]
        return [
            pts(
                (0.40, 0.5 - length / 2),
                (0.56, 0.5 - length / 2),
                (0.56, 0.62),
                (0.74, 0.66),
                (0.74, 0.78),
                (0.40, 0.78),
            )
        ]
    if kind == "shoe":
        h = p["height"]
        return [
            pts((0.22, 0.70 - h), (0.46, 0.70 - h), (0.50, 0.58), (0.80, 0.62), (0.82, 0.74), (0.22, 0.74))
        ]
    if kind == "bag":
        w, h = p["width"], p["height"]
        return [
            pts((cx - w / 2, 0.45), (cx + w / 2, 0.45), (cx + w / 2, 0.45 + h), (cx - w / 2, 0.45 + h)),
            pts(
                (cx - 0.12, 0.45),
                (cx - 0.08, 0.28),
                (cx + 0.08, 0.28),
                (cx + 0.12, 0.45),
                (cx + 0.08, 0.45),
                (cx + 0.05, 0.33),
                (cx - 0.05, 0.33),
                (cx - 0.08, 0.45),
            ),
        ]
    if kind == "hat":
        w = p["width"]
        return [
            pts((cx - w / 2, 0.62), (cx - w / 3, 0.34), (cx, 0.28), (cx + w / 3, 0.34), (cx + w / 2, 0.62))
        ]
    if kind == "scarf":
        w = p["width"]
        return [pts((cx - w, 0.12), (cx + w, 0.12), (cx + w / 2, 0.88), (cx - w / 2 + 0.04, 0.88))]
    if kind == "earring":
        r = p["radius"]
        return [
            pts(*[(x + r * np.cos(t), 0.55 + r * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 12)])
            for x in (0.32, 0.68)
        ]
    if kind == "belt":
        w = p["width"]
        return [pts((cx - w / 2, 0.46), (cx + w / 2, 0.46), (cx + w / 2, 0.54), (cx - w / 2, 0.54))]
    raise ValueError(f"unknown silhouette {kind!r}")


Polygon = list[tuple[float, float]]


def _multipack(kind: str, polygons: list[Polygon], size: float, rng: np.random.Generator) -> list[Polygon]:
    """Copies of the item side by side (socks) or in a grid (briefs), for products sold in packs."""
    if kind not in MULTIPACKS:
        return polygons
    fewest, most, share = MULTIPACKS[kind]
    if rng.random() >= share:
        return polygons
    items = int(rng.integers(fewest, most + 1))
    columns = int(np.ceil(np.sqrt(items))) if kind == "brief" else items
    rows = int(np.ceil(items / columns))
    packed = []
    for i in range(items):
        row, column = divmod(i, columns)
        dx, dy = (column - (columns - 1) / 2) * 0.5 * size, (row - (rows - 1) / 2) * 0.45 * size
        packed.extend([[(x + dx, y + dy) for x, y in polygon] for polygon in polygons])
    return packed


def _fit_to_frame(polygons: list[Polygon], size: float, rng: np.random.Generator) -> list[Polygon]:
    """Scale and centre the drawing so its longer side spans a share `FILL` of the canvas."""
    xs = [x for polygon in polygons for x, _ in polygon]
    ys = [y for polygon in polygons for _, y in polygon]
    scale = rng.uniform(*FILL) * size / max(max(xs) - min(xs), max(ys) - min(ys))
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    ox, oy = size / 2 + rng.uniform(-0.03, 0.03, 2) * size
    return [[((x - cx) * scale + ox, (y - cy) * scale + oy) for x, y in polygon] for polygon in polygons]


def _pattern(appearance: str, base: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB texture (size, size, 3) in 0..1 for a graphical appearance over the base colour."""
    y, x = np.mgrid[0:size, 0:size] / size
    contrast = 0.35 if base.mean() > 0.5 else -0.35
    alt = np.clip(base + contrast, 0, 1)
    tex = np.broadcast_to(base, (size, size, 3)).copy()
    period = rng.uniform(0.07, 0.11)
    if appearance == "Stripe":
        tex[(y / period) % 1 < 0.45] = alt
    elif appearance == "Check":
        tex[((x / period) % 1 < 0.5) ^ ((y / period) % 1 < 0.5)] = alt
    elif appearance == "Dot":
        tex[(((x / period) % 1 - 0.5) ** 2 + ((y / period) % 1 - 0.5) ** 2) < 0.06] = alt
    elif appearance in ("Melange", "Denim"):
        grain = rng.normal(0, 0.09, (size, size, 1))
        if appearance == "Denim":
            grain += 0.05 * np.sin((x + y) * size * 1.3)[..., None]
        tex = np.clip(tex + grain, 0, 1)
    elif appearance in ("All over pattern", "Lace", "Sequin"):
        blobs = rng.random((size // 6, size // 6)) < 0.3
        mask = np.kron(blobs, np.ones((6, 6), dtype=bool))
        padded = np.zeros((size, size), dtype=bool)
        padded[: mask.shape[0], : mask.shape[1]] = mask
        tex[padded] = alt
    elif appearance in ("Front print", "Placement print", "Application/3D"):
        tex[(np.abs(x - 0.5) < 0.1) & (np.abs(y - 0.45) < 0.08)] = alt
    elif appearance == "Colour blocking":
        tex[y > 0.5] = alt
    return tex


def render(article: dict[str, Any], size: int = IMAGE_SIZE) -> Image.Image:
    """One article's image (RGB) from its articles.csv row (product_type_name, colour_group_name,
    graphical_appearance_name, product_code, article_id)."""
    kind, params = SHAPES.get(article["product_type_name"], ("bag", {"width": 0.4, "height": 0.4}))
    product_rng = np.random.default_rng(int(article["product_code"]))
    article_rng = np.random.default_rng(int(str(article["article_id"]).lstrip("0") or 0))
    params = {
        k: v * product_rng.uniform(1 - SHAPE_JITTER, 1 + SHAPE_JITTER) if isinstance(v, float) else v
        for k, v in params.items()
    }
    big = size * _SUPER
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    drawing = _multipack(kind, _shape_polygons(kind, params, big), big, product_rng)
    for polygon in _fit_to_frame(drawing, big, article_rng):
        draw.polygon(polygon, fill=255)
    base = colour_rgb(article["colour_group_name"]) * article_rng.uniform(0.92, 1.06)
    texture = _pattern(
        article.get("graphical_appearance_name", "Solid"), np.clip(base, 0, 1), big, product_rng
    )
    background = np.full((big, big, 3), 0.95) + article_rng.normal(0, 0.01, (1, 1, 3))
    alpha = (np.asarray(mask, dtype=np.float32) / 255.0)[..., None]
    pixels = np.clip(alpha * texture + (1 - alpha) * background, 0, 1)
    image = Image.fromarray((pixels * 255).astype(np.uint8), "RGB")
    return image.resize((size, size), Image.Resampling.LANCZOS)


def image_path(root: str | Path, article_id: str) -> Path:
    """The Kaggle layout: images/<first 3 digits>/<10-digit article id>.jpg."""
    return Path(root) / article_id[:3] / f"{article_id}.jpg"


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_images(rows: Iterable[dict[str, Any]], root: str | Path, size: int = IMAGE_SIZE) -> int:
    """Render every articles.csv row into `root` (each file written atomically); returns the count."""
    written = 0
    for row in rows:
        path = image_path(root, str(row["article_id"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".jpg.tmp")
        tmp.write_bytes(jpeg_bytes(render(row, size)))
        tmp.replace(path)
        written += 1
    return written
