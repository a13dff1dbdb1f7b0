"""The independent ESCI judge: hand-checked grades per intent class, fashion attributes, speed,
independence from the annotator, and the handwritten query file it is used with."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashclip import columns as C
from dashclip.judge import INTENTS, Judge
from dashclip.judge import api as judge_api
from dashclip.judge.products import FACT_FIELDS

REPO = Path(__file__).resolve().parents[1]
HANDWRITTEN = REPO / "dashclip" / "resources" / "handwritten_queries.csv"

# (id, title, description, category, color, gender, usage): rows as the catalog spells them
ROWS = [
    ("gs", "Granny Smith", "Granny Smith is a green apple with white, firm pulp.", "Fruit > Apple > Granny Smith"),
    ("gala", "Royal Gala", "Royal Gala is a crispy and very juicy apple.", "Fruit > Apple > Royal Gala"),
    ("pear", "Conference", "Conference is a medium sized pear.", "Fruit > Pear > Conference"),
    ("orange", "Orange", "The orange is a very important vitamin C source.", "Fruit > Orange"),
    ("lemon", "Lemon", "Lemon has a very tart and sour taste.", "Fruit > Lemon"),
    ("lime", "Lime", "The lime fruit, like lemon, has sour taste.", "Fruit > Lime"),
    ("trop_mandarin", "Tropicana Mandarin Morning", "A ready to drink juice pressed on orange, mandarin and grapes.",
     "Packages > Juice > Tropicana Mandarin Morning"),
    ("bravo_apple", "Bravo Apple Juice", "Ready to drink apple juice from concentrate.", "Packages > Juice > Bravo Apple Juice"),
    ("bravo_orange", "Bravo Orange Juice", "Ready to drink orange juice from concentrate. Without pulp.",
     "Packages > Juice > Bravo Orange Juice"),
    ("trop_smooth", "Tropicana Juice Smooth", "A ready to drink juice without pulp pressed on sun-dried oranges.",
     "Packages > Juice > Tropicana Juice Smooth"),
    ("trop_grapefruit", "Tropicana Golden Grapefruit", "A ready to drink juice with pulp pressed on grapefruit.",
     "Packages > Juice > Tropicana Golden Grapefruit"),
    ("milk_std", "Arla Standard Milk", "Fresh standard milk made from Swedish milk.", "Packages > Milk > Arla Standard Milk"),
    ("milk_lactose", "Arla Lactose Medium Fat Milk", "Lactose-free skimmed milk made from Swedish milk.",
     "Packages > Milk > Arla Lactose Medium Fat Milk"),
    ("milk_eco", "Garant Ecological Medium Fat Milk", "Organic skimmed milk from Swedish KRAV farms.",
     "Packages > Milk > Garant Ecological Medium Fat Milk"),
    ("oat_milk", "Oatly Oat Milk", "A natural oat drink, enriched with calcium.", "Packages > Oat Milk > Oatly Oat Milk"),
    ("soy_milk", "Alpro Fresh Soy Milk", "Fresh soy based drink.", "Packages > Soy Milk > Alpro Fresh Soy Milk"),
    ("yog_natural", "Arla Natural Yoghurt", "Creamy yoghurt; fits well with nuts, honey and fresh berries.",
     "Packages > Yoghurt > Arla Natural Yoghurt"),
    ("yog_vanilla", "Arla Mild Vanilla Yoghurt", "Mild and smooth vanilla yoghurt.", "Packages > Yoghurt > Arla Mild Vanilla Yoghurt"),
    ("yog_straw", "Yoggi Strawberry Yoghurt", "Creamy yoghurt with a taste of strawberries and vanilla.",
     "Packages > Yoghurt > Yoggi Strawberry Yoghurt"),
    ("soyg_blue", "Alpro Blueberry Soyghurt", "Soy based ghurt with mild blueberry taste.",
     "Packages > Soyghurt > Alpro Blueberry Soyghurt"),
    ("soyg_vanilla", "Alpro Vanilla Soyghurt", "Soy based ghurt with mild vanilla taste.",
     "Packages > Soyghurt > Alpro Vanilla Soyghurt"),
    ("oatghurt", "Oatly Natural Oatghurt", "Whole vegetable ghurt, used as yoghurt.", "Packages > Oatghurt > Oatly Natural Oatghurt"),
    ("sour_cream", "Arla Sour Cream", "Sour cream made from fresh cream.", "Packages > Sour Cream > Arla Sour Cream"),
    ("sour_milk", "Arla Sour Milk", "Classic sour milk made from Swedish milk.", "Packages > Sour Milk > Arla Sour Milk"),
    ("aubergine", "Aubergine", "Aubergine, or eggplant as it is also called.", "Vegetables > Aubergine"),
    ("zucchini", "Zucchini", "Zucchini can be eaten raw.", "Vegetables > Zucchini"),
    ("pepper_red", "Red Bell Pepper", "The red peppers are much sweeter.", "Vegetables > Pepper > Red Bell Pepper"),
    ("pepper_green", "Green Bell Pepper", "A green pepper is unripe.", "Vegetables > Pepper > Green Bell Pepper"),
    ("beet", "Red Beet", "Red beets have an earthy and sweet taste.", "Vegetables > Red Beet"),
    ("cucumber", "Cucumber", "Fresh cucumber.", "Vegetables > Cucumber"),
    ("trousers_formal", "John Miller Men Solid Type Black Trousers", "", "Apparel > Bottomwear > Trousers", "Black", "Men", "Formal"),
    ("trousers_casual", "Basics Men Beige Trousers", "", "Apparel > Bottomwear > Trousers", "Beige", "Men", "Casual"),
    ("jeans", "Locomotive Men Washed Blue Jeans", "", "Apparel > Bottomwear > Jeans", "Blue", "Men", "Casual"),
    ("shorts", "Nike Men Trainng Black Shorts", "", "Apparel > Bottomwear > Shorts", "Black", "Men", "Sports"),
    ("track_pants", "Nike Men Solid Black Track Pants", "", "Apparel > Bottomwear > Track Pants", "Black", "Men", "Sports"),
    ("flats", "Rocia Women Black Flats", "", "Footwear > Shoes > Flats", "Black", "Women", "Casual"),
    ("heels_filed_as_flats", "Rocia Women Black Heels", "", "Footwear > Shoes > Flats", "Black", "Women", "Casual"),
    ("heels", "Inc 5 Women Casual Brown Heels", "", "Footwear > Shoes > Heels", "Brown", "Women", "Casual"),
    ("sports_nike", "Nike Men Air Black Sports Shoes", "", "Footwear > Shoes > Sports Shoes", "Black", "Men", "Sports"),
    ("sports_puma", "Puma Men Axis Black Sports Shoes", "", "Footwear > Shoes > Sports Shoes", "Black", "Men", "Sports"),
    ("sports_women", "Reebok Women Run Blue Sports Shoes", "", "Footwear > Shoes > Sports Shoes", "Blue", "Women", "Sports"),
    ("casual_shoe", "Nike Men Air Rift White Casual Shoe", "", "Footwear > Shoes > Casual Shoes", "White", "Men", "Casual"),
    ("sports_sandal", "ADIDAS Women Hispana Beige Sandals", "", "Footwear > Sandal > Sports Sandals", "Beige", "Women", "Casual"),
    ("sandal_men", "ADIDAS Men Spry Black Sandals", "", "Footwear > Sandal > Sandals", "Black", "Men", "Casual"),
    ("sandal_women", "Carlton London Women Casual Tan Sandals", "", "Footwear > Sandal > Sandals", "Tan", "Women", "Casual"),
    ("sandal_unisex", "Crocs Unisex Black Sandals", "", "Footwear > Sandal > Sandals", "Black", "Unisex", "Casual"),
    ("shirt_navy", "Turtle Men Navy Blue Shirt", "", "Apparel > Topwear > Shirts", "Navy Blue", "Men", "Casual"),
    ("shirt_blue", "Arrow Men Blue Formal Shirt", "", "Apparel > Topwear > Shirts", "Blue", "Men", "Formal"),
    ("tie", "Turtle Men Stripes Burgundy Ties", "", "Accessories > Ties > Ties", "Burgundy", "Men", "Formal"),
    ("socks", "Puma Men Pack of 2 Grey Socks", "", "Accessories > Socks > Socks", "Grey", "Men", "Casual"),
    ("jacket_kids", "Palm Tree Kids Boys Solid White Jackets", "", "Apparel > Topwear > Jackets", "White", "Men", "Casual"),
    ("jacket_men", "Nike Men Solid Grey Jacket", "", "Apparel > Topwear > Jackets", "Grey", "Men", "Casual"),
    ("jacket_adidas", "ADIDAS Originals Men Solid Green Jacket", "", "Apparel > Topwear > Jackets", "Green", "Men", "Casual"),
]


@pytest.fixture(scope="module")
def products() -> pd.DataFrame:
    rows = [dict(zip((C.PRODUCT_ID, C.TITLE, C.DESCRIPTION, C.CATEGORY, C.COLOR, C.GENDER, C.USAGE),
                     (*r, *[""] * (7 - len(r))))) for r in ROWS]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def judge(products) -> Judge:
    return Judge(products)


def grades(judge: Judge, query: str) -> dict[str, int]:
    ids = judge.products[C.PRODUCT_ID].tolist()
    return dict(zip(ids, judge.grade_all(query).tolist()))


def reason(judge: Judge, query: str, pid: str) -> str:
    row = judge.products.index[judge.products[C.PRODUCT_ID] == pid][0]
    return judge.explain(query, int(row))


def check(judge: Judge, query: str, expected: dict[str, tuple[int, str]]) -> None:
    """Each product's grade, and a reason code its explanation must name."""
    g = grades(judge, query)
    for pid, (grade, code) in expected.items():
        why = reason(judge, query, pid)
        assert g[pid] == grade, f"{query!r} / {pid}: grade {g[pid]} ({why}), expected {grade}"
        assert code in why, f"{query!r} / {pid}: reason {why!r} lacks {code!r}"


