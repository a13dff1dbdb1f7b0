"""Grade query–product pairs on the ESCI scale with an LLM behind an OpenAI-compatible endpoint.

The pluggable alternative to the cross-encoder teacher (``dashclip.teacher``) for users who have
a chat-completions server (OpenAI, vLLM, llama.cpp, Ollama, ...). Pairs are sent in batches; each
reply must be strict JSON ``{"labels": [{"id": <int>, "label": <0-3>}, ...]}``. Network errors,
timeouts, HTTP 429 and 5xx are retried with exponential backoff (``Retry-After`` honoured, capped);
malformed or partial replies keep their valid labels and only the missing pairs are asked again.
A pair that cannot be labelled gets -1 and a failure record; bad replies never raise.

    cfg = LLMLabellerConfig.from_env()          # DASHCLIP_LLM_BASE_URL / _MODEL / _API_KEY
    result = LLMLabeller(cfg).label(queries, product_texts)
    result.labels                                # (N,) int, -1 where unlabelled
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from tqdm import tqdm

log = logging.getLogger(__name__)

ENV_BASE_URL = "DASHCLIP_LLM_BASE_URL"
ENV_MODEL = "DASHCLIP_LLM_MODEL"
ENV_API_KEY = "DASHCLIP_LLM_API_KEY"

UNLABELLED = -1
ESCI_GRADES = (0, 1, 2, 3)
# Replies with these statuses mean the endpoint, model or key is wrong: later batches would fail
# the same way, so they are not sent.
FATAL_STATUSES = frozenset({401, 403, 404})
_EXCERPT = 200

SYSTEM_PROMPT = """\
You grade how relevant a product is to a shopper's search query, on the Amazon ESCI scale:
3 = exact: the product is what the query asks for and matches every attribute it states.
2 = substitute: not exactly what was asked, but it could be bought instead of it.
1 = partial/complement: matches only part of the query, or is used together with what was asked.
0 = irrelevant: unrelated to the query, or contradicts a key attribute of it.
Each user message lists pairs as "<id>: query=<query> | product=<title, category, attributes>".
Reply with strict JSON only, no prose and no code fences, with exactly one entry per id:
{"labels": [{"id": <int>, "label": <0-3>}, ...]}"""


class LLMLabellerConfig(BaseModel):
    """Where the endpoint is and how hard to try. The API key is a secret: never shown or logged."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    base_url: str  # e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1
    model: str = Field(min_length=1)
    api_key: SecretStr | None = None  # optional: local servers usually need none
    batch_size: int = Field(20, ge=1, description="pairs per request")
    max_retries: int = Field(4, ge=0, description="retries per batch, transport errors and re-asks alike")
    timeout_s: float = Field(60.0, gt=0)
    backoff_s: float = Field(1.0, ge=0, description="first backoff; doubles per retry, with jitter")
    max_backoff_s: float = Field(30.0, ge=0, description="cap on one wait, Retry-After included")
    temperature: float = Field(0.0, ge=0, le=2)
    max_concurrency: int = Field(1, ge=1, description="batches in flight at once")
    json_mode: bool = True  # send response_format={"type": "json_object"}; off for servers that reject it

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {v!r}")
        return v.removesuffix("/chat/completions")

    @classmethod
    def from_env(cls, **overrides) -> LLMLabellerConfig:
        """Read the endpoint from the environment; keyword ``overrides`` win over it and set the rest."""
        values = {}
        for var, key, required in ((ENV_BASE_URL, "base_url", True), (ENV_MODEL, "model", True),
                                   (ENV_API_KEY, "api_key", False)):
            value = os.environ.get(var, "").strip()
            if required and not value and key not in overrides:
                raise ValueError(f"environment variable {var} is not set (needed for LLMLabellerConfig.{key})")
            if value:
                values[key] = value
        return cls(**{**values, **overrides})


@dataclass
class LabelResult:
    """Labels for every pair (-1 where none could be had), why pairs failed, and what it cost."""

    labels: np.ndarray  # (N,) int64 in {-1, 0, 1, 2, 3}
    failures: list[dict] = field(default_factory=list)  # {"index", "reason", "status"}
    requests: int = 0
    retries: int = 0
    malformed_responses: int = 0

    @property
    def n_failed(self) -> int:
        return int((self.labels == UNLABELLED).sum())


@dataclass
class _Reply:
    """One HTTP exchange, classified: ok (content), retry, fail (no retry) or malformed."""

    kind: str
    content: str | None = None
    reason: str = ""
    status: int | None = None
    wait_s: float | None = None  # from Retry-After


