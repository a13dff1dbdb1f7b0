"""The rule annotator's product-type rules (ESCI) on concrete products: fresh produce against what
is made from it, plain against flavoured, dairy against plant-based, shoppers' names for
vegetables, kids' and the other gender's wear, sibling types that do and do not substitute."""

from __future__ import annotations

import pandas as pd
import pytest

from dashclip import columns as C
from dashclip.queries import Annotator, grade, product_views

GROCERY = [  # title, category
    ("Granny Smith", "Fruit > Apple > Granny Smith"), ("Royal Gala", "Fruit > Apple > Royal Gala"),
    ("Orange", "Fruit > Orange > Orange"), ("Bravo Apple Juice", "Packages > Juice > Bravo Apple Juice"),
    ("Bravo Orange Juice", "Packages > Juice > Bravo Orange Juice"),
    ("Arla Natural Yoghurt", "Packages > Yoghurt > Arla Natural Yoghurt"),
    ("Valio Vanilla Yoghurt", "Packages > Yoghurt > Valio Vanilla Yoghurt"),
    ("Alpro Vanilla Soyghurt", "Packages > Soyghurt > Alpro Vanilla Soyghurt"),
    ("Oatly Natural Oatghurt", "Packages > Oatghurt > Oatly Natural Oatghurt"),
    ("Arla Standard Milk", "Packages > Milk > Arla Standard Milk"), ("Oatly Oat Milk", "Packages > Oat Milk > Oatly Oat Milk"),
    ("Alpro Fresh Soy Milk", "Packages > Soy Milk > Alpro Fresh Soy Milk"), ("Aubergine", "Vegetables > Aubergine"),
    ("Zucchini", "Vegetables > Zucchini"), ("Red Beet", "Vegetables > Red Beet"), ("Cucumber", "Vegetables > Cucumber"),
]
FASHION = [  # title, category, colour, gender
    ("Acme Men Black Sweaters", "Apparel > Topwear > Sweaters", "Black", "Men"),
    ("Acme Men Black Sweatshirt", "Apparel > Topwear > Sweatshirts", "Black", "Men"),
    ("Acme Men Black Tshirt", "Apparel > Topwear > Tshirts", "Black", "Men"),
    ("Acme Women Black Sweaters", "Apparel > Topwear > Sweaters", "Black", "Women"),
    ("Acme Kids Boys Black Sweaters", "Apparel > Topwear > Sweaters", "Black", "Men"),
    ("Acme Men Black Trousers", "Apparel > Bottomwear > Trousers", "Black", "Men"),
    ("Acme Men Black Jeans", "Apparel > Bottomwear > Jeans", "Black", "Men"),
    ("Acme Men Black Shorts", "Apparel > Bottomwear > Shorts", "Black", "Men"),
    ("Acme Men Navy Blue Trousers", "Apparel > Bottomwear > Trousers", "Navy Blue", "Men"),
    ("Acme Men Blue Trousers", "Apparel > Bottomwear > Trousers", "Blue", "Men"),
    ("Acme Women Black Sandals", "Footwear > Sandal > Sandals", "Black", "Women"),
    ("Acme Women Black Flats", "Footwear > Shoes > Flats", "Black", "Women"),
    ("Acme Women Black Heels", "Footwear > Shoes > Heels", "Black", "Women"),
]


@pytest.fixture(scope="module")
def catalog() -> pd.DataFrame:
    rows = [{C.TITLE: t, C.CATEGORY: c, C.COLOR: "", C.GENDER: "", C.USAGE: ""} for t, c in GROCERY]
    rows += [{C.TITLE: t, C.CATEGORY: c, C.COLOR: col, C.GENDER: g, C.USAGE: "Casual"} for t, c, col, g in FASHION]
    df = pd.DataFrame(rows).assign(**{C.DESCRIPTION: ""})
    return df.assign(**{C.PRODUCT_ID: [f"p{i}" for i in range(len(df))]})


@pytest.fixture(scope="module")
def grades(catalog):
    ann = Annotator(catalog)
    return lambda q: dict(zip(catalog[C.TITLE], ann.grade_all(q).tolist()))


def test_fresh_produce_is_not_answered_by_what_is_made_from_it(grades):
    g = grades("apples")
    assert g["Granny Smith"] == g["Royal Gala"] == 3
    assert g["Bravo Apple Juice"] == 0  # another type, not a substitute for the fruit
    g = grades("apple juice")
    assert g["Bravo Apple Juice"] == 3 and g["Bravo Orange Juice"] == 2 and g["Granny Smith"] == 0
    g = grades("granny smith")
    assert g["Granny Smith"] == 3 and g["Royal Gala"] == 2  # another variety of the same fruit substitutes


def test_flavoured_does_not_answer_a_plain_query(grades):
    for q in ("natural yoghurt", "plain yogurt", "unflavoured yoghurt"):
        g = grades(q)
        assert g["Arla Natural Yoghurt"] == 3, q
        assert g["Valio Vanilla Yoghurt"] == 0, q  # a flavour cannot be taken out
        assert g["Oatly Natural Oatghurt"] == 0, q  # plain, but plant-based for a dairy type
    g = grades("vanilla yoghurt")  # plain yoghurt still serves a vanilla shopper's need
    assert g["Valio Vanilla Yoghurt"] == 3 and g["Arla Natural Yoghurt"] == 2 and g["Alpro Vanilla Soyghurt"] == 0


