"""An independent ESCI judge of query–product pairs, written apart from the rule annotator.

    from dashclip.judge import Judge
    judge = Judge(products)                  # an ingested products frame (title and category at least;
                                             # description, color, gender, usage when present)
    judge.grade_all("natural yoghurt")       # (n_products,) int64: 3 E, 2 S, 1 C, 0 I
    judge.explain("natural yoghurt", row)    # "I:same_type+flavoured_for_plain"
    judge.intent("eggplant")                 # "vegetable_names"

It shares no code or word list with ``dashclip.queries`` (the annotator that labels stage 2), so
figures under this judge do not measure agreement with the training labeller's own rules. Its
vocabulary is in ``lexicon.py``; what a product is in ``products.py``; what a query asks in
``reading.py``; the grades below in ``grader.py``.

Grades (Amazon Shopping Queries, ESCI):
- E (3) exact: the product is what was asked and matches every attribute the query states.
- S (2) substitute: not exactly it, but it serves the same need and could be bought instead.
- C (1) complement: it does not serve the query but is used together with what was asked.
- I (0) irrelevant, or it fails a central aspect of the query.

What a product is: its type from the title's head noun and the category path ("Bravo Apple Juice"
is a juice, flavour apple; "Alpro Vanilla Soyghurt" a yoghurt on a soy base, flavour vanilla;
"Arla Natural Yoghurt" a plain dairy yoghurt). The title wins when the two disagree, the category
path when it is more specific or names the processed product ("Tropicana Golden Grapefruit" under
Juice is a grapefruit juice). Fashion products add colour, gender, age (kids' wear says "Kids",
"Boys", "Girls"), usage and brand (the title's words before its gender word).

What a query asks: its head type (the processed product when one is named, else the last type;
types joined by "and"/"or" are alternatives), synonyms and regional names (eggplant = aubergine,
courgette = zucchini, capsicum = bell pepper, beetroot = red beet, trainers = sports shoes,
pants = trousers, jumper = sweater), and attributes: colour, gender/age, usage, brand, base (dairy,
soy, oat, plant), plain or flavours, fat level, organic, lactose-free, pulp; other words are free
keywords the product's text must carry, except purpose words after "for" ("oranges for juicing").

Type relation, product to query head:
- same type: the product's type is the head or under it (a Granny Smith for "apples").
- substitute type: the generic type above a specific head (narrower_query_type); another variety
  of the same fresh product (sibling_variety: Royal Gala for "granny smith"); a declared substitute
  (substitute_type, ``lexicon.SUBSTITUTES``: jeans for "trousers", flats for "heels", limes for
  "lemons", sour milk for "yoghurt"); a set holding the head (set_contains_type); one item of the
  set a query names (set_component: a tie for "tie and cufflinks set").
- complement type (``lexicon.COMPLEMENTS``): track pants for "running shoes", a tie for "shirt".
- anything else is irrelevant, with two named cases: made_from_query_product (apple juice for
  "apples": a juice is not the fruit and is not used with it, so not even a complement) and
  ingredient_not_product (apples for "apple juice").

Central attributes (a failure makes a same-type or substitute-type product I):
- gender and age: a product explicitly for the other gender (unisex answers both), kids' wear for
  an adult query and the reverse; fit and sizes differ, so it does not serve the shopper.
- dairy against plant-based: a dairy type named without a base ("milk", "yoghurt") asks for dairy,
  and plant-based alternatives do not substitute it (plant_based_for_dairy). A plant base named
  ("oat milk", "soy yoghurt", "vegan", "dairy free") is not answered by dairy (dairy_for_plant_based);
  another plant base is a substitute (base_mismatch). "lactose free": dairy with lactose fails
  (contains_lactose); plant-based products are lactose-free and substitute (plant_based_for_lactose_free).
- plain against flavoured: a plain query ("natural yoghurt") is not answered by a flavoured product
  (flavoured_for_plain). The reverse is a substitute (plain_for_flavoured: plain yoghurt serves a
  "vanilla yoghurt" shopper's need and takes a flavour; a flavour cannot be taken out).
Non-central attributes (each failure leaves at best S): colour (navy blue answers "blue", blue does
not answer "navy blue"; an unknown colour fails), usage, brand (equal, or one is the other's house:
adidas / adidas originals), flavour (another flavour, a blend, unknown), another plant base, fat
level, organic, pulp, and each free keyword the product's text lacks.

Grade: same type: E without failures, S with non-central failures. Substitute type: S when it fails
no attribute, I when it fails one as well (too_many_mismatches: another type in another colour is
no longer a stand-in for what was asked). Complement type: C. A central failure: I. A query naming
no type ("nike", "black"): E when every stated attribute (and keyword) holds, S when at least half
do, else I; gender/age stay central. A query that spells out a branded product's full title
("tropicana mandarin morning") asks for that product: E (named_product).

What a query says without naming it: a brand that makes one base or one kind of product implies
it ("milk oatly" asks for oat milk, "tropicana oranges" for orange juice); a type only women wear
implies women's wear ("flats"); a last word cut off as typed ("arrow shir") is read as the one
phrase or catalog word it begins, else as a word-start keyword.

Decisions worth stating: trousers and jeans are substitutes both ways, never exact (the query
names the type; both are full-length legwear for the same occasions); track pants and capris are
substitutes for trousers, shorts are irrelevant (they fail full length). Heels and flats substitute
each other, as do flats and sandals (this catalog files flat sandals as flats) and sandals and flip
flops; sneakers are casual shoes (the catalog files them there), trainers sports shoes, and each
substitutes the other. Sweet potatoes and potatoes substitute each other; lemons and limes too;
another fruit does not substitute a fruit. Gender is central: a shopper who names it buys for that
person, and cut and sizes differ.
"""

from dashclip.judge.api import Judge
from dashclip.judge.grader import INTENTS

__all__ = ["Judge", "INTENTS"]