@dataclass
class _BatchOutcome:
    labels: dict[int, int] = field(default_factory=dict)  # pair index -> grade
    failures: list[dict] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    malformed: int = 0
    fatal_status: int | None = None

    def fail(self, indices, reason: str, status: int | None) -> None:
        self.failures += [{"index": int(i), "reason": reason, "status": status} for i in indices]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _excerpt(text: str) -> str:
    text = _one_line(text)
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."


def build_messages(pairs: list[tuple[int, str, str]], note: str | None = None) -> list[dict]:
    """System + user messages for ``(id, query, product_text)`` pairs; ``note`` explains a re-ask."""
    lines = [f"{i}: query={_one_line(q)} | product={_one_line(p)}" for i, q, p in pairs]
    head = f"Grade these {len(pairs)} pairs."
    if note:
        head = f"Your previous reply was invalid ({_excerpt(note)}). {head}"
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "\n".join([head, *lines])}]


_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.S | re.I)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _load_items(content: str) -> tuple[list | None, str]:
    """The ``labels`` list of a reply (fenced or not), or None and why not."""
    fenced = _FENCE.search(content)
    text = fenced.group(1) if fenced else content.strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"content is not JSON ({e.msg}): {_excerpt(content)!r}"
    items = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None, f'JSON has no "labels" list: {_excerpt(content)!r}'
    return items, ""


def parse_labels(content: str, expected_ids: set[int]) -> tuple[dict[int, int], list[str]]:
    """Valid ``id -> grade`` entries of a reply and the problems found (empty when it is clean).

    An expected id counts only when it appears exactly once with an integer grade in 0..3.
    """
    items, why = _load_items(content)
    if items is None:
        return {}, [why]
    seen: dict[int, list] = {}
    problems = []
    for item in items:
        if isinstance(item, dict) and _is_int(item.get("id")):
            seen.setdefault(item["id"], []).append(item.get("label"))
        else:
            problems.append(f"entry without an integer id: {_excerpt(repr(item))}")
    got = {i: v[0] for i, v in seen.items()
           if i in expected_ids and len(v) == 1 and _is_int(v[0]) and v[0] in ESCI_GRADES}
    checks = (("missing ids", sorted(expected_ids - seen.keys())),
              ("repeated ids", sorted(i for i in expected_ids & seen.keys() if len(seen[i]) > 1)),
              ("labels not an integer 0..3", [f"{i}={seen[i][0]!r}" for i in sorted(expected_ids & seen.keys())
                                              if len(seen[i]) == 1 and i not in got]),
              ("unknown ids", sorted(seen.keys() - expected_ids)))
    problems += [f"{what}: {', '.join(map(str, ids[:10]))}" for what, ids in checks if ids]
    return got, problems


