"""LLM labels cached on disk as they arrive, a budget, and a killed run resumed paying only for what
is missing; against the scripted local chat-completions server of test_llm_labeller."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dashclip.llm_cache import OVER_BUDGET, CachedLLMLabeller, LabelCache
from dashclip.llm_labeller import LLMLabeller
from tests.test_llm_labeller import Resp, chat, config, correct, make_pairs, pairs_in, server  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def labeller(server, cache_path, **kw) -> CachedLLMLabeller:
    budget = {k: kw.pop(k) for k in ("budget_pairs", "budget_requests") if k in kw}
    cfg = config(server.url, **{"batch_size": 5, **kw})
    return CachedLLMLabeller(LLMLabeller(cfg), LabelCache(cache_path, cfg.model), **budget)


def asked(server, since: int = 0) -> list[str]:
    return [q for r in server.requests[since:] for _, q, _ in pairs_in(r["body"])]


def test_good_malformed_slow_and_failing_answers_then_a_rerun_from_the_cache(server, tmp_path):
    queries, products, truth = make_pairs(20)
    server.steps = [lambda b: chat("sorry, I cannot answer in JSON"),  # malformed: re-asked
                    lambda b: Resp(status=503, body=b"busy"),  # failing once: retried
                    lambda b: Resp(delay_s=3.0, body=correct(b).body),  # slower than the 2 s timeout: retried
                    lambda b: Resp(status=400, body=b"bad request")]  # failing for good: that batch stays -1
    path = tmp_path / "labels.jsonl"
    res = labeller(server, path).label(queries, products)
    bad = np.flatnonzero(res.labels == -1)
    assert len(bad) == 5 and res.failures and all("HTTP 400" in f["reason"] for f in res.failures)
    good = res.labels != -1
    np.testing.assert_array_equal(res.labels[good], truth[good])
    lines = path.read_text().splitlines()
    assert len(lines) == 15 and all(json.loads(x)["label"] in (0, 1, 2, 3) for x in lines)
    # a rerun asks only for the 5 pairs that failed
    n = len(server.requests)
    again = labeller(server, path).label(queries, products)
    np.testing.assert_array_equal(again.labels, truth)
    assert sorted(asked(server, n)) == sorted(queries[i] for i in bad)
    assert again.summary()["from_cache"] == 15 and again.asked == 5
    # and a third run pays nothing
    n = len(server.requests)
    third = labeller(server, path).label(queries, products)
    assert len(server.requests) == n and third.requests == 0
    np.testing.assert_array_equal(third.labels, truth)


def test_the_cache_key_holds_the_prompt_version_and_model(server, tmp_path):
    queries, products, truth = make_pairs(5)
    path = tmp_path / "labels.jsonl"
    labeller(server, path).label(queries, products)
    n = len(server.requests)
    other = CachedLLMLabeller(LLMLabeller(config(server.url, batch_size=5)), LabelCache(path, "test-model", "v-other"))
    other.label(queries, products)
    assert len(server.requests) == n + 1  # another prompt version asks again
    twin = labeller(server, path, model="another-model")
    twin.label(queries, products)
    assert len(server.requests) == n + 2


def test_budgets_bound_pairs_and_requests(server, tmp_path):
    queries, products, truth = make_pairs(30)
    res = labeller(server, tmp_path / "a.jsonl", budget_pairs=12).label(queries, products)
    assert res.asked == 12 and res.over_budget == 18 and (res.labels != -1).sum() == 12
    res = labeller(server, tmp_path / "b.jsonl", budget_requests=2).label(queries, products)
    assert res.requests == 2 and (res.labels != -1).sum() == 10 and res.over_budget == 20
    assert OVER_BUDGET == "over budget"


_CHILD = """
import sys
from dashclip.llm_cache import CachedLLMLabeller, LabelCache
from dashclip.llm_labeller import LLMLabeller, LLMLabellerConfig
from tests.test_llm_labeller import make_pairs
url, path = sys.argv[1], sys.argv[2]
q, p, _ = make_pairs(40)
cfg = LLMLabellerConfig(base_url=url, model="test-model", batch_size=5, timeout_s=5)
CachedLLMLabeller(LLMLabeller(cfg), LabelCache(path, cfg.model)).label(q, p)
"""


def test_a_killed_run_resumes_paying_only_for_what_is_missing(server, tmp_path):
    queries, products, truth = make_pairs(40)
    server.default = lambda b: Resp(delay_s=0.2, body=correct(b).body)
    path = tmp_path / "labels.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, server.url, str(path)], env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 10):
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = {json.loads(x)["query"] for x in path.read_text().splitlines()}
    assert 10 <= len(done) < 40  # killed part-way, what arrived is on disk
    server.default = correct
    n = len(server.requests)
    res = labeller(server, path).label(queries, products)
    np.testing.assert_array_equal(res.labels, truth)
    resumed = asked(server, n)
    assert set(resumed) == set(queries) - done  # only the missing pairs, each once
    assert len(resumed) == len(set(resumed)) and res.summary()["from_cache"] == len(done)
