"""Stage 2 pieces: the annotator's rules, query generation, the teacher learning from seed labels,
and a tiny end-to-end stage-2 run whose checkpoint embeds both sides."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from dashclip import columns as C
from dashclip.catalog import ingest
from dashclip.config import load_model_config
from dashclip.queries import Annotator, generate_queries
from dashclip.teacher import CrossEncoder, agreement, bf16_supported, label_precision, teacher_product_text, train_teacher

COLORS = ["red", "blue", "black", "green"]
TYPES = [("Apparel > Topwear > Tshirts", "Tshirt"), ("Apparel > Topwear > Shirts", "Shirt"),
         ("Footwear > Shoes > Casual Shoes", "Casual Shoes"), ("Apparel > Bottomwear > Jeans", "Jeans")]


def fashion_products() -> pd.DataFrame:
    rows = []
    for i, ((path, noun), color, gender) in enumerate(itertools.product(TYPES, COLORS, ["Men", "Women"])):
        rows.append({C.PRODUCT_ID: f"f{i}", C.TITLE: f"Acme {gender} {color.title()} {noun}", C.DESCRIPTION: "",
                     C.CATEGORY: path, C.COLOR: color.title(), C.GENDER: gender, C.USAGE: "Casual",
                     C.SOURCE: "toy"})
    return pd.DataFrame(rows)


def test_annotator_rules_on_hand_checked_cases():
    p = fashion_products()
    ann = Annotator(p)
    g = dict(zip(p[C.TITLE], ann.grade_all("red t-shirts for men")))
    assert g["Acme Men Red Tshirt"] == 3  # type, colour and gender match
    assert g["Acme Men Blue Tshirt"] == 2  # one attribute off: substitute
    assert g["Acme Women Red Tshirt"] == 0  # other gender: a central aspect fails
    assert g["Acme Men Red Shirt"] == 2  # sibling type that serves the same need, every attribute: substitute
    assert g["Acme Men Red Jeans"] == 0  # same department, another type: irrelevant
    assert g["Acme Men Red Casual Shoes"] == 0


def test_head_noun_rule_and_synonyms():
    p = fashion_products()
    ann = Annotator(p)
    it = ann.lexicon.parse("mens sneakers")
    assert it.types == {"Footwear > Shoes > Casual Shoes"} and it.gender == "men"


def test_generated_queries_are_short_lowercase_and_deterministic():
    p = fashion_products()
    a = generate_queries(p, per_category=5, per_product=1.0, seed=3)
    b = generate_queries(p, per_category=5, per_product=1.0, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert a[C.QUERY_ID].is_unique and a[C.QUERY].is_unique
    assert (a[C.QUERY] == a[C.QUERY].str.lower()).all()
    assert a[C.QUERY].str.split().str.len().max() <= 8
    ann = Annotator(p)
    # most generated queries have at least one relevant product in their own catalog
    share = np.mean([(ann.grade_all(q) >= 2).any() for q in a[C.QUERY]])
    assert share > 0.8


def test_teacher_training_improves_agreement_over_untrained_start():
    torch.manual_seed(0)
    p = fashion_products()
    ann = Annotator(p)
    queries = generate_queries(p, per_category=12, per_product=1.0, seed=0)[C.QUERY].tolist()
    rng = np.random.default_rng(0)
    q_pairs, rows = [], []
    for q in queries:
        for r in rng.choice(len(p), 6, replace=False):
            q_pairs.append(q)
            rows.append(int(r))
    labels = np.array(ann.grade_pairs(q_pairs, rows))
    texts = [teacher_product_text(r) for r in p.to_dict("records")]
    prods = [texts[r] for r in rows]
    n = int(0.8 * len(labels))
    cfg = load_model_config("tiny-random").text
    teacher = CrossEncoder(cfg, max_length=32)
    before = agreement(teacher.predict(q_pairs[n:], prods[n:]), labels[n:])
    train_teacher(teacher, q_pairs[:n], prods[:n], labels[:n], epochs=25, batch_size=32, lr=2e-3, progress=False)
    after = agreement(teacher.predict(q_pairs[n:], prods[n:]), labels[n:])
    assert after["accuracy"] > before["accuracy"] + 0.1, (before, after)
    assert after["macro_f1"] > before["macro_f1"] + 0.1, (before, after)
    assert after["auc_relevant"] > before["auc_relevant"], (before, after)
    # labelling in bf16 (where the CPU has it; float32 otherwise) gives the same grades to rounding
    fp32 = teacher.predict(q_pairs[n:], prods[n:])
    half = teacher.predict(q_pairs[n:], prods[n:], bf16=True)
    np.testing.assert_allclose(half.sum(1), 1.0, atol=1e-5)
    assert np.abs(half - fp32).max() < 0.05 and (half.argmax(1) == fp32.argmax(1)).mean() > 0.95
    if not bf16_supported(torch.device("cpu")):
        np.testing.assert_array_equal(half, fp32)
    # int8 labelling (dynamic quantisation of the linear layers, CPUs without bf16): close to float32,
    # and the teacher itself is left in float32
    q8 = teacher.predict(q_pairs[n:], prods[n:], int8=True)
    np.testing.assert_allclose(q8.sum(1), 1.0, atol=1e-5)
    assert np.abs(q8 - fp32).mean() < 0.02 and (q8.argmax(1) == fp32.argmax(1)).mean() > 0.9
    assert 0.0 < np.abs(q8 - fp32).max()  # it did run quantised
    np.testing.assert_array_equal(teacher.predict(q_pairs[n:], prods[n:]), fp32)
    assert label_precision(torch.device("cpu"), False, True) == "int8"
    assert label_precision(torch.device("cpu"), False, False) == "fp32"


def test_length_grouped_batches_cover_every_pair_once_and_pad_less():
    from dashclip.training import length_grouped_batches
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 64, 1000)
    batches = length_grouped_batches(lengths, 32, 8, np.random.default_rng(1).permutation)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))  # each pair once per epoch
    assert len(batches) == int(np.ceil(1000 / 32)) and max(len(b) for b in batches) == 32
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_padded = sum(len(b) * lengths[b].max() for b in np.array_split(rng.permutation(1000), len(batches)))
    assert padded < 0.8 * random_padded
    # the order is random: another seed gives other batches, the same seed the same ones
    again = length_grouped_batches(lengths, 32, 8, np.random.default_rng(1).permutation)
    assert all((a == b).all() for a, b in zip(batches, again))
    other = length_grouped_batches(lengths, 32, 8, np.random.default_rng(2).permutation)
    assert not all(len(a) == len(b) and (a == b).all() for a, b in zip(batches, other))


TEACHER_TEXT = {"source": "random", "random_init": {
    "model_type": "bert", "vocab_size": 30522, "hidden_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2,
    "intermediate_size": 48, "max_position_embeddings": 64}}


def test_stage2_end_to_end_on_a_tiny_model(tmp_path):
    from dashclip.inference import ProductEmbedder, QueryEmbedder
    from dashclip.stage2 import Stage2Config, train_stage2
    from dashclip.tiny import make_tiny_checkpoint
    from tests.test_stage1 import small_catalog

    cat = small_catalog(tmp_path / "cat", n=60)
    ck1 = make_tiny_checkpoint(tmp_path / "ck1", with_query_tower=False)
    cfg = Stage2Config(catalog=str(cat), queries_per_category=4, queries_per_product=0.5, seed_budget=60,
                       epochs=1, batch_size=8, random_negatives=8, val_queries=10, cache_dir=None, teacher_epochs=1,
                       cand_bm25=3, cand_dense=3, cand_random=2, teacher_text=TEACHER_TEXT)
    summary = train_stage2(cfg, ck1, tmp_path / "ck2", progress=False)
    # the teacher has its own backbone when one is configured (a wider one than the stage-1 text tower)
    import json

    assert json.loads((tmp_path / "ck2" / "teacher" / "text_config.json").read_text())["hidden_size"] == 24
    # the joint option on the same labels: the product projection moves, the towers still load
    # (saved with WiSE-FT alpha 0: the query encoder is the zero-shot text encoder again)
    joint = cfg.model_copy(update={"product_tower": "projection", "reuse_labels_from": str(tmp_path / "ck2"),
                                   "wise_ft_alpha": 0.0})
    s2 = train_stage2(joint, ck1, tmp_path / "ck3", progress=False)
    assert s2["labels_reused_from"] == str(tmp_path / "ck2")
    from dashclip.model import DashCLIP

    m3 = DashCLIP.from_pretrained(tmp_path / "ck3")
    assert m3.meta["wise_ft_alpha"] == 0.0 and s2["wise_ft_alpha"] == 0.0
    zs = m3.text_tower.state_dict()
    assert all(torch.equal(v, zs[k]) for k, v in m3.query_tower.state_dict().items())
    ck2 = DashCLIP.from_pretrained(tmp_path / "ck2")  # the defaults chosen by the WiSE-FT sweep
    assert ck2.meta["wise_ft_alpha"] == 0.5 and ck2.cfg.text_channel == pytest.approx(0.4)
    assert summary["model_version"].startswith("dashclip-tiny-stage2-")
    assert summary["teacher_labelled_pairs"] > 0 and summary["seed_pairs"] <= 60 + 8
    labels = pd.read_parquet(tmp_path / "ck2" / "labels.parquet")
    assert {"seed", "teacher"} <= set(labels["source"]) <= {"seed", "seed_type", "teacher"}
    assert labels[C.LABEL].between(0, 3).all()
    # one directory embeds both sides, into the same space
    q = QueryEmbedder(tmp_path / "ck2").embed(["red shirt", "green apple"])
    prods = ingest(cat, progress=False).products
    e = ProductEmbedder(tmp_path / "ck2").embed_products(prods)
    # served: the 16-d shared space plus the text channel (the tiny text tower's width)
    assert q.shape[1] == e.shape[1] == 16 + ck2.cfg.text.random_init["hidden_size"]


def test_seed_choice_spends_the_budget_on_whole_queries_and_holds_out_a_fixed_prefix():
    from dashclip.stage2 import Stage2Config, choose_seed

    qids = [f"q{i}" for i in range(40)]
    n_cands = [10] * 40
    cfg = Stage2Config(catalog="unused", seed_budget=105, seed_heldout=0.2)
    seed, held = choose_seed(qids, n_cands, cfg, np.random.default_rng(3))
    from dashclip.seed import heldout_queries

    order = [qids[i] for i in np.random.default_rng(3).permutation(40)]
    assert seed == set(order[:10])  # 10 whole queries of 10 pairs fit in 105
    # 20 % of the seed, by a hash of the query id: the same for the same seed given as a file
    assert held == heldout_queries(seed, 0.2, cfg.seed) and len(held) == 2 and held <= seed
    again = choose_seed(qids, n_cands, cfg, np.random.default_rng(3))
    assert again == (seed, held)
    # never more than half of the queries, so the teacher labels queries of its own
    seed_all, _ = choose_seed(qids, n_cands, cfg.model_copy(update={"seed_budget": 10_000}), np.random.default_rng(3))
    assert len(seed_all) == 20


def test_seed_spread_by_department_gives_a_small_department_its_turn():
    import pandas as pd

    from dashclip.stage2 import Stage2Config, choose_seed, query_departments

    # 36 fashion queries and 4 grocery ones; a budget of 8 whole queries
    strata = ["Apparel"] * 36 + ["Fruit"] * 4
    qids = [f"q{i}" for i in range(40)]
    cfg = Stage2Config(catalog="unused", seed_budget=80, seed_heldout=0.2)
    seed, _ = choose_seed(qids, [10] * 40, cfg, np.random.default_rng(3), strata)
    fruit = {q for q, s in zip(qids, strata) if s == "Fruit"}
    assert len(seed) == 8 and seed & fruit == fruit  # every grocery query, then fashion ones
    # the square-root share: 36 ** 0.5 = 6 fashion turns to 4 ** 0.5 = 2 grocery ones
    sqrt_seed, _ = choose_seed(qids, [10] * 40, cfg, np.random.default_rng(3), strata, power=0.5)
    assert len(sqrt_seed) == 8 and len(sqrt_seed & fruit) == 2
    # in random order the same budget reaches the grocery queries in proportion (here none)
    plain, _ = choose_seed(qids, [10] * 40, cfg, np.random.default_rng(3))
    assert len(plain) == 8 and len(plain & fruit) < len(fruit)
    # a query's department: where most of its mined candidates are
    products = pd.DataFrame({C.CATEGORY: ["Fruit > Apple", "Fruit > Pear", "Apparel > Topwear", None]})
    assert query_departments([np.array([0, 1, 2]), np.array([2, 3]), np.array([], dtype=int)], products) == \
        ["Fruit", "", ""]


def test_qcc_targets_leave_out_other_queries_candidates_and_same_category_random_products():
    from dashclip.stage2 import qcc_targets

    # product rows 0..5; leaf categories: 0,0 tshirts; 1 shirts; 2 shoes
    cats = np.array([0, 0, 1, 1, 2, 2])
    batch = [("men tshirts", np.array([0, 2]), np.array([3.0, 0.0], dtype=np.float32)),
             ("shoes", np.array([4]), np.array([2.5], dtype=np.float32))]
    rows = np.array([0, 1, 2, 3, 4, 5])  # 1, 3, 5: random catalog products
    labels, valid = qcc_targets(batch, rows)
    assert labels.tolist() == [[3, 0, 0, 0, 0, 0], [0, 0, 0, 0, 2.5, 0]]
    # own candidates and every random product take part; the other query's candidates do not
    assert valid.tolist() == [[True, True, True, True, False, True], [False, True, False, True, True, True]]
    _, masked = qcc_targets(batch, rows, cats, mask_grade=2.0)
    # row 1 shares the tshirts category of query 0's exact match, row 5 the shoes of query 1's:
    # left out of that query's softmax rather than taught as irrelevant; own candidates stay in,
    # whatever their category (row 2 is a labelled 0 in the shirts category)
    assert masked.tolist() == [[True, False, True, True, False, True], [False, True, False, True, True, False]]
    # a grade under the threshold masks nothing
    _, strict = qcc_targets(batch, rows, cats, mask_grade=3.0)
    assert strict[1].tolist() == valid[1].tolist() and strict[0].tolist() == masked[0].tolist()


def test_a_saved_teacher_loads_with_its_version_and_labels_alike(tmp_path):
    from dashclip.checkpoint import CheckpointError
    from dashclip.teacher import load_teacher, save_teacher, teacher_labels

    torch.manual_seed(0)
    teacher = CrossEncoder(load_model_config("tiny-random").text, max_length=32)
    version = save_teacher(teacher, tmp_path / "t", {"note": "test"})
    again = load_teacher(tmp_path / "t", "cpu")
    assert again.model_version == version and version.startswith("teacher-") and again.max_length == 32
    q, p = ["red shirt", "blue jeans women"], ["Acme Men Red Shirt | Apparel > Topwear > Shirts", "Acme Women Blue Jeans"]
    np.testing.assert_allclose(teacher_labels(again, q, p), teacher_labels(teacher, q, p), rtol=0, atol=1e-6)
    assert save_teacher(again, tmp_path / "t2") == version  # same weights and config, same version
    cfg = (tmp_path / "t" / "config.json").read_text()
    (tmp_path / "t" / "config.json").write_text(cfg.replace('"max_length": 32', '"max_length": 48'))
    with pytest.raises(CheckpointError, match="do not match the content_sha256"):
        load_teacher(tmp_path / "t")


def _grocery_catalog() -> pd.DataFrame:
    rows = [("Granny Smith", "Fruit > Apple > Granny Smith")] * 6 + [("Royal Gala", "Fruit > Apple > Royal Gala")] * 6 + [
        ("Bravo Apple Juice", "Packages > Juice > Bravo Apple Juice"), ("Bravo Orange Juice", "Packages > Juice > Bravo Orange Juice"),
        ("Arla Natural Yoghurt", "Packages > Yoghurt > Arla Natural Yoghurt"),
        ("Arla Natural Yoghurt", "Packages > Yoghurt > Arla Natural Yoghurt"),
        ("Valio Vanilla Yoghurt", "Packages > Yoghurt > Valio Vanilla Yoghurt"), ("Orange", "Fruit > Orange > Orange")]
    return pd.DataFrame([{C.PRODUCT_ID: f"g{i}", C.TITLE: t, C.CATEGORY: c, C.DESCRIPTION: "", C.COLOR: "", C.GENDER: "",
                          C.USAGE: "", C.SOURCE: "grocery"} for i, (t, c) in enumerate(rows)])


def test_mining_by_type_finds_the_juice_for_a_fruit_and_the_flavoured_for_a_plain_query():
    from dashclip.type_negatives import TypeNegativeMiner

    prods = _grocery_catalog()
    title = prods[C.TITLE].to_numpy()
    miner = TypeNegativeMiner(prods)
    other, same = miner.candidates("apples")
    assert set(title[other]) == {"Bravo Apple Juice"} and len(same) == 0  # shares "apple", another type
    other, same = miner.candidates("natural yoghurt")
    assert set(title[same]) == {"Valio Vanilla Yoghurt"}  # the type, without the query's modifier
    mined = miner.mine(["apples", "natural yoghurt", "tshirt"], k=2, seed=0)
    assert set(title[mined[0]]) == {"Bravo Apple Juice"} and "Valio Vanilla Yoghurt" in set(title[mined[1]])
    assert len(mined[2]) == 0  # a type the catalog does not hold: nothing to contrast
    assert all(len(m) <= 2 for m in mined)
    again = miner.mine(["apples", "natural yoghurt", "tshirt"], k=2, seed=0)
    assert all((a == b).all() for a, b in zip(mined, again))


def test_mining_adds_type_negatives_to_the_candidates_only_when_the_knob_is_on(tmp_path):
    from dashclip.model import DashCLIP
    from dashclip.stage2 import Stage2Config, candidate_pairs

    prods = _grocery_catalog()
    qpath = tmp_path / "q.csv"
    pd.DataFrame({C.QUERY_ID: ["u1"], C.QUERY: ["apples"]}).to_csv(qpath, index=False)
    torch.manual_seed(0)
    model = DashCLIP(load_model_config("tiny-random"))
    p_train = np.random.default_rng(0).normal(size=(len(prods), 16)).astype(np.float32)
    juice = int(np.nonzero(prods[C.TITLE].to_numpy() == "Bravo Apple Juice")[0][0])
    found = {}
    for k in (0, 2):
        cfg = Stage2Config(catalog="unused", queries_file=str(qpath), queries_per_category=0, queries_per_product=0.0,
                           cand_bm25=0, cand_dense=2, cand_random=0, cand_type=k)
        queries, cands, pairs = candidate_pairs(cfg, model, prods, p_train, np.random.default_rng(0))
        c = cands[queries[C.QUERY].tolist().index("apples")]
        found[k] = (juice in set(c.tolist()), len(c))
    # the embedding's two (random here) do not reach the juice; the type miner adds it
    assert found[0] == (False, 2) and found[2][0] and found[2][1] > 2


def test_type_negatives_outside_the_seed_take_the_seed_annotators_grade_when_asked(tmp_path):
    from dashclip.model import DashCLIP
    from dashclip.stage2 import Stage2Config, build_label_set
    from dashclip.tiny import make_tiny_checkpoint
    from dashclip.type_negatives import TypeNegativeMiner

    prods = _grocery_catalog()
    qpath = tmp_path / "q.csv"
    queries = ["apples", "natural yoghurt", "oranges", "granny smith apples", "apple juice", "royal gala apples"]
    pd.DataFrame({C.QUERY_ID: [f"u{i}" for i in range(len(queries))], C.QUERY: queries}).to_csv(qpath, index=False)
    model = DashCLIP.from_pretrained(make_tiny_checkpoint(tmp_path / "ck1", with_query_tower=False))
    p_train = np.random.default_rng(0).normal(size=(len(prods), 16)).astype(np.float32)
    runs = {}
    for who in ("teacher", "seed"):
        cfg = Stage2Config(catalog="unused", queries_file=str(qpath), queries_per_category=0, queries_per_product=0.0,
                           cand_bm25=0, cand_dense=2, cand_random=0, cand_type=2, seed_budget=4, teacher_epochs=1,
                           teacher_text=TEACHER_TEXT, cand_type_labeller=who)
        (tmp_path / who).mkdir()
        runs[who] = build_label_set(cfg, model, prods, p_train, tmp_path / who, progress=False)
    (teach, teach_stats), (seeded, seed_stats) = runs["teacher"], runs["seed"]
    typed = seeded[seeded["source"] == "seed_type"]
    # every type negative of a query outside the seed, graded by the annotator; the teacher labels the others
    mined = TypeNegativeMiner(prods).mine(queries, 2, seed=0)
    by_type = {(f"u{i}", int(r)) for i, rows in enumerate(mined) for r in rows}
    outside = {(q, r) for q, r in zip(teach[C.QUERY_ID], teach["row"]) if (q, r) in by_type} - set(
        zip(teach.loc[teach["source"] == "seed", C.QUERY_ID], teach.loc[teach["source"] == "seed", "row"]))
    assert set(zip(typed[C.QUERY_ID], typed["row"])) == outside and len(outside) > 0
    want = Annotator(prods).grade_pairs(typed[C.QUERY].tolist(), typed["row"].tolist())
    assert typed[C.LABEL].tolist() == want
    assert 0 in want  # the juice for "apples" or "oranges" is not relevant
    assert seed_stats["teacher_labelled_pairs"] == teach_stats["teacher_labelled_pairs"] - len(typed)
    assert seed_stats["seed_type_pairs"] == len(typed) and teach_stats["seed_type_pairs"] == 0
    key = [C.QUERY_ID, "row"]
    assert seeded[key].sort_values(key).values.tolist() == teach[key].sort_values(key).values.tolist()
