"""LLM labeller against a scripted local chat-completions server (no network, a few seconds)."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import numpy as np
import pytest
from pydantic import ValidationError

from dashclip.llm_labeller import (ENV_API_KEY, ENV_BASE_URL, ENV_MODEL, LLMLabeller, LLMLabellerConfig,
                                   build_messages, parse_labels, retry_after_seconds)

KEY = "sk-test-not-a-real-key"
_PAIR = re.compile(r"^(\d+): query=(.*?) \| product=(.*)$", re.M)


@dataclass
class Resp:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0


def chat(content: str) -> Resp:
    return Resp(body=json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode())


def pairs_in(body: dict) -> list[tuple[int, str, str]]:
    """(id, query, product) listed in the user message of a request."""
    return [(int(i), q, p) for i, q, p in _PAIR.findall(body["messages"][1]["content"])]


def truth_of(query: str) -> int:
    return int(re.search(r"grade(\d)", query).group(1))


def labels_json(body: dict, override: dict[int, object] | None = None, drop: set[int] = frozenset()) -> str:
    """The correct reply for a request, with some ids dropped or given other labels."""
    override = override or {}
    items = [{"id": i, "label": override.get(i, truth_of(q))} for i, q, _ in pairs_in(body) if i not in drop]
    return json.dumps({"labels": items})


def correct(body: dict) -> Resp:
    return chat(labels_json(body))


class Scripted:
    """What the server answers: scripted steps in order, then ``default``; records every request."""

    def __init__(self):
        self.steps: list[Callable[[dict], Resp]] = []
        self.default: Callable[[dict], Resp] = correct
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def answer(self, path: str, headers: dict, body: dict) -> Resp:
        with self.lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            step = self.steps.pop(0) if self.steps else self.default
        return step(body)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        resp = self.server.scripted.answer(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        time.sleep(resp.delay_s)
        try:
            self.send_response(resp.status)
            for k, v in {"Content-Type": "application/json", **resp.headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.scripted = Scripted()
    httpd.scripted.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd.scripted
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def make_pairs(n: int) -> tuple[list[str], list[str], np.ndarray]:
    truth = (np.arange(n) * 7 + 3) % 4
    queries = [f"q{i} grade{t}" for i, t in enumerate(truth)]
    products = [f"product {i} | Apparel > Shoes\n> Sneakers | red men casual" for i in range(n)]
    return queries, products, truth


def config(url: str, **kw) -> LLMLabellerConfig:
    base = dict(base_url=url, model="test-model", timeout_s=2.0, backoff_s=0.01, max_backoff_s=0.05)
    return LLMLabellerConfig(**{**base, **kw})


# (1) correct replies
def test_correct_replies_label_everything_and_send_the_right_request(server, caplog):
    caplog.set_level(logging.DEBUG)
    queries, products, truth = make_pairs(45)
    cfg = config(server.url, api_key=KEY, batch_size=20)
    result = LLMLabeller(cfg).label(queries, products)

    np.testing.assert_array_equal(result.labels, truth)
    assert result.failures == [] and (result.requests, result.retries, result.malformed_responses) == (3, 0, 0)
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["authorization"] == f"Bearer {KEY}"
    body = first["body"]
    assert body["model"] == "test-model" and body["temperature"] == 0
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    assert all(w in system["content"] for w in ("exact", "substitute", "complement", "irrelevant", '"labels"'))
    listed = pairs_in(body)
    assert [i for i, _, _ in listed] == list(range(1, 21))
    assert listed[0][1] == queries[0] and listed[0][2] == " ".join(products[0].split())  # one line per pair
    assert [len(pairs_in(r["body"])) for r in server.requests] == [20, 20, 5]
    # the key is never shown or logged
    assert KEY not in repr(cfg) and KEY not in cfg.model_dump_json() and KEY not in caplog.text


def test_no_authorization_header_without_a_key(server):
    queries, products, truth = make_pairs(3)
    result = LLMLabeller(config(server.url, json_mode=False)).label(queries, products)
    np.testing.assert_array_equal(result.labels, truth)
    assert "authorization" not in server.requests[0]["headers"]
    assert "response_format" not in server.requests[0]["body"]


def test_concurrent_batches_give_the_same_labels(server):
    queries, products, truth = make_pairs(95)
    result = LLMLabeller(config(server.url, batch_size=10, max_concurrency=4)).label(queries, products)
    np.testing.assert_array_equal(result.labels, truth)
    assert result.requests == 10 and result.failures == []


def test_empty_input_sends_nothing(server):
    result = LLMLabeller(config(server.url)).label([], [])
    assert result.labels.shape == (0,) and result.requests == 0 and server.requests == []


# (2) 500, then 429 with Retry-After, then success
def test_server_errors_and_rate_limits_are_retried(server):
    server.steps = [lambda b: Resp(500, b"boom"), lambda b: Resp(429, b"slow down", {"Retry-After": "0"})]
    queries, products, truth = make_pairs(5)
    result = LLMLabeller(config(server.url)).label(queries, products)
    np.testing.assert_array_equal(result.labels, truth)
    assert (result.requests, result.retries, result.malformed_responses) == (3, 2, 0)
    assert result.failures == []


def test_retry_after_is_honoured_and_capped():
    assert retry_after_seconds(None, cap=30) is None
    assert retry_after_seconds("2.5", cap=30) == 2.5
    assert retry_after_seconds("3600", cap=30) == 30
    assert retry_after_seconds("-4", cap=30) == 0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", cap=30) == 0  # a date in the past
    assert retry_after_seconds("soon", cap=30) is None


# (3) malformed JSON, then fenced JSON
def test_malformed_then_fenced_json_is_handled(server):
    server.steps = [lambda b: chat('{"labels": [{"id": 1, "label": '),
                    lambda b: chat("Here you go:\n```json\n" + labels_json(b) + "\n```")]
    queries, products, truth = make_pairs(4)
    result = LLMLabeller(config(server.url)).label(queries, products)
    np.testing.assert_array_equal(result.labels, truth)
    assert (result.requests, result.retries, result.malformed_responses) == (2, 1, 1)
    assert "previous reply was invalid" in server.requests[1]["body"]["messages"][1]["content"]


def test_non_chat_body_counts_as_malformed(server):
    server.steps = [lambda b: Resp(body=b"<html>proxy page</html>")]
    queries, products, truth = make_pairs(3)
    result = LLMLabeller(config(server.url)).label(queries, products)
    np.testing.assert_array_equal(result.labels, truth)
    assert result.malformed_responses == 1 and result.retries == 1


# (4) some ids missing and one label out of range: only those are asked again
def test_only_missing_and_invalid_pairs_are_asked_again(server):
    server.steps = [lambda b: chat(labels_json(b, override={5: 7}, drop={2, 3}))]
    queries, products, truth = make_pairs(6)
    result = LLMLabeller(config(server.url)).label(queries, products)
    np.testing.assert_array_equal(result.labels, truth)
    assert [i for i, _, _ in pairs_in(server.requests[1]["body"])] == [2, 3, 5]
    assert (result.requests, result.retries, result.malformed_responses) == (2, 1, 1)


def test_persistently_malformed_replies_give_up_cleanly(server):
    server.default = lambda b: chat(labels_json(b, drop={1}))
    queries, products, truth = make_pairs(4)
    result = LLMLabeller(config(server.url, max_retries=2)).label(queries, products)
    np.testing.assert_array_equal(result.labels, np.r_[-1, truth[1:]])
    assert result.requests == 3 and result.retries == 2 and result.malformed_responses == 3
    assert len(result.failures) == 1 and result.failures[0]["index"] == 0
    reason = result.failures[0]["reason"]
    assert "gave up after 2 retries" in reason and "missing ids: 1" in reason


# (5) persistent 400: no retries, failure recorded per pair
def test_client_error_fails_the_batch_without_retrying(server):
    server.default = lambda b: Resp(400, b'{"error": "response_format is not supported by this model"}')
    queries, products, _ = make_pairs(45)
    result = LLMLabeller(config(server.url, batch_size=20)).label(queries, products)
    assert (result.labels == -1).all() and result.n_failed == 45
    assert result.requests == 3 and result.retries == 0  # one request per batch, no storm
    assert sorted(f["index"] for f in result.failures) == list(range(45))
    first = result.failures[0]
    assert first["status"] == 400 and "HTTP 400" in first["reason"] and "response_format" in first["reason"]


def test_auth_error_stops_sending_later_batches(server):
    server.default = lambda b: Resp(401, b'{"error": "invalid api key"}')
    queries, products, _ = make_pairs(60)
    result = LLMLabeller(config(server.url, api_key="wrong", batch_size=20)).label(queries, products)
    assert (result.labels == -1).all() and len(result.failures) == 60
    assert result.requests == 1
    assert "not sent" in result.failures[-1]["reason"]


# (6) timeouts
def test_timeout_is_retried_then_succeeds(server):
    server.steps = [lambda b: Resp(**vars(correct(b)) | {"delay_s": 0.5})]
    queries, products, truth = make_pairs(3)
    result = LLMLabeller(config(server.url, timeout_s=0.2)).label(queries, products)
    np.testing.assert_array_equal(result.labels, truth)
    assert (result.requests, result.retries) == (2, 1)


def test_persistent_timeout_fails_cleanly(server):
    server.default = lambda b: Resp(**vars(correct(b)) | {"delay_s": 0.5})
    queries, products, _ = make_pairs(3)
    t0 = time.monotonic()
    result = LLMLabeller(config(server.url, timeout_s=0.2, max_retries=1)).label(queries, products)
    assert time.monotonic() - t0 < 2
    assert (result.labels == -1).all() and (result.requests, result.retries) == (2, 1)
    assert all("timeout" in f["reason"] and f["status"] is None for f in result.failures)


def test_unreachable_endpoint_fails_cleanly():
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config(f"http://127.0.0.1:{port}/v1", timeout_s=0.2, max_retries=1)
    result = LLMLabeller(cfg).label(*make_pairs(2)[:2])
    assert (result.labels == -1).all() and result.requests == 2
    assert "gave up" in result.failures[0]["reason"]


# (7) configuration
def test_from_env_names_the_missing_variable(monkeypatch):
    for var in (ENV_BASE_URL, ENV_MODEL, ENV_API_KEY):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match=ENV_BASE_URL):
        LLMLabellerConfig.from_env()
    monkeypatch.setenv(ENV_BASE_URL, "http://127.0.0.1:8000/v1/")
    with pytest.raises(ValueError, match=ENV_MODEL):
        LLMLabellerConfig.from_env()
    monkeypatch.setenv(ENV_MODEL, "qwen2.5-7b-instruct")
    cfg = LLMLabellerConfig.from_env(batch_size=8)
    assert cfg.base_url == "http://127.0.0.1:8000/v1" and cfg.api_key is None and cfg.batch_size == 8
    monkeypatch.setenv(ENV_API_KEY, KEY)
    assert LLMLabellerConfig.from_env().api_key.get_secret_value() == KEY


def test_bad_config_values_name_the_field():
    with pytest.raises(ValidationError, match="base_url"):
        LLMLabellerConfig(base_url="localhost:8000", model="m")
    with pytest.raises(ValidationError, match="batch_size"):
        LLMLabellerConfig(base_url="http://x", model="m", batch_size=0)
    with pytest.raises(ValueError, match="3 != 2"):
        LLMLabeller(LLMLabellerConfig(base_url="http://x", model="m")).label(["a", "b", "c"], ["p", "q"])


def test_parse_labels_is_strict_about_the_schema():
    got, problems = parse_labels('{"labels": [{"id": 1, "label": 3}, {"id": 2, "label": true}, '
                                 '{"id": 3, "label": 1}, {"id": 3, "label": 1}, {"id": 9, "label": 0}, '
                                 '{"label": 2}]}', {1, 2, 3, 4})
    assert got == {1: 3}
    text = " ".join(problems)
    for part in ("missing ids: 4", "repeated ids: 3", "labels not an integer 0..3: 2=True", "unknown ids: 9",
                 "without an integer id"):
        assert part in text
    assert parse_labels("```\n{\"labels\": [{\"id\": 1, \"label\": 0}]}\n```", {1}) == ({1: 0}, [])
    assert parse_labels("[1, 2]", {1})[0] == {}


def test_build_messages_numbers_pairs_one_per_line():
    user = build_messages([(1, "red\nshoes", "Nike | Shoes"), (2, "tea", "Green tea")])[1]["content"]
    assert user.splitlines()[1:] == ["1: query=red shoes | product=Nike | Shoes", "2: query=tea | product=Green tea"]