# --- grocery intent classes ----------------------------------------------------------------------
def test_fresh_product_is_not_answered_by_what_is_made_from_it(judge):
    check(judge, "apples", {"gs": (3, "same_type"), "gala": (3, "same_type"),
                            "bravo_apple": (0, "made_from_query_product"), "pear": (0, "type_mismatch")})
    check(judge, "granny smith apples", {"gs": (3, "same_type"), "gala": (2, "sibling_variety")})
    check(judge, "green apples", {"gs": (3, "same_type"), "gala": (2, "colour_mismatch")})
    check(judge, "oranges for juicing", {"orange": (3, "same_type"), "bravo_orange": (0, "made_from_query_product")})
    assert judge.intent("apples") == judge.intent("apple juice") == "fresh_vs_made_from"


def test_juice_query_is_a_juice_of_that_fruit(judge):
    check(judge, "apple juice", {"bravo_apple": (3, "same_type"), "bravo_orange": (2, "flavour_mismatch"),
                                 "gs": (0, "ingredient_not_product")})
    # the fruit named only in the description; the juice named only in the category path
    check(judge, "orange juice", {"trop_smooth": (3, "same_type"), "orange": (0, "ingredient_not_product")})
    check(judge, "grapefruit juice", {"trop_grapefruit": (3, "same_type")})
    check(judge, "orange juice without bits", {"bravo_orange": (3, "same_type"), "trop_smooth": (3, "same_type")})


