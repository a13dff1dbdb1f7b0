"""Stage 2 on a user's labels: a query log, a human seed from a file, and every problem up front."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dashclip import columns as C
from dashclip.seed import SIMULATED
from tests.test_llm_labeller import server  # noqa: F401 (the scripted chat-completions server)


def tiny_cfg(cat, **kw):
    from dashclip.stage2 import Stage2Config

    base = dict(catalog=str(cat), queries_per_category=4, queries_per_product=0.5, seed_budget=60, epochs=1,
                batch_size=8, random_negatives=8, val_queries=10, cache_dir=None, teacher_epochs=1, cand_bm25=3,
                cand_dense=3, cand_random=2)
    return Stage2Config(**{**base, **kw})


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """A stage-2 run whose seed the rule annotator made (simulated labels)."""
    from dashclip.stage2 import train_stage2
    from dashclip.tiny import make_tiny_checkpoint
    from tests.test_stage1 import small_catalog

    root = tmp_path_factory.mktemp("seed")
    cat = small_catalog(root / "cat", n=60)
    ck1 = make_tiny_checkpoint(root / "ck1", with_query_tower=False)
    summary = train_stage2(tiny_cfg(cat), ck1, root / "ann", progress=False)
    return dict(root=root, cat=cat, ck1=ck1, summary=summary)


def test_the_same_seed_as_a_file_gives_identical_teacher_labels(annotated, monkeypatch):
    import dashclip.queries
    from dashclip.stage2 import train_stage2

    def never(*a, **k):
        raise AssertionError("the rule annotator was called")

    monkeypatch.setattr(dashclip.queries.Annotator, "__init__", never)  # a human seed needs no annotator
    root = annotated["root"]
    seed_file = root / "ann" / "seed_labels.parquet"  # the annotator's output, given back as a human seed
    summary = train_stage2(tiny_cfg(annotated["cat"], seed_judgments=str(seed_file)), annotated["ck1"], root / "file",
                           progress=False)
    assert annotated["summary"]["seed_source"] == SIMULATED
    assert summary["seed_source"] == f"human judgments: {seed_file}"
    key = [C.QUERY_ID, C.PRODUCT_ID]
    a, b = (pd.read_parquet(root / d / "labels.parquet").sort_values(key, kind="stable").reset_index(drop=True)
            for d in ("ann", "file"))
    assert len(a) == len(b) and (a["source"] == "teacher").sum() > 0
    # a simulated seed's annotator also grades the type negatives outside the seed (test_stage2); nobody
    # can grade new pairs for a human seed, so there the teacher labels any it has like the rest
    typed = (a["source"] == "seed_type").to_numpy()
    assert (b["source"] != "seed_type").all() and (b["source"][typed] == "teacher").all()
    pd.testing.assert_frame_equal(a[~typed].reset_index(drop=True), b[~typed].reset_index(drop=True), check_dtype=False)
    for key in ("teacher_agreement", "teacher_agreement_untrained", "seed_pairs", "seed_heldout_pairs"):
        assert summary[key] == annotated["summary"][key], key
    assert summary["validation_judged_by"].startswith("held-out human seed")
    assert annotated["summary"]["validation_judged_by"].startswith(SIMULATED)


def test_training_queries_come_from_the_query_log_and_generated_only_when_asked(annotated):
    from dashclip.stage2 import training_queries

    qlog = annotated["root"] / "qlog.csv"
    pd.DataFrame({C.QUERY_ID: ["u1", "u2", "u3"], C.QUERY: ["red shirt", "blue jeans", "green apple"],
                  "count": [10, 3, 1]}).to_csv(qlog, index=False)
    from dashclip.catalog import load_products

    train_df = load_products(annotated["cat"])
    only = training_queries(tiny_cfg(annotated["cat"], queries_file=str(qlog)), train_df)
    assert only[C.QUERY_ID].tolist() == ["u1", "u2", "u3"]
    both = training_queries(tiny_cfg(annotated["cat"], queries_file=str(qlog), generate_queries=True), train_df)
    assert both[C.QUERY_ID].tolist()[:3] == ["u1", "u2", "u3"] and len(both) > 3
    assert training_queries(tiny_cfg(annotated["cat"]), train_df)[C.QUERY_ID].str.startswith("gen").all()


def test_bad_seed_judgments_stop_stage2_naming_every_problem(annotated, tmp_path, capsys):
    from dashclip.train import main

    bad = tmp_path / "judg.csv"
    pd.DataFrame({C.QUERY_ID: ["q1", "q2"], C.QUERY: ["red shirt", "blue jeans"], C.PRODUCT_ID: ["nope", "p0"],
                  C.LABEL: [2, 9]}).to_csv(bad, index=False)
    rc = main(["stage2", "--stage1", str(annotated["ck1"]), "--out", str(tmp_path / "o"), "--catalog",
               str(annotated["cat"]), "--seed-judgments", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"error: {bad}, row 0, column 'product_id', value 'nope': product_id not in the catalog" in err
    assert f"error: {bad}, row 1, column 'label', value '9': not an integer in [0, 3]" in err
    assert not (tmp_path / "o" / "model.safetensors").exists()


def _keyword_llm(body: dict):
    """A stand-in LLM: exact when the query's last word is in the product text, else irrelevant."""
    from tests.test_llm_labeller import chat, pairs_in

    return chat(json.dumps({"labels": [{"id": i, "label": 3 if q.split()[-1] in p.lower() else 0}
                                       for i, q, p in pairs_in(body)]}))


