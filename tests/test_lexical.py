"""The one tokenizer: the annotator and BM25 read words the same way."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dashclip import columns as C
from dashclip.lexical import normalise, stem, tokens
from dashclip.queries import Annotator
from dashclip.retrieval import BM25Index


def test_plurals_and_their_singulars_are_one_word():
    for plural, singular in [("apples", "apple"), ("shoes", "shoe"), ("tomatoes", "tomato"), ("dresses", "dress"),
                             ("watches", "watch"), ("ladies", "lady"), ("shirts", "shirt")]:
        assert stem(plural) == stem(singular) == singular, plural
    assert stem("jeans") == "jeans" and stem("shorts") == "shorts"  # plural-only garments keep their name
    assert tokens("Crème-Fraîche & Co's Apples") == ("creme", "fraiche", "and", "cos", "apple")  # 3-letter words stay
    assert normalise(None) == ""


def test_annotator_and_bm25_both_match_a_plural_query_to_a_singular_title():
    p = pd.DataFrame({C.PRODUCT_ID: ["a", "b"], C.TITLE: ["Green apple organic", "Blue denim jacket"],
                      C.DESCRIPTION: ["", ""], C.CATEGORY: ["Food > Fruit", "Apparel > Topwear"],
                      C.COLOR: ["", ""], C.GENDER: ["", ""], C.USAGE: ["", ""], C.SOURCE: ["toy", "toy"]})
    grades = Annotator(p).grade_all("organic apples")
    assert grades[0] > grades[1]
    assert grades[0] == 3  # "apples" (keyword) is found as "apple" in the title
    scores = BM25Index(p[C.TITLE].tolist()).scores("apples")
    assert scores[0] > 0 and scores[1] == 0 and np.argmax(scores) == 0
