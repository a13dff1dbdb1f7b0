"""The judge's own shopper vocabulary: product types, how they relate, and attribute words.

Written for the independent judge from everyday shopping knowledge and the ESCI guidelines,
apart from the rule annotator in ``dashclip.queries`` (none of its tables are reused). Every phrase
is written in plain words; ``text.phrase_key`` stems them the same way as queries and titles.

A type has parents (is-a: a Granny Smith is an apple, an apple is a fruit), aliases (other names
for exactly that type) and regional names (what shoppers elsewhere call it: eggplant, courgette).
Substitutes and complements are declared between types and hold for their descendants too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TypeDef:
    name: str
    parents: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    regional: tuple[str, ...] = ()  # another region's or a shopper's name for the same type
    colours: tuple[str, ...] = ()  # the natural colour of a fresh variety (green for Granny Smith)


def _t(name: str, parents: str = "", aliases: str = "", regional: str = "", colours: str = "") -> TypeDef:
    split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
    return TypeDef(name, split(parents), split(aliases), split(regional), split(colours))


# departments: the roots of the type tree
GROCERY_ROOTS = ("fruit", "vegetable", "dairy", "drink")
FASHION_ROOTS = ("clothing", "footwear", "accessories")

TYPES: tuple[TypeDef, ...] = (
    # --- fresh produce -------------------------------------------------------------------------
    _t("produce", aliases="fresh produce"),
    _t("fruit", "produce", "fruits, fresh fruit"),
    _t("vegetable", "produce", "veg, veggie, veggies, vegetables, greens"),
    _t("apple", "fruit", "apples"),
    _t("granny smith", "apple", "granny smith apple", colours="green"),
    _t("golden delicious", "apple", "golden delicious apple", colours="yellow"),
    _t("red delicious", "apple", "red delicious apple", colours="red"),
    _t("royal gala", "apple", "gala, gala apple, royal gala apple", colours="red"),
    _t("pink lady", "apple", "pink lady apple, cripps pink", colours="pink,red"),
    _t("braeburn", "apple", colours="red"),
    _t("fuji apple", "apple", "fuji", colours="red"),
    _t("pear", "fruit"),
    _t("anjou", "pear", "anjou pear"),
    _t("conference", "pear", "conference pear"),
    _t("kaiser", "pear", "kaiser pear, bosc, bosc pear"),
    _t("williams pear", "pear", "williams, bartlett, bartlett pear"),
    _t("banana", "fruit"),
    _t("orange", "fruit", "navel orange, blood orange, valencia orange", colours="orange"),
    _t("mandarin", "fruit", "mandarin orange, easy peeler", colours="orange"),
    _t("satsuma", "mandarin", colours="orange"),
    _t("clementine", "mandarin", colours="orange"),
    _t("tangerine", "mandarin", colours="orange"),
    _t("lemon", "fruit", colours="yellow"),
    _t("lime", "fruit", colours="green"),
    _t("grapefruit", "fruit"),
    _t("red grapefruit", "grapefruit", "pink grapefruit, ruby grapefruit, ruby red grapefruit", colours="red,pink"),
    _t("golden grapefruit", "grapefruit", "white grapefruit, yellow grapefruit", colours="yellow"),
    _t("kiwi", "fruit", "kiwi fruit", "kiwifruit, chinese gooseberry"),
    _t("mango", "fruit"),
    _t("melon", "fruit"),
    _t("cantaloupe", "melon", "cantaloupe melon, cantaloup", "rockmelon, rock melon, muskmelon, musk melon"),
    _t("galia melon", "melon", "galia"),
    _t("honeydew melon", "melon", "honeydew, honey dew melon"),
    _t("watermelon", "melon", "water melon"),
    _t("nectarine", "fruit"),
    _t("peach", "fruit", colours="orange"),
    _t("papaya", "fruit", regional="pawpaw, paw paw"),
    _t("passion fruit", "fruit", "passionfruit", "maracuja, granadilla"),
    _t("pineapple", "fruit", regional="ananas"),
    _t("plum", "fruit"),
    _t("pomegranate", "fruit"),
    _t("avocado", "fruit", "avo, avocado pear"),
    _t("grape", "fruit"),
    _t("apricot", "fruit"),
    _t("fig", "fruit"),
    _t("berry", "fruit", "berries, mixed berries, forest fruit, forest fruits"),
    _t("strawberry", "berry"),
    _t("blueberry", "berry", regional="bilberry"),
    _t("raspberry", "berry"),
    _t("blackberry", "berry"),
    _t("cherry", "berry"),
    _t("cranberry", "berry"),
    _t("asparagus", "vegetable", "asparagus spears"),
    _t("aubergine", "vegetable", regional="eggplant, brinjal, egg plant"),
    _t("cabbage", "vegetable", "white cabbage, head of cabbage"),
    _t("carrot", "vegetable"),
    _t("cucumber", "vegetable"),
    _t("garlic", "vegetable", "garlic bulb, garlic clove"),
    _t("ginger", "vegetable", "ginger root, root ginger"),
    _t("leek", "vegetable"),
    _t("mushroom", "vegetable"),
    _t("brown cap mushroom", "mushroom", "brown cap, brown mushroom",
       "chestnut mushroom, cremini, crimini, swiss brown mushroom"),
    _t("button mushroom", "mushroom", "white mushroom, champignon"),
    _t("portobello mushroom", "mushroom", "portobello, portabella"),
    _t("onion", "vegetable"),
    _t("yellow onion", "onion", regional="brown onion", colours="yellow"),
    _t("red onion", "onion", colours="red"),
    _t("white onion", "onion", colours="white"),
    _t("shallot", "onion"),
    _t("spring onion", "vegetable", regional="scallion, green onion, salad onion"),
    _t("bell pepper", "vegetable", "pepper, sweet pepper", "capsicum, paprika, sweet capsicum"),
    _t("chilli", "vegetable", "chili, chile, chilli pepper, chili pepper, hot pepper"),
    _t("potato", "vegetable", regional="spud"),
    _t("floury potato", "potato", "baking potato, russet, russet potato", "jacket potato"),
    _t("solid potato", "potato", "waxy potato, firm potato, salad potato, new potato, boiling potato"),
    _t("sweet potato", "vegetable", regional="yam, kumara"),
    _t("red beet", "vegetable", "beet, red beetroot", "beetroot"),
    _t("tomato", "vegetable"),
    _t("beef tomato", "tomato", "beefsteak tomato, beefsteak, large tomato"),
    _t("regular tomato", "tomato", "round tomato, salad tomato, classic tomato"),
    _t("vine tomato", "tomato", "tomato on the vine, on the vine tomato, vine ripened tomato",
       "truss tomato, tomato on the truss"),
    _t("cherry tomato", "tomato", "baby tomato"),
    _t("zucchini", "vegetable", regional="courgette, green squash"),
    _t("lettuce", "vegetable"),
    _t("spinach", "vegetable"),
    _t("broccoli", "vegetable"),
    _t("cauliflower", "vegetable"),
    _t("celery", "vegetable"),
    _t("sweetcorn", "vegetable", "corn on the cob, sweet corn"),
    # --- dairy and its plant-based alternatives (base is an attribute: soy milk is a milk) ---------
    _t("dairy", aliases="dairy product, dairy products"),
    _t("milk", "dairy", "milk drink"),
    _t("yoghurt", "dairy", "yogurt, yoghourt, yogourt", "curd, dahi"),
    _t("sour cream", "dairy", "soured cream"),
    _t("creme fraiche", "dairy", "creme fraich"),
    _t("sour milk", "dairy", "soured milk, cultured milk", "filmjolk"),
    _t("kefir", "dairy"),
    _t("buttermilk", "dairy"),
    _t("cream", "dairy", "double cream, whipping cream, single cream, cooking cream"),
    _t("cheese", "dairy"),
    _t("butter", "dairy"),
    # --- drinks ------------------------------------------------------------------------------------
    _t("drink", aliases="drinks, beverage, beverages"),
    _t("juice", "drink", "juices"),
    _t("smoothie", "drink"),
    # --- clothing ----------------------------------------------------------------------------------
    _t("clothing", aliases="clothes, apparel, garment, garments"),
    _t("topwear", "clothing", "top wear, upper wear"),
    _t("bottomwear", "clothing", "bottom wear, bottoms"),
    _t("tshirt", "topwear", "t shirt, tee, tee shirt, tees"),
    _t("polo", "tshirt", "polo shirt, polo t shirt, polo tshirt, polo tee, polos"),
    _t("shirt", "topwear", "button down, button up, dress shirt, button down shirt"),
    _t("top", "topwear", "blouse, tank top, crop top, camisole, cami"),
    _t("tunic", "topwear"),
    _t("kurta", "topwear"),
    _t("kurti", "topwear"),
    _t("sweater", "topwear", "pullover, knitwear, cardigan", "jumper"),
    _t("sweatshirt", "topwear", "hoodie, hoody, hooded sweatshirt, sweat shirt"),
    _t("jacket", "topwear", "coat, windcheater, bomber, bomber jacket, parka, puffer, blazer, rain jacket"),
    _t("waistcoat", "topwear", "waist coat, nehru jacket", "gilet"),
    _t("shrug", "topwear"),
    _t("dupatta", "topwear", "chunni"),
    _t("dress", "clothing", "frock, gown, maxi dress, sundress"),
    _t("jumpsuit", "clothing", "playsuit"),
    _t("trousers", "bottomwear", "trouser, pants, pant, slacks"),
    _t("chinos", "trousers", "chino"),
    _t("jeans", "bottomwear", "jean, denims, denim"),
    _t("track pants", "bottomwear", "track pant, trackpants, joggers, jogger, sweatpants, sweat pants, jogging pants",
       "trackies, jogging bottoms"),
    _t("shorts", "bottomwear", "short, bermuda, bermudas, bermuda shorts"),
    _t("capris", "bottomwear", "capri, capri pants, 3 4 pant, 3 4 pants, three quarter, three quarters, cropped pants"),
    _t("leggings", "bottomwear", "legging, jeggings"),
    _t("tights", "bottomwear", "stockings, stocking, pantyhose, hosiery"),
    _t("skirt", "bottomwear"),
    _t("churidar", "bottomwear", "churidar pants"),
    _t("salwar", "bottomwear", "patiala"),
    _t("lounge pants", "bottomwear", "pyjamas, pajamas, pyjama, pajama, night pants, sleep pants"),
    _t("clothing set", "clothing", "co ord set, coord set, matching set, outfit set"),
    _t("kurta set", "clothing set", "salwar suit, salwar kameez, kurta pyjama, churidar suit, kurta sets"),
    _t("tracksuit", "clothing set, bottomwear", "track suit, jogging suit, sweat suit"),
    _t("innerwear", "clothing", "underwear, lingerie"),
    _t("bra", "innerwear", "brassiere"),
    _t("briefs", "innerwear", "panties, knickers"),
    _t("boxers", "innerwear", "boxer shorts"),
    _t("vest", "innerwear", "undershirt, inner vest"),
    _t("nightwear", "clothing", "nightdress, nightie, night suit"),
    # --- footwear ----------------------------------------------------------------------------------
    _t("footwear", aliases="foot wear"),
    _t("shoes", "footwear", "shoe"),
    _t("casual shoes", "shoes", "casual shoe, sneakers, sneaker, canvas shoes, slip ons, slip on, moccasins, "
       "boat shoes", "plimsolls"),
    _t("loafers", "casual shoes", "loafer"),
    _t("sports shoes", "shoes", "sport shoes, sports shoe, running shoes, running shoe, training shoes, gym shoes, "
       "athletic shoes, tennis shoes, jogging shoes, walking shoes", "trainers, trainer"),
    _t("formal shoes", "shoes", "formal shoe, dress shoes, oxfords, oxford shoes, brogues, derby shoes, "
       "office shoes"),
    _t("heels", "shoes", "heel, high heels, high heel, stilettos, stiletto, pumps, wedges, wedge, heeled shoes, "
       "heeled sandals, block heels, kitten heels, platform heels"),
    _t("flats", "shoes", "flat shoes, ballerinas, ballerina, ballet flats, ballet pumps", "bellies, juttis, mojari"),
    _t("boots", "footwear", "boot"),
    _t("ankle boots", "boots", "ankle boot, chelsea boots, booties, ankle length boots"),
    _t("sandals", "footwear", "sandal"),
    _t("sports sandals", "sandals", "sport sandals, sports sandal, trekking sandals, outdoor sandals",
       "floaters, floater"),
    _t("flip flops", "footwear", "flip flop, flipflops, slippers, slipper, slides, sliders",
       "chappals, chappal"),
    # --- accessories -------------------------------------------------------------------------------
    _t("accessories", aliases="accessory"),
    _t("bag", "accessories", "bags, carry bag"),
    _t("handbag", "bag", "hand bag, purse, tote, tote bag, shoulder bag, sling bag, clutch, satchel"),
    _t("backpack", "bag", "back pack, rucksack, school bag, knapsack, daypack"),
    _t("laptop bag", "bag", "laptop sleeve, messenger bag, office bag"),
    _t("travel bag", "bag", "travel accessory, duffle bag, duffel bag, duffle, duffel, luggage, trolley bag, suitcase"),
    _t("wallet", "accessories", "billfold, card holder"),
    _t("belt", "accessories"),
    _t("cufflinks", "accessories", "cufflink, cuff links, cuff link"),
    _t("pocket square", "accessories"),
    _t("gloves", "accessories", "glove, mittens"),
    _t("headwear", "accessories", "head wear"),
    _t("cap", "headwear", "baseball cap"),
    _t("hat", "headwear"),
    _t("beanie", "headwear", "woolly hat, beanie hat, knit cap"),
    _t("muffler", "accessories"),
    _t("scarf", "accessories", "scarves"),
    _t("stole", "accessories", "shawl"),
    _t("socks", "accessories", "sock, ankle socks"),
    _t("tie", "accessories", "necktie, neck tie, bow tie"),
    _t("umbrella", "accessories"),
    _t("watch", "accessories", "wristwatch, wrist watch, smartwatch"),
    _t("jewellery", "accessories", "jewelry"),
    _t("bracelet", "jewellery", "bangle"),
    _t("necklace", "jewellery", "chain, pendant, necklace and chains"),
    _t("earrings", "jewellery", "earring"),
    _t("ring", "jewellery"),
    _t("sunglasses", "accessories", "shades, sun glasses"),
    _t("gift set", "accessories", "accessory gift set, combo, combo pack, gift pack"),
)

# Processed products that carry a flavour; a fruit named with one of these is its flavour ("apple juice")
MADE_TYPES = ("juice", "smoothie", "yoghurt", "milk", "sour milk", "kefir")
# No flavour word in the title means plain for these (a flavoured yoghurt names its flavour)
PLAIN_BY_DEFAULT = ("milk", "yoghurt", "sour milk", "sour cream", "creme fraiche", "kefir", "buttermilk", "cream")
# Types of which a plant-based version exists: without a base word a shopper means dairy
DAIRY_TYPES = ("dairy",)  # every descendant of dairy
# A product set holds the types its title names ("Tie+Cufflink+Pocket square - Combo Pack")
SET_TYPES = ("gift set",)

# Fresh products commonly sold as juice too: a query for one risks the made-from confusion
JUICED_PRODUCE = ("apple", "orange", "grapefruit", "mandarin", "pineapple", "mango", "pomegranate", "grape", "berry")
# Worn by women only: a query naming one of these asks for women's wear ("flats": not a men's sandal)
WOMENS_TYPES = ("heels", "flats", "kurti", "dupatta", "bra", "skirt", "dress", "jumpsuit", "handbag", "salwar")
# Children of these are substitutes for one another (one apple variety for another)
VARIETIES_SUBSTITUTE = ("apple", "pear", "melon", "mandarin", "grapefruit", "orange", "tomato", "potato",
                        "mushroom", "onion", "headwear")

# Same need, another type: a shopper could buy one instead of the other (ESCI substitute)
SUBSTITUTES: tuple[tuple[str, str], ...] = (
    ("lemon", "lime"), ("peach", "nectarine"), ("orange", "mandarin"), ("potato", "sweet potato"),
    ("juice", "smoothie"), ("sour cream", "creme fraiche"), ("sour milk", "yoghurt"), ("sour milk", "kefir"),
    ("sour milk", "buttermilk"), ("cream", "sour cream"), ("cream", "creme fraiche"),
    ("tshirt", "shirt"), ("tshirt", "top"), ("shirt", "top"), ("top", "tunic"), ("tunic", "kurti"),
    ("kurti", "kurta"), ("kurta", "tunic"), ("sweater", "sweatshirt"), ("sweatshirt", "jacket"),
    ("sweater", "jacket"), ("shrug", "sweater"), ("shrug", "jacket"), ("dress", "jumpsuit"),
    ("trousers", "jeans"), ("trousers", "track pants"), ("trousers", "capris"), ("capris", "leggings"),
    ("leggings", "tights"), ("leggings", "churidar"), ("churidar", "salwar"), ("track pants", "lounge pants"),
    ("track pants", "tracksuit"), ("shorts", "capris"),
    ("casual shoes", "sports shoes"), ("casual shoes", "formal shoes"), ("heels", "flats"), ("flats", "sandals"),
    ("sandals", "flip flops"),
    ("boots", "casual shoes"),
    ("backpack", "laptop bag"), ("backpack", "travel bag"), ("muffler", "scarf"), ("scarf", "stole"),
    ("muffler", "stole"),
)

# Not what was asked, but worn or used together with it (ESCI complement: track pants for running shoes)
COMPLEMENTS: tuple[tuple[str, str], ...] = (
    ("sports shoes", "track pants"), ("sports shoes", "socks"), ("sports shoes", "shorts"), ("casual shoes", "socks"),
    ("formal shoes", "socks"), ("shirt", "tie"), ("shirt", "cufflinks"), ("tie", "cufflinks"),
    ("tie", "pocket square"), ("trousers", "belt"), ("jeans", "belt"), ("kurta", "churidar"), ("kurta", "dupatta"),
    ("kurta", "salwar"), ("kurti", "leggings"), ("kurti", "dupatta"), ("handbag", "wallet"),
)

# --- attribute words ---------------------------------------------------------------------------------
# colour name -> the basic colours it belongs to (a query for "blue" is answered by navy blue)
COLOURS: dict[str, tuple[str, ...]] = {
    "black": ("black",), "white": ("white",), "off white": ("white",), "cream": ("beige",),
    "grey": ("grey",), "gray": ("grey",), "charcoal": ("grey", "black"), "grey melange": ("grey",),
    "steel": ("grey", "silver"), "silver": ("silver", "grey"), "blue": ("blue",), "navy blue": ("blue",),
    "navy": ("blue",), "turquoise blue": ("blue",), "turquoise": ("blue", "green"), "teal": ("blue", "green"),
    "steel blue": ("blue",), "steelblue": ("blue",), "sky blue": ("blue",), "red": ("red",),
    "maroon": ("red", "brown"), "burgundy": ("red", "purple"), "wine": ("red", "purple"), "rust": ("orange", "brown"),
    "green": ("green",), "olive": ("green",), "sea green": ("green",), "fluorescent green": ("green",),
    "neon green": ("green",), "khaki": ("beige", "green"), "yellow": ("yellow",), "mustard": ("yellow",),
    "gold": ("gold", "yellow"), "golden": ("gold", "yellow"), "orange": ("orange",), "peach": ("orange", "pink"),
    "pink": ("pink",), "magenta": ("pink", "purple"), "fuchsia": ("pink",), "purple": ("purple",),
    "lavender": ("purple",), "mauve": ("purple", "pink"), "violet": ("purple",), "brown": ("brown",),
    "tan": ("brown", "beige"), "coffee brown": ("brown",), "coffee": ("brown",), "taupe": ("brown", "grey"),
    "copper": ("brown", "gold"), "bronze": ("brown", "gold"), "beige": ("beige",), "nude": ("beige",),
    "skin": ("beige",), "multi": ("multi",), "multicolour": ("multi",), "multicolor": ("multi",),
    "multicoloured": ("multi",),
}
# other spellings of a colour name
COLOUR_SYNONYMS = {"navy": "navy blue", "gray": "grey", "golden": "gold", "steelblue": "steel blue",
                   "multicolour": "multi", "multicolor": "multi", "multicoloured": "multi", "offwhite": "off white"}
# word -> (gender, age); age "kids" for children's wear, None when the word does not say
GENDERS: dict[str, tuple[str | None, str | None]] = {
    **{w: ("men", "adult") for w in ("men", "man", "male", "gent", "gents", "gentleman", "gentlemen", "guy", "him")},
    **{w: ("women", "adult") for w in ("women", "woman", "lady", "ladies", "female", "her", "womans")},
    **{w: (None, "kids") for w in ("kid", "kids", "child", "children", "baby", "infant", "toddler", "junior")},
    **{w: ("men", "kids") for w in ("boy", "boys")},
    **{w: ("women", "kids") for w in ("girl", "girls")},
    "unisex": ("unisex", None),
}
USAGES: dict[str, str] = {
    **{w: "casual" for w in ("casual", "everyday", "daily wear", "casual wear")},
    **{w: "formal" for w in ("formal", "office", "work", "business", "office wear", "formal wear")},
    **{w: "sports" for w in ("sports", "sport", "gym", "running", "training", "workout", "athletic", "jogging",
                             "activewear", "sportswear", "yoga")},
    **{w: "ethnic" for w in ("ethnic", "traditional", "festive", "ethnic wear")},
    **{w: "party" for w in ("party", "evening", "party wear")},
    "smart casual": "smart casual",
}
# base of a dairy-type product: dairy, or a plant ("plant" when the words do not say which)
BASES: dict[str, str] = {
    "soy": "soy", "soya": "soy", "soja": "soy", "oat": "oat", "oats": "oat", "almond": "almond",
    "coconut": "coconut", "rice": "rice", "pea": "pea", "plant based": "plant", "plant": "plant", "vegan": "plant",
    "dairy free": "plant", "non dairy": "plant", "vegetable based": "plant", "soy based": "soy", "oat based": "oat",
    "cow": "dairy", "cows": "dairy",
}
# phrases that name a dairy-type product and its base at once
BASE_TYPE_PHRASES: dict[str, tuple[str, str]] = {
    "soyghurt": ("yoghurt", "soy"), "soygurt": ("yoghurt", "soy"), "oatghurt": ("yoghurt", "oat"),
    "oatgurt": ("yoghurt", "oat"), "ghurt": ("yoghurt", "plant"), "soymilk": ("milk", "soy"),
    "oatmilk": ("milk", "oat"),
    "soy drink": ("milk", "soy"), "soya drink": ("milk", "soy"), "oat drink": ("milk", "oat"),
    "almond drink": ("milk", "almond"), "rice drink": ("milk", "rice"), "coconut drink": ("milk", "coconut"),
    "plant drink": ("milk", "plant"), "milk alternative": ("milk", "plant"),
}
PLAIN_WORDS = ("natural", "plain", "unflavoured", "unflavored", "unsweetened", "no flavour", "neutral")
# flavours that are not fresh products of their own here
FLAVOURS = ("vanilla", "chocolate", "caramel", "honey", "mint", "cinnamon", "cocoa", "hazelnut", "toffee",
            "coffee", "salted caramel")
FATS: dict[str, str] = {
    **{w: "whole" for w in ("whole", "full fat", "full cream", "standard", "3 percent")},
    **{w: "medium" for w in ("semi skimmed", "semi skim", "medium fat", "half fat", "reduced fat", "1 5 percent")},
    **{w: "low" for w in ("low fat", "light", "lite", "lean")},
    **{w: "skimmed" for w in ("skimmed", "skim", "fat free", "non fat", "zero fat")},
}
ORGANIC_WORDS = ("organic", "ecological", "eco", "ecologically", "krav", "bio")
LACTOSE_FREE_WORDS = ("lactose free", "lactose", "no lactose", "lactofree", "free from lactose")
PULP: dict[str, bool] = {
    **{w: True for w in ("with pulp", "pulp", "with bits", "bits", "juicy bits")},
    **{w: False for w in ("without pulp", "no pulp", "no bits", "without bits", "smooth", "pulp free")},
}
CONJUNCTIONS = ("and", "or")
SET_WORDS = ("set", "sets")  # "tie and cufflinks set": a set of the accessories named
STOP_WORDS = ("the", "a", "an", "with", "in", "of", "to", "my", "on", "buy", "cheap", "best", "new", "online",
              "size", "good", "nice", "quality", "latest", "stylish", "me", "i", "want", "need", "some", "from",
              "by", "at", "style", "look", "carton", "bottle", "pack", "pack of", "pair",
              "pairs", "piece", "pieces", "item", "items", "product", "products", "online shopping", "set of")
SHADE_WORDS = ("light", "dark", "deep", "bright", "pale")  # dropped beside a colour ("light blue")
FOR_WORDS = ("for",)  # unrecognised words after "for" name a purpose ("for juicing") and are not required
# a keyword the product type itself satisfies ("winter jacket": every jacket is winter wear)
KEYWORD_IMPLIED: dict[str, tuple[str, ...]] = {
    "fresh": ("produce",),
    "winter": ("jacket", "sweater", "sweatshirt", "muffler", "scarf", "stole", "gloves", "beanie", "boots"),
    "warm": ("jacket", "sweater", "sweatshirt", "muffler", "scarf", "stole", "gloves", "beanie"),
    "summer": ("shorts", "sandals", "flip flops", "tshirt", "dress", "skirt", "capris"),
}
# phrases that stand for one keyword ("long life" milk is sold as "shelf" milk)
KEYWORD_PHRASES = {"long life": "shelf", "longlife": "shelf", "uht": "shelf", "ambient": "shelf"}
# words a title may use for the same pattern or finish
KEYWORD_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("check", "checked", "checks", "chequered", "checkered", "plaid"), ("stripe", "striped", "stripes"),
    ("print", "printed"), ("solid", "plain"), ("floral", "flower", "flowers"), ("cloudy", "unfiltered"),
    ("hooded", "hood", "hoodie"), ("skinny", "slim"), ("shelf", "uht", "longlife"),
)
# gender/age words in a product title (kids' wear is titled "Kids Boys ...")
TITLE_AGE_WORDS = ("kid", "kids", "boy", "boys", "girl", "girls", "baby", "infant", "junior")
# brands shoppers name that a catalog may not spell at the start of a title
KNOWN_BRANDS: dict[str, str] = {
    "benetton": "united colors of benetton", "ucb": "united colors of benetton", "levis": "levis",
    "levi": "levis", "nike": "nike", "adidas": "adidas", "puma": "puma", "reebok": "reebok",
}
