"""LLM labels that survive a crash and a budget that bounds the spend.

`CachedLLMLabeller` puts a `LabelCache` in front of `dashclip.llm_labeller.LLMLabeller`: a pair
whose label is on disk is never asked again; new labels are appended to the cache file batch by
batch as the answers arrive (flushed and synced), so a killed or rate-limited run loses at most
the batches in flight and a rerun pays only for what is missing. The cache key is (query, product
text, prompt version, model): a changed prompt or another model asks again. The budget caps the
pairs sent (``budget_pairs``) or the HTTP requests made, retries included (``budget_requests``);
pairs left over stay unlabelled (-1) with the reason "over budget".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dashclip.llm_labeller import SYSTEM_PROMPT, UNLABELLED, LLMLabeller, build_messages

log = logging.getLogger(__name__)

# what the model is shown: the system prompt and the pair format; a change makes old labels stale
PROMPT_VERSION = hashlib.sha1((SYSTEM_PROMPT + build_messages([(1, "q", "p")])[1]["content"]).encode()).hexdigest()[:12]
OVER_BUDGET = "over budget"


def cache_key(query: str, product: str, prompt_version: str, model: str) -> str:
    return hashlib.sha1("\x1f".join((query, product, prompt_version, model)).encode()).hexdigest()


class LabelCache:
    """An append-only JSONL file of labels, one line per pair: {"key", "query", "product", "label", ...}."""

    def __init__(self, path: str | Path, model: str, prompt_version: str = PROMPT_VERSION):
        self.path, self.model, self.prompt_version = Path(path), model, prompt_version
        self.labels: dict[str, int] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        bad = 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                self.labels[rec["key"]] = int(rec["label"])
            except (ValueError, KeyError, TypeError):
                bad += 1  # a line cut short when a run was killed mid-write
        if bad:
            log.warning("label cache %s: %d unreadable line(s) ignored", self.path, bad)

    def key(self, query: str, product: str) -> str:
        return cache_key(query, product, self.prompt_version, self.model)

    def append(self, rows: list[tuple[str, str, int]]) -> None:
        """(query, product, label) rows, written and synced before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for q, p, label in rows:
            k = self.key(q, p)
            self.labels[k] = int(label)
            lines.append(json.dumps({"key": k, "query": q, "product": p, "label": int(label),
                                     "prompt_version": self.prompt_version, "model": self.model}))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())


@dataclass
class CachedResult:
    labels: np.ndarray  # (N,) int64, -1 where unlabelled
    cached: int = 0  # pairs answered from the cache
    asked: int = 0  # distinct pairs sent to the endpoint
    requests: int = 0
    over_budget: int = 0  # distinct pairs not sent because the budget was spent
    failures: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        n = len(self.labels)
        return {"pairs": n, "labelled": int((self.labels != UNLABELLED).sum()), "from_cache": self.cached,
                "asked": self.asked, "requests": self.requests, "over_budget": self.over_budget,
                "failed": len(self.failures)}


class CachedLLMLabeller:
    def __init__(self, labeller: LLMLabeller, cache: LabelCache, budget_pairs: int | None = None,
                 budget_requests: int | None = None):
        self.labeller, self.cache = labeller, cache
        self.budget_pairs, self.budget_requests = budget_pairs, budget_requests

    def label(self, queries: list[str], products: list[str], progress: bool = False) -> CachedResult:
        keys = [self.cache.key(q, p) for q, p in zip(queries, products)]
        todo: dict[str, int] = {}  # key -> first pair index; a repeated pair is asked once
        for i, k in enumerate(keys):
            if k not in self.cache.labels:
                todo.setdefault(k, i)
        n_cached = len(keys) - sum(1 for k in keys if k in todo)
        first = list(todo.values())
        if self.budget_pairs is not None:
            first = first[: self.budget_pairs]
        cfg = self.labeller.config
        chunk = cfg.batch_size * cfg.max_concurrency
        requests, asked, failures, s = 0, 0, [], 0
        while s < len(first) and (self.budget_requests is None or requests < self.budget_requests):
            idx = first[s:s + chunk]
            if self.budget_requests is not None:  # at least one request per batch
                idx = idx[: (self.budget_requests - requests) * cfg.batch_size]
            qs, ps = [queries[i] for i in idx], [products[i] for i in idx]
            res = self.labeller.label(qs, ps, progress=progress,
                                      on_batch=lambda got: self.cache.append([(qs[j], ps[j], g) for j, g in got.items()]))
            requests += res.requests
            asked += len(idx)
            failures += [{**f, "index": idx[f["index"]]} for f in res.failures]
            s += len(idx)
        unsent = len(todo) - asked
        labels = np.array([self.cache.labels.get(k, UNLABELLED) for k in keys], dtype=np.int64)
        result = CachedResult(labels, n_cached, asked, requests, unsent, failures)
        log.info("LLM labels: %s", result.summary())
        return result