def test_flavoured_does_not_substitute_plain(judge):
    check(judge, "natural yoghurt", {"yog_natural": (3, "same_type"), "yog_vanilla": (0, "flavoured_for_plain"),
                                     "yog_straw": (0, "flavoured_for_plain"), "sour_milk": (2, "substitute_type"),
                                     "oatghurt": (0, "plant_based_for_dairy")})
    # the reverse holds: a plain yoghurt serves a flavour shopper and takes a flavour
    check(judge, "vanilla yogurt", {"yog_vanilla": (3, "same_type"), "yog_natural": (2, "plain_for_flavoured"),
                                    "yog_straw": (2, "flavour_mismatch"), "soyg_vanilla": (0, "plant_based_for_dairy")})
    assert judge.intent("natural yoghurt") == "plain_vs_flavoured"


def test_plant_based_does_not_substitute_dairy_unless_asked(judge):
    check(judge, "milk", {"milk_std": (3, "same_type"), "oat_milk": (0, "plant_based_for_dairy"),
                          "soy_milk": (0, "plant_based_for_dairy"), "sour_milk": (0, "type_mismatch")})
    check(judge, "oat milk", {"oat_milk": (3, "same_type"), "soy_milk": (2, "base_mismatch"),
                              "milk_std": (0, "dairy_for_plant_based")})
    check(judge, "oat drink", {"oat_milk": (3, "same_type")})
    check(judge, "lactose free milk", {"milk_lactose": (3, "same_type"), "milk_std": (0, "contains_lactose"),
                                       "oat_milk": (2, "plant_based_for_lactose_free")})
    check(judge, "soy yoghurt blueberry", {"soyg_blue": (3, "same_type"), "soyg_vanilla": (2, "flavour_mismatch"),
                                           "oatghurt": (2, "base_mismatch"), "yog_straw": (0, "dairy_for_plant_based")})
    check(judge, "vegan yogurt", {"soyg_vanilla": (3, "same_type"), "oatghurt": (3, "same_type"),
                                  "yog_natural": (0, "dairy_for_plant_based")})
    check(judge, "organic milk", {"milk_eco": (3, "same_type"), "milk_std": (2, "not_organic")})
    check(judge, "sour cream", {"sour_cream": (3, "same_type"), "sour_milk": (0, "type_mismatch")})
    assert judge.intent("oat milk") == "dairy_vs_plant"