def test_plant_based_answers_dairy_only_when_asked(grades):
    g = grades("milk")
    assert g["Arla Standard Milk"] == 3 and g["Oatly Oat Milk"] == 0 and g["Alpro Fresh Soy Milk"] == 0
    g = grades("soya milk")
    assert g["Alpro Fresh Soy Milk"] == 3 and g["Oatly Oat Milk"] == 2 and g["Arla Standard Milk"] == 0
    g = grades("oat milk")
    assert g["Oatly Oat Milk"] == 3 and g["Alpro Fresh Soy Milk"] == 2 and g["Arla Standard Milk"] == 0
    g = grades("plant based milk")
    assert g["Oatly Oat Milk"] == g["Alpro Fresh Soy Milk"] == 3 and g["Arla Standard Milk"] == 0
    g = grades("vegan yogurt")
    assert g["Alpro Vanilla Soyghurt"] == 3 and g["Oatly Natural Oatghurt"] == 3 and g["Arla Natural Yoghurt"] == 0
    assert grades("cows milk")["Oatly Oat Milk"] == 0


def test_shoppers_names_and_plurals_for_vegetables(grades):
    for q, title in [("aubergines", "Aubergine"), ("eggplant", "Aubergine"), ("courgettes", "Zucchini"),
                     ("beetroot", "Red Beet")]:
        g = grades(q)
        assert g[title] == 3, q
        assert sum(v > 0 for v in g.values()) == 1, q  # nothing else: not the whole department
    # a word the lexicon does not know names no product, instead of half-matching the catalog
    assert set(grades("rockmelon").values()) == {0}


def test_gender_and_kids_wear_are_central(grades):
    g = grades("black sweaters for men")
    assert g["Acme Men Black Sweaters"] == 3
    assert g["Acme Women Black Sweaters"] == 0  # the other gender
    assert g["Acme Kids Boys Black Sweaters"] == 0  # kids' wear for an adult query
    g = grades("boys sweaters")
    assert g["Acme Kids Boys Black Sweaters"] == 3 and g["Acme Men Black Sweaters"] == 0


def test_sibling_types_substitute_only_when_they_serve_the_same_need(grades):
    g = grades("black sweaters for men")
    assert g["Acme Men Black Sweatshirt"] == 2  # a warm layer for a warm layer
    assert g["Acme Men Black Tshirt"] == 0  # same parent (topwear), another need
    g = grades("black trousers for men")
    assert g["Acme Men Black Trousers"] == 3 and g["Acme Men Black Jeans"] == 2
    assert g["Acme Men Black Shorts"] == 0
    assert grades("black heels")["Acme Women Black Flats"] == 2
    assert grades("black sweaters for men")["Acme Men Black Trousers"] == 0  # same department, another type


def test_colours_a_specific_shade_answers_the_general_one_not_the_reverse(grades):
    assert grades("blue trousers for men")["Acme Men Navy Blue Trousers"] == 3
    g = grades("navy blue trousers for men")
    assert g["Acme Men Navy Blue Trousers"] == 3 and g["Acme Men Blue Trousers"] == 2


def test_a_last_word_cut_off_as_typed_is_read_as_the_type_it_begins(grades):
    g = grades("black womens sanda")
    assert g["Acme Women Black Sandals"] == 3 and g["Acme Women Black Flats"] == 0


def test_per_pair_grade_equals_the_vectorised_annotator(catalog):
    ann = Annotator(catalog)
    views = product_views(catalog)
    for q in ["natural yoghurt", "soya milk", "black sweaters for men", "boys sweaters", "vegan", "eggplant"]:
        it = ann.lexicon.parse(q)
        assert ann.grade_all(q).tolist() == [grade(it, v) for v in views], q


def test_complements_are_graded_one_and_central_attributes_still_fail_them():
    rows = [("Acme Men White Shirt", "Apparel > Topwear > Shirts", "White", "Men"),
            ("Acme Men Red Tie", "Accessories > Ties > Ties", "Red", "Men"),
            ("Acme Women Red Tie", "Accessories > Ties > Ties", "Red", "Women"),
            ("Acme Men Black Belt", "Accessories > Belts > Belts", "Black", "Men")]
    df = pd.DataFrame([{C.PRODUCT_ID: f"c{i}", C.TITLE: t, C.CATEGORY: c, C.COLOR: col, C.GENDER: g, C.USAGE: "",
                        C.DESCRIPTION: ""} for i, (t, c, col, g) in enumerate(rows)])
    g = dict(zip(df[C.TITLE], Annotator(df).grade_all("white shirt for men").tolist()))
    assert g == {"Acme Men White Shirt": 3, "Acme Men Red Tie": 1, "Acme Women Red Tie": 0, "Acme Men Black Belt": 0}