def test_the_llm_labels_the_mined_pairs_cached_and_within_budget(annotated, server, monkeypatch):
    from dashclip.llm_labeller import ENV_BASE_URL, ENV_MODEL
    from dashclip.stage2 import train_stage2

    monkeypatch.setenv(ENV_BASE_URL, server.url)
    monkeypatch.setenv(ENV_MODEL, "test-model")
    server.default = _keyword_llm
    root = annotated["root"]
    seed_file = root / "ann" / "seed_labels.parquet"
    cfg = tiny_cfg(annotated["cat"], seed_judgments=str(seed_file), labeller="llm")
    s = train_stage2(cfg, annotated["ck1"], root / "llm", progress=False)
    labels = pd.read_parquet(root / "llm" / "labels.parquet")
    assert set(labels["source"]) == {"seed", "llm"} and labels[C.LABEL].isin([0, 1, 2, 3]).all()
    assert s["llm_labels"]["asked"] == s["llm_labelled_pairs"] > 0 and s["llm_agreement"]["pairs"] > 0
    cached = (root / "llm" / "llm_labels.jsonl").read_text().splitlines()
    assert len(cached) == s["llm_labels"]["asked"] + s["llm_agreement"]["pairs"]
    # a rerun pays nothing: every pair is in the cache
    n = len(server.requests)
    again = train_stage2(cfg, annotated["ck1"], root / "llm", progress=False)
    assert len(server.requests) == n and again["llm_labels"]["from_cache"] == s["llm_labelled_pairs"]
    # a budget bounds the pairs sent; without a human seed the annotator is not asked for one
    import dashclip.queries

    monkeypatch.setattr(dashclip.queries.Annotator, "grade_pairs", lambda *a: pytest.fail("annotator asked"))
    capped = train_stage2(cfg.model_copy(update={"seed_judgments": None, "llm_budget_pairs": 7,
                                                  "llm_cache": str(root / "capped.jsonl")}),
                          annotated["ck1"], root / "capped", progress=False)
    assert capped["llm_labels"]["asked"] == 7 and capped["llm_labels"]["over_budget"] > 0
    assert capped["seed_pairs"] == 0 and capped["seed_source"].startswith("none")
    assert len(pd.read_parquet(root / "capped" / "labels.parquet")) == 7


def test_reuse_retrains_when_the_seed_file_changes(annotated, tmp_path):
    from dashclip.stage2 import train_stage2
    from dashclip.train import _up_to_date

    seed = pd.read_parquet(annotated["root"] / "ann" / "seed_labels.parquet")
    path = tmp_path / "seed.csv"
    seed.to_csv(path, index=False)
    cfg = tiny_cfg(annotated["cat"], seed_judgments=str(path))
    train_stage2(cfg, annotated["ck1"], tmp_path / "out", progress=False)
    assert _up_to_date(str(tmp_path / "out"), cfg.model_dump(), str(annotated["ck1"]))
    seed.assign(**{C.LABEL: 3 - seed[C.LABEL]}).to_csv(path, index=False)  # same path, other labels
    assert not _up_to_date(str(tmp_path / "out"), cfg.model_dump(), str(annotated["ck1"]))
