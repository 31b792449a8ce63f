"""The H&M catalogue's category structure, as the synthetic generator draws from it.

Codes and names follow the real articles.csv (product types, index codes, colour groups with their
perceived value and master colour, graphical appearances), so synthetic files look like the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Index:
    code: str
    name: str
    group_no: int
    group_name: str
    sections: tuple[tuple[int, str], ...]


INDEXES: tuple[Index, ...] = (
    Index(
        "A",
        "Ladieswear",
        1,
        "Ladieswear",
        (
            (16, "Womens Everyday Basics"),
            (15, "Womens Everyday Collection"),
            (18, "Womens Trend"),
            (11, "Womens Tailoring"),
            (6, "Womens Casual"),
        ),
    ),
    Index(
        "B",
        "Lingeries/Tights",
        1,
        "Ladieswear",
        ((61, "Womens Lingerie"), (62, "Womens Nightwear, Socks & Tigh")),
    ),
    Index(
        "C",
        "Ladies Accessories",
        1,
        "Ladieswear",
        ((65, "Womens Big accessories"), (66, "Womens Small accessories"), (64, "Womens Shoes")),
    ),
    Index(
        "D",
        "Divided",
        2,
        "Divided",
        (
            (53, "Divided Collection"),
            (51, "Divided Basics"),
            (52, "Divided Projects"),
            (50, "Divided Accessories"),
        ),
    ),
    Index(
        "F",
        "Menswear",
        3,
        "Menswear",
        (
            (20, "Contemporary Smart"),
            (21, "Contemporary Casual"),
            (25, "Men Underwear"),
            (23, "Men Accessories"),
        ),
    ),
    Index(
        "G",
        "Baby Sizes 50-98",
        4,
        "Baby/Children",
        ((41, "Baby Essentials & Complements"), (44, "Baby Girl"), (43, "Baby Boy")),
    ),
    Index(
        "H",
        "Children Sizes 92-140",
        4,
        "Baby/Children",
        ((77, "Girls Underwear & Basics"), (46, "Kids Girl"), (45, "Kids Boy")),
    ),
    Index(
        "I",
        "Children Sizes 134-170",
        4,
        "Baby/Children",
        ((47, "Young Girl"), (48, "Young Boy"), (72, "Kids Outerwear")),
    ),
    Index(
        "J",
        "Children Accessories, Swimwear",
        4,
        "Baby/Children",
        ((76, "Kids Accessories, Swimwear & D"), (42, "Kids & Baby Shoes")),
    ),
    Index("S", "Sport", 26, "Sport", ((5, "Ladies H&M Sport"), (57, "Men H&M Sport"))),
)

INDEX_BY_CODE = {ix.code: ix for ix in INDEXES}

# Garment groups: (number, name).
GARMENT_GROUPS = {
    "jersey_basic": (1002, "Jersey Basic"),
    "knitwear": (1003, "Knitwear"),
    "jersey_fancy": (1005, "Jersey Fancy"),
    "outdoor": (1007, "Outdoor"),
    "dressed": (1008, "Dressed"),
    "trousers": (1009, "Trousers"),
    "blouses": (1010, "Blouses"),
    "shirts": (1011, "Shirts"),
    "denim": (1012, "Trousers Denim"),
    "dresses": (1013, "Dresses Ladies"),
    "skirts": (1014, "Skirt"),
    "underwear": (1017, "Under-, Nightwear"),
    "socks": (1021, "Socks and Tights"),
    "accessories": (1019, "Accessories"),
    "swimwear": (1018, "Swimwear"),
    "shoes": (1020, "Shoes"),
    "shorts": (1025, "Shorts"),
}


@dataclass(frozen=True)
class ProductType:
    no: int
    name: str
    group: str  # product_group_name
    garment: str  # key of GARMENT_GROUPS
    share: float  # share of the catalogue
    price: float  # typical price on the Kaggle scale (SEK / 590)
    season: float  # +1 summer item, -1 winter item, 0 all year
    indexes: str  # index codes it is sold under, most likely first
    noun: str  # used in names and descriptions


PRODUCT_TYPES: tuple[ProductType, ...] = (
    ProductType(252, "Sweater", "Garment Upper body", "knitwear", 0.090, 0.034, -1.0, "ADFIHS", "sweater"),
    ProductType(272, "Trousers", "Garment Lower body", "trousers", 0.095, 0.033, 0.0, "ADFIHS", "trousers"),
    ProductType(265, "Dress", "Garment Full body", "dresses", 0.100, 0.034, 0.6, "ADIHG", "dress"),
    ProductType(
        255, "T-shirt", "Garment Upper body", "jersey_basic", 0.070, 0.014, 0.5, "DAFIHGS", "T-shirt"
    ),
    ProductType(254, "Top", "Garment Upper body", "jersey_fancy", 0.042, 0.017, 0.4, "ADI", "top"),
    ProductType(258, "Blouse", "Garment Upper body", "blouses", 0.040, 0.030, 0.2, "AD", "blouse"),
    ProductType(306, "Bra", "Underwear", "underwear", 0.030, 0.024, 0.0, "B", "bra"),
    ProductType(286, "Underwear bottom", "Underwear", "underwear", 0.025, 0.008, 0.0, "BFH", "briefs"),
    ProductType(275, "Skirt", "Garment Lower body", "skirts", 0.025, 0.028, 0.5, "ADI", "skirt"),
    ProductType(308, "Hoodie", "Garment Upper body", "jersey_fancy", 0.022, 0.030, -0.6, "DFIS", "hoodie"),
    ProductType(259, "Shirt", "Garment Upper body", "shirts", 0.022, 0.030, 0.0, "FAI", "shirt"),
    ProductType(262, "Jacket", "Garment Upper body", "outdoor", 0.025, 0.055, -0.8, "ADFI", "jacket"),
    ProductType(253, "Vest top", "Garment Upper body", "jersey_basic", 0.022, 0.010, 0.9, "ADS", "vest top"),
    ProductType(
        273, "Leggings/Tights", "Garment Lower body", "jersey_basic", 0.020, 0.015, 0.0, "ASHG", "leggings"
    ),
    ProductType(245, "Cardigan", "Garment Upper body", "knitwear", 0.015, 0.034, -0.7, "ADG", "cardigan"),
    ProductType(274, "Shorts", "Garment Lower body", "shorts", 0.020, 0.020, 1.0, "DAFHS", "shorts"),
    ProductType(264, "Blazer", "Garment Upper body", "dressed", 0.013, 0.050, 0.0, "AF", "blazer"),
    ProductType(263, "Coat", "Garment Upper body", "outdoor", 0.010, 0.070, -1.0, "AFD", "coat"),
    ProductType(297, "Pyjama set", "Nightwear", "underwear", 0.010, 0.025, 0.0, "BHG", "pyjama set"),
    ProductType(302, "Socks", "Socks & Tights", "socks", 0.015, 0.006, 0.0, "BFJ", "socks"),
    ProductType(304, "Underwear Tights", "Socks & Tights", "socks", 0.010, 0.008, -0.5, "BJ", "tights"),
    ProductType(59, "Swimwear bottom", "Swimwear", "swimwear", 0.012, 0.012, 1.0, "BDJ", "bikini bottoms"),
    ProductType(298, "Bikini top", "Swimwear", "swimwear", 0.012, 0.017, 1.0, "BD", "bikini top"),
    ProductType(57, "Swimsuit", "Swimwear", "swimwear", 0.006, 0.025, 1.0, "BJ", "swimsuit"),
    ProductType(87, "Boots", "Shoes", "shoes", 0.010, 0.060, -0.8, "CJ", "boots"),
    ProductType(94, "Sneakers", "Shoes", "shoes", 0.010, 0.040, 0.2, "CFJ", "sneakers"),
    ProductType(66, "Bag", "Accessories", "accessories", 0.012, 0.025, 0.0, "CD", "bag"),
    ProductType(75, "Hat/beanie", "Accessories", "accessories", 0.010, 0.012, -0.6, "CFJD", "beanie"),
    ProductType(80, "Scarf", "Accessories", "accessories", 0.012, 0.017, -0.8, "CD", "scarf"),
    ProductType(70, "Earring", "Accessories", "accessories", 0.012, 0.008, 0.0, "CD", "earrings"),
    ProductType(67, "Belt", "Accessories", "accessories", 0.006, 0.012, 0.0, "CF", "belt"),
    ProductType(256, "Bodysuit", "Garment Upper body", "jersey_fancy", 0.012, 0.015, 0.0, "GA", "bodysuit"),
    ProductType(270, "Garment Set", "Garment Full body", "jersey_basic", 0.010, 0.025, 0.0, "GH", "set"),
    ProductType(283, "Underwear body", "Underwear", "underwear", 0.006, 0.020, 0.0, "B", "body"),
    ProductType(78, "Other accessories", "Accessories", "accessories", 0.008, 0.010, 0.0, "CJ", "accessory"),
)

# (colour_group_code, name, perceived_colour_value_id, value name, perceived_colour_master_id, master name, weight)
COLOURS: tuple[tuple[int, str, int, str, int, str, float], ...] = (
    (9, "Black", 4, "Dark", 5, "Black", 0.22),
    (73, "Dark Blue", 4, "Dark", 2, "Blue", 0.09),
    (10, "White", 3, "Light", 9, "White", 0.08),
    (43, "Dark Red", 4, "Dark", 18, "Red", 0.04),
    (7, "Grey", 2, "Medium Dusty", 12, "Grey", 0.04),
    (51, "Light Pink", 1, "Dusty Light", 4, "Pink", 0.05),
    (12, "Light Beige", 1, "Dusty Light", 11, "Beige", 0.05),
    (8, "Dark Grey", 4, "Dark", 12, "Grey", 0.03),
    (72, "Blue", 2, "Medium Dusty", 2, "Blue", 0.04),
    (6, "Light Grey", 1, "Dusty Light", 12, "Grey", 0.03),
    (42, "Red", 7, "Bright", 18, "Red", 0.03),
    (11, "Off White", 1, "Dusty Light", 9, "White", 0.03),
    (93, "Dark Green", 4, "Dark", 19, "Green", 0.03),
    (19, "Greenish Khaki", 4, "Dark", 20, "Khaki green", 0.02),
    (13, "Beige", 2, "Medium Dusty", 11, "Beige", 0.03),
    (71, "Light Blue", 1, "Dusty Light", 2, "Blue", 0.03),
    (31, "Light Orange", 1, "Dusty Light", 3, "Orange", 0.02),
    (5, "Gold", 5, "Medium", 15, "Metal", 0.02),
    (22, "Yellow", 7, "Bright", 8, "Yellow", 0.02),
    (17, "Yellowish Brown", 2, "Medium Dusty", 13, "Brown", 0.02),
    (3, "Silver", 3, "Light", 15, "Metal", 0.01),
    (52, "Pink", 2, "Medium Dusty", 4, "Pink", 0.02),
    (82, "Turquoise", 2, "Medium Dusty", 7, "Turquoise", 0.01),
    (62, "Purple", 2, "Medium Dusty", 6, "Lilac Purple", 0.01),
)

# (graphical_appearance_no, name, weight)
APPEARANCES: tuple[tuple[int, str, float], ...] = (
    (1010016, "Solid", 0.50),
    (1010001, "All over pattern", 0.12),
    (1010010, "Melange", 0.08),
    (1010023, "Denim", 0.05),
    (1010017, "Stripe", 0.05),
    (1010008, "Front print", 0.04),
    (1010021, "Lace", 0.03),
    (1010014, "Placement print", 0.03),
    (1010004, "Check", 0.03),
    (1010005, "Colour blocking", 0.02),
    (1010002, "Application/3D", 0.02),
    (1010019, "Sequin", 0.01),
    (1010007, "Dot", 0.02),
)

NAME_WORDS = (
    "Luna",
    "Tilly",
    "Mira",
    "Stella",
    "Nova",
    "Bella",
    "Iris",
    "Jade",
    "Ruby",
    "Ivy",
    "Lola",
    "Nora",
    "Alma",
    "Ella",
    "Cora",
    "Vera",
    "Milo",
    "Hugo",
    "Leo",
    "Otto",
    "Axel",
    "Theo",
    "Sam",
    "Max",
    "Felix",
    "Oscar",
    "Basic",
    "Soft",
    "Relaxed",
    "Slim",
    "Wide",
    "Cropped",
    "Oversized",
    "Fancy",
    "Classic",
    "Summer",
    "Winter",
    "Cosy",
    "Bold",
    "Pure",
)
MATERIALS = (
    "Jersey",
    "Cotton",
    "Knitted",
    "Woven",
    "Linen-blend",
    "Denim",
    "Fine-knit",
    "Viscose",
    "Ribbed",
    "Satin",
)
DETAILS = (
    "a round neckline and short sleeves",
    "narrow shoulder straps",
    "a high waist and tapered legs",
    "long sleeves and ribbed cuffs",
    "a V-neck and a relaxed fit",
    "buttons down the front",
    "an elasticated waist",
    "side pockets",
    "a lined hood",
    "a concealed zip",
    "lace trims",
    "a wrapover front",
    "adjustable straps",
    "dropped shoulders",
    "a printed motif",
)