def retry_after_seconds(value: str | None, cap: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), capped; None if absent."""
    if not value:
        return None
    try:
        wait = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        wait = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(wait, 0.0), cap)


class LLMLabeller:
    """Labels pairs through one chat-completions endpoint; see ``LLMLabellerConfig``."""

    def __init__(self, config: LLMLabellerConfig, client: httpx.Client | None = None):
        self.config = config
        self._client = client  # optional shared client (its own timeout/headers are not touched)
        self._url = f"{config.base_url}/chat/completions"
        self._rng = random.Random()

    def label(self, queries: list[str], products: list[str], progress: bool = False,
              on_batch: Callable[[dict[int, int]], None] | None = None) -> LabelResult:
        """Grade ``queries[i]`` against ``products[i]`` (product text: title, category, attributes).
        ``on_batch`` gets each batch's ``{pair index: grade}`` as it arrives (e.g. to cache them)."""
        if len(queries) != len(products):
            raise ValueError(f"queries and products differ in length: {len(queries)} != {len(products)}")
        n, bs = len(queries), self.config.batch_size
        result = LabelResult(labels=np.full(n, UNLABELLED, dtype=np.int64))
        batches = [list(range(s, min(s + bs, n))) for s in range(0, n, bs)]
        abort: dict[str, int] = {}  # set once a batch gets a FATAL_STATUSES reply
        with self._open_client() as client:
            outcomes = self._run_batches(client, batches, queries, products, abort)
            for out in tqdm(outcomes, total=len(batches), desc="LLM labels", disable=not progress):
                self._merge(result, out)
                if on_batch is not None and out.labels:
                    on_batch(out.labels)
        self._log_summary(result)
        return result

    @contextlib.contextmanager
    def _open_client(self) -> Iterator[httpx.Client]:
        if self._client is not None:
            yield self._client
            return
        headers = {}
        if self.config.api_key is not None:
            headers["Authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        limits = httpx.Limits(max_connections=self.config.max_concurrency)
        with httpx.Client(timeout=self.config.timeout_s, headers=headers, limits=limits) as client:
            yield client

    def _run_batches(self, client, batches, queries, products, abort) -> Iterator[_BatchOutcome]:
        def run(indices: list[int]) -> _BatchOutcome:
            if abort:
                out = _BatchOutcome()
                out.fail(indices, f"not sent: an earlier batch got HTTP {abort['status']} "
                                  "(check base_url, model and api_key)", None)
                return out
            out = self._label_batch(client, indices, queries, products)
            if out.fatal_status is not None:
                abort.setdefault("status", out.fatal_status)
            return out

        if self.config.max_concurrency == 1:
            yield from map(run, batches)
            return
        with ThreadPoolExecutor(self.config.max_concurrency) as pool:
            yield from pool.map(run, batches)

    def _label_batch(self, client: httpx.Client, indices: list[int], queries, products) -> _BatchOutcome:
        """Ask for one batch until every pair has a valid grade or the retries are spent."""
        cfg, out = self.config, _BatchOutcome()
        pending = {k + 1: i for k, i in enumerate(indices)}  # prompt id (1-based, kept on re-asks) -> pair index
        note, reason, status, waits = None, "", None, 0
        for attempt in range(cfg.max_retries + 1):
            if attempt:
                out.retries += 1
            out.requests += 1
            pairs = [(k, queries[i], products[i]) for k, i in pending.items()]
            reply = self._send(client, build_messages(pairs, note))
            status = reply.status
            if reply.kind == "fail":
                out.fail(pending.values(), reply.reason, reply.status)
                out.fatal_status = reply.status if reply.status in FATAL_STATUSES else None
                return out
            if reply.kind == "retry":
                reason = reply.reason
                log.debug("LLM batch at pair %d: %s (attempt %d)", indices[0], reason, attempt + 1)
                if attempt < cfg.max_retries:
                    time.sleep(reply.wait_s if reply.wait_s is not None else self._backoff(waits))
                    waits += 1
                continue
            got, problems = parse_labels(reply.content, set(pending)) if reply.kind == "ok" else ({}, [reply.reason])
            for k, grade in got.items():
                out.labels[pending.pop(k)] = grade
            if problems:
                out.malformed += 1
                reason = note = "; ".join(problems)
            if not pending:
                return out
        out.fail(pending.values(), f"gave up after {cfg.max_retries} retries: {reason}", status)
        return out

    def _send(self, client: httpx.Client, messages: list[dict]) -> _Reply:
        """POST one chat completion and classify what came back."""
        try:
            r = client.post(self._url, json=self._payload(messages))
        except httpx.TimeoutException as e:
            return _Reply("retry", reason=f"timeout after {self.config.timeout_s}s ({type(e).__name__})")
        except httpx.RequestError as e:
            return _Reply("retry", reason=f"network error: {type(e).__name__}: {_excerpt(str(e))}")
        code, why = r.status_code, f"HTTP {r.status_code}: {_excerpt(r.text)!r}"
        if code == 429 or code >= 500:
            return _Reply("retry", reason=why, status=code,
                          wait_s=retry_after_seconds(r.headers.get("retry-after"), self.config.max_backoff_s))
        if not 200 <= code < 300:
            return _Reply("fail", reason=why, status=code)
        try:
            content = r.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            content = None
        if not isinstance(content, str):
            return _Reply("malformed", reason=f"reply is not a chat completion: {_excerpt(r.text)!r}")
        return _Reply("ok", content=content)

    def _payload(self, messages: list[dict]) -> dict:
        body = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature}
        if self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def _backoff(self, k: int) -> float:
        """k-th exponential backoff with jitter in [50%, 100%] of the (capped) step."""
        step = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** k)
        return step * self._rng.uniform(0.5, 1.0)

    @staticmethod
    def _merge(result: LabelResult, out: _BatchOutcome) -> None:
        if out.labels:
            idx = np.fromiter(out.labels.keys(), dtype=np.int64, count=len(out.labels))
            result.labels[idx] = np.fromiter(out.labels.values(), dtype=np.int64, count=len(out.labels))
        result.failures += out.failures
        result.requests += out.requests
        result.retries += out.retries
        result.malformed_responses += out.malformed

    def _log_summary(self, result: LabelResult) -> None:
        n = len(result.labels)
        log.info("LLM labeller (%s): %d pairs in, %d labelled, %d failed; %d requests, %d retries, "
                 "%d malformed replies", self.config.model, n, n - result.n_failed, result.n_failed,
                 result.requests, result.retries, result.malformed_responses)
        if result.failures:
            log.warning("LLM labeller: %d pairs unlabelled, first reason: %s",
                        len(result.failures), result.failures[0]["reason"])