def test_shopper_names_for_vegetables(judge):
    check(judge, "eggplant", {"aubergine": (3, "same_type"), "cucumber": (0, "type_mismatch")})
    check(judge, "courgettes", {"zucchini": (3, "same_type"), "cucumber": (0, "type_mismatch")})
    check(judge, "capsicum", {"pepper_red": (3, "same_type"), "pepper_green": (3, "same_type")})
    check(judge, "red capsicum", {"pepper_red": (3, "same_type"), "pepper_green": (2, "colour_mismatch")})
    check(judge, "beetroot", {"beet": (3, "same_type")})
    check(judge, "lemons and limes", {"lemon": (3, "same_type"), "lime": (3, "same_type"), "orange": (0, "type_mismatch")})
    assert judge.intent("eggplant") == "vegetable_names"
    assert judge.intent("aubergine") == "general"


# --- fashion -------------------------------------------------------------------------------------
def test_the_type_the_query_names_decides(judge):
    check(judge, "trousers", {"trousers_formal": (3, "same_type"), "jeans": (2, "substitute_type"),
                              "track_pants": (2, "substitute_type"), "shorts": (0, "type_mismatch")})
    check(judge, "jeans", {"jeans": (3, "same_type"), "trousers_casual": (2, "substitute_type")})
    check(judge, "pants", {"trousers_casual": (3, "same_type")})
    # title over category path: "Rocia Women Black Heels" filed under Flats is a heel
    check(judge, "flats", {"flats": (3, "same_type"), "heels_filed_as_flats": (2, "substitute_type"),
                           "heels": (2, "substitute_type"), "sports_nike": (0, "type_mismatch")})
    check(judge, "sports sandals", {"sports_sandal": (3, "same_type"), "sandal_women": (2, "narrower_query_type")})
    check(judge, "trainers", {"sports_puma": (3, "same_type"), "casual_shoe": (2, "substitute_type")})
    check(judge, "ankle boots", {"casual_shoe": (2, "substitute_type"), "sandal_men": (0, "type_mismatch")})
    assert judge.intent("ankle boots") == "footwear_apparel_type"


def test_gender_and_age_are_central(judge):
    check(judge, "women sandals", {"sandal_women": (3, "same_type"), "sports_sandal": (3, "same_type"),
                                   "sandal_unisex": (3, "same_type"), "sandal_men": (0, "gender_mismatch")})
    check(judge, "kids jacket", {"jacket_kids": (3, "same_type"), "jacket_men": (0, "age_mismatch")})
    check(judge, "men jacket", {"jacket_men": (3, "same_type"), "jacket_kids": (0, "age_mismatch")})


def test_colour_brand_and_usage_leave_a_substitute(judge):
    check(judge, "black heels", {"heels_filed_as_flats": (3, "same_type"), "heels": (2, "colour_mismatch")})
    check(judge, "blue shirt", {"shirt_navy": (3, "same_type"), "shirt_blue": (3, "same_type")})
    check(judge, "navy blue shirt", {"shirt_navy": (3, "same_type"), "shirt_blue": (2, "colour_mismatch")})
    check(judge, "nike sports shoes", {"sports_nike": (3, "same_type"), "sports_puma": (2, "brand_mismatch")})
    check(judge, "adidas jacket", {"jacket_adidas": (3, "same_type"), "jacket_men": (2, "brand_mismatch")})
    check(judge, "formal trousers", {"trousers_formal": (3, "same_type"), "trousers_casual": (2, "usage_mismatch")})
    # a substitute type that also fails an attribute is too far from what was asked
    check(judge, "black flats", {"heels_filed_as_flats": (2, "substitute_type"), "heels": (0, "too_many_mismatches")})


def test_complements_are_used_together(judge):
    check(judge, "sports shoes", {"track_pants": (1, "complement_type"), "socks": (1, "complement_type"),
                                  "jeans": (0, "type_mismatch")})
    check(judge, "women sports shoes", {"sports_women": (3, "same_type"), "track_pants": (0, "gender_mismatch")})
    check(judge, "formal shirt", {"tie": (1, "complement_type")})


def test_queries_without_a_type_and_empty_queries(judge):
    check(judge, "nike", {"sports_nike": (3, "attributes_only"), "sports_puma": (0, "brand_mismatch"),
                          "milk_std": (0, "brand_mismatch")})
    assert judge.grade_all("").sum() == 0 and judge.explain("", 0) == "I:empty_query"
    assert judge.grade_all("!!! ??").sum() == 0


def test_queries_as_typed_and_what_they_imply(judge):
    # cut off as typed: the one phrase the fragment begins, else a word-start keyword
    check(judge, "turtle shir", {"shirt_navy": (3, "same_type"), "shirt_blue": (2, "brand_mismatch")})
    assert judge.parse("trous").heads == ("trousers",)
    assert judge.parse("mens jum").keywords == (("jum*",),)
    # a brand that makes one base, or one kind of product
    check(judge, "milk oatly", {"oat_milk": (3, "same_type"), "milk_std": (0, "dairy_for_plant_based")})
    check(judge, "tropicana grapefruit", {"trop_grapefruit": (3, "same_type"), "orange": (0, "type_mismatch")})
    # the full name of a branded product
    check(judge, "morning tropicana mandarin morning", {"trop_mandarin": (3, "named_product")})
    # women-only types; a phrase of the other department read word by word
    check(judge, "flats", {"sandal_women": (2, "substitute_type"), "sandal_men": (0, "gender_mismatch")})
    q = judge.parse("pink ladies sandals")
    assert q.heads == ("sandals",) and q.colours == ("pink",) and q.gender == "women"


def test_explanations_are_machine_readable(judge, products):
    pattern = re.compile(r"^[ESCI]:[a-z_]+(\([a-z0-9 *]+\))?(\+[a-z_]+(\([a-z0-9 *]+\))?)*$")
    for q in ("apples", "black heels", "silk tie for men", "nike", "tie and cufflinks set", "oat milk"):
        g = judge.grade_all(q)
        for row in range(len(products)):
            why = judge.explain(q, row)
            assert pattern.match(why), why
            assert why[0] == "ICSE"[g[row]], (q, row, why)


def test_grouped_grading_equals_per_product_grading(judge, monkeypatch):
    queries = ["apples", "natural yoghurt", "soy yoghurt blueberry", "women sandals", "nike sports shoes",
               "black flats", "lactose free milk", "kids jacket", "blue checked shirt men", "sports shoes"]
    grouped = judge.grade_matrix(queries)
    monkeypatch.setattr(judge_api, "fields_read", lambda q, tax: FACT_FIELDS)
    assert np.array_equal(grouped, judge.grade_matrix(queries))


# --- the shipped catalog -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def catalog(data_dir) -> pd.DataFrame:
    return pd.read_csv(data_dir / "catalog.csv", dtype=str, keep_default_na=False)


def test_every_catalog_product_gets_a_type(catalog):
    judge = Judge(catalog)
    unknown = [t for t, f in zip(catalog[C.TITLE], judge.facts) if f.type is None]
    assert not unknown, unknown[:5]


def test_thousand_queries_by_thousand_products_under_a_minute(catalog):
    from dashclip.queries import generate_queries  # only to have realistic queries

    sample = catalog.sample(1000, random_state=0).reset_index(drop=True)
    queries = generate_queries(catalog, per_category=8, per_product=0.2, seed=1)[C.QUERY].tolist()[:1000]
    assert len(queries) == 1000
    t0 = time.perf_counter()
    g = Judge(sample).grade_matrix(queries)
    assert time.perf_counter() - t0 < 60
    assert g.shape == (1000, 1000) and set(np.unique(g)) <= {0, 1, 2, 3}


# --- independence and the handwritten queries ----------------------------------------------------
def test_judge_does_not_import_the_annotator():
    src = "\n".join(p.read_text() for p in (REPO / "dashclip" / "judge").glob("*.py"))
    assert not re.search(r"^\s*(from|import)\s+dashclip\.(queries|retrieval)\b", src, flags=re.M)
    code = "import sys, dashclip.judge; print(sorted(m for m in sys.modules if m in ('dashclip.queries', 'dashclip.retrieval')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_handwritten_queries_file():
    from dashclip.embed import read_queries

    clean, rejects = read_queries(HANDWRITTEN)
    raw = pd.read_csv(HANDWRITTEN, dtype=str, keep_default_na=False)
    assert rejects.empty and len(clean) == len(raw) >= 100
    assert raw[C.QUERY].is_unique and raw[C.QUERY_ID].is_unique
    assert set(raw["intent"]) <= set(INTENTS)
    assert (raw["intent"] != "general").sum() >= 50
    first = dict(zip(raw[C.QUERY_ID], raw[C.QUERY]))
    assert first["hw-01"] == "black formal shoes for office" and first["hw-50"] == "puma t-shirt"
    assert [f"hw-{i:02d}" for i in range(1, 51)] == raw[C.QUERY_ID].tolist()[:50]
