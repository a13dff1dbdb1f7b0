"""Opening the feature store and its Redis: connection strings, fail-fast clients, clear errors.

Feast wants its Redis as `host:port,db=0,password=...,ssl=true` in `feature_store.yaml`
(`connection_string: ${FEAST_REDIS_CONNECTION}`); the rest of the project speaks `REDIS_URL`
(`redis://[:password@]host:port/db`, `rediss://` for TLS, `?ssl_ca_certs=..&ssl_cert_reqs=..`).
`feast_connection_string()` converts one into the other (string values JSON-quoted with every
non-alphanumeric character escaped, so a password with `,` `=` `$` or `#` survives Feast's parser
and the YAML around it), and `python -m features.store env` prints the shell-quoted export line.
URLs and connection strings only reach logs and errors through `mask_url` / `describe`.

Reads on the request path go through `roundtrip(..., deadline=)`, which never waits past the
deadline and never retries a timeout, behind a `CircuitBreaker` that fails calls at once while
Redis is sick. `marker_key` names the key materialization writes per feature view, so a Redis
that lost its data is told apart from one that never had an entity.
"""

from __future__ import annotations

if __name__ == "__main__":  # the command line lives in features.cli: parsed (and --help answered) before Feast loads
    from features.cli import store_main

    raise SystemExit(store_main())

import json
import os
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from features import columns as C

if TYPE_CHECKING:  # feast is imported where it is used: `python -m features.store env` needs none of it
    from feast import FeatureStore, RepoConfig

# the default feature repo folder, relative to the working directory (`python -m features.repo init` makes it)
REPO_DIR = Path("feature_repo")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"


T = TypeVar("T")
# TLS options a REDIS_URL may carry in its query string (redis-py's names)
URL_TLS_OPTIONS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path", "ssl_check_hostname")


class OnlineStoreUnavailable(ConnectionError):
    """Redis (the online store) did not answer; raised fast, the next call retries."""

    detail = "online feature store unavailable"


class CircuitOpen(OnlineStoreUnavailable):
    """Redis failed repeatedly; calls fail at once until a probe succeeds."""


class StoreEmpty(OnlineStoreUnavailable):
    """Redis answers but holds no materialization marker for the model version (lost its data)."""

    def __init__(self, message: str, version: str):
        super().__init__(message)
        self.detail = f"store empty for version {version}"


def mask_url(url: str) -> str:
    """A Redis URL or Feast connection string with its password replaced by `***` (for logs)."""
    if "://" in url:
        u = urlparse(url)
        if u.password is None:
            return url
        netloc = f"{u.username or ''}:***@{u.hostname}" + (f":{u.port}" if u.port else "")
        return u._replace(netloc=netloc).geturl()
    return ",".join("password=***" if p.startswith("password=") else p for p in url.split(","))


def _feast_value(v: str) -> str:
    """A string Feast's parser reads back unchanged: JSON with every non-alphanumeric char escaped.

    Feast splits its connection string on `,`, splits each option on the first `=` and json-decodes
    the value; the whole YAML file is `os.path.expandvars`-ed and YAML-parsed. Escaping leaves only
    letters, digits, `\\u` escapes and the two quotes, which pass all three untouched.
    """
    return '"' + "".join(c if c.isascii() and c.isalnum() else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                         else json.dumps(c)[1:-1] for c in v) + '"'


def feast_connection_string(redis_url: str | None = None) -> str:
    """`redis://user:pw@host:port/3` -> `host:port,db=3,username="user",password="pw"` (Feast's format)."""
    url = redis_url or os.environ.get(C.ENV_REDIS_URL) or DEFAULT_REDIS_URL
    u = urlparse(url)
    if u.scheme not in ("redis", "rediss"):
        raise ValueError(f"{C.ENV_REDIS_URL}={mask_url(url)!r}: expected a redis:// or rediss:// URL")
    parts = [f"{u.hostname or '127.0.0.1'}:{u.port or 6379}"]
    db = (u.path or "/").strip("/")
    if db:
        parts.append(f"db={int(db)}")
    if u.username:
        parts.append(f"username={_feast_value(unquote(u.username))}")
    if u.password:
        parts.append(f"password={_feast_value(unquote(u.password))}")
    if u.scheme == "rediss":
        parts.append("ssl=true")
    for name, values in parse_qs(u.query).items():
        if name not in URL_TLS_OPTIONS:
            raise ValueError(f"{C.ENV_REDIS_URL}={mask_url(url)!r}: unknown option {name!r} "
                             f"(known: {', '.join(URL_TLS_OPTIONS)})")
        value = values[-1]
        parts.append(f"{name}={value.lower()}" if name == "ssl_check_hostname" else f"{name}={_feast_value(value)}")
    return ",".join(parts)


def ensure_connection_env() -> str:
    """Set `$FEAST_REDIS_CONNECTION` from `$REDIS_URL` unless the user set it; return it."""
    if not os.environ.get(C.ENV_FEAST_REDIS):
        os.environ[C.ENV_FEAST_REDIS] = feast_connection_string()
    return os.environ[C.ENV_FEAST_REDIS]


def open_store(repo_dir: Path | str = REPO_DIR) -> FeatureStore:
    """The feature repo's FeatureStore, with the Redis connection taken from the environment."""
    if not (Path(repo_dir) / "feature_store.yaml").is_file():
        raise FileNotFoundError(f"feature repo {repo_dir}: no feature_store.yaml "
                                f"(create it with `python -m features.repo init {repo_dir}`)")
    from feast import FeatureStore

    ensure_connection_env()
    return FeatureStore(repo_path=str(repo_dir))


def redis_client(config: RepoConfig, *, connect_timeout: float = 0.5, timeout: float = 2.0) -> redis.Redis:
    """A redis-py client on the same Redis as the store's online store, set up to fail fast.

    redis-py itself never retries: `roundtrip` resends a batch once when the pooled socket turned
    out dead (Redis restarted between calls) and never after a timeout (a stalled Redis).
    """
    from features.feast_compat import RedisOnlineStoreConfig, RedisType, parse_connection_string

    osc = config.online_store
    if not isinstance(osc, RedisOnlineStoreConfig):
        raise ValueError(f"online_store.type is {getattr(osc, 'type', osc)!r}; the fast path needs 'redis'")
    if osc.redis_type not in (RedisType.redis, RedisType.redis_cluster):
        raise ValueError(f"redis_type {osc.redis_type.value!r} is not supported by the fast path; "
                         "use 'redis' or 'redis_cluster'")
    nodes, kwargs = parse_connection_string(osc.connection_string)
    if not nodes or "$" in nodes[0].get("host", "$"):
        raise ValueError(
            f"online_store.connection_string {mask_url(osc.connection_string)!r} is not host:port[,..]; "
            f"set ${C.ENV_FEAST_REDIS} (or ${C.ENV_REDIS_URL}) before opening the store"
        )
    kwargs.setdefault("socket_connect_timeout", connect_timeout)
    kwargs.setdefault("socket_timeout", timeout)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    if osc.redis_type == RedisType.redis_cluster:
        from redis.cluster import ClusterNode

        return redis.RedisCluster(startup_nodes=[ClusterNode(n["host"], int(n["port"])) for n in nodes], **kwargs)
    return redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **kwargs)


def pack_command(*args: bytes) -> bytes:
    """One Redis command in RESP, packed by hand (redis-py's pipeline packer costs more than Redis)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts += (b"$%d\r\n" % len(a), a, b"\r\n")
    return b"".join(parts)


def roundtrip(client: redis.Redis | redis.RedisCluster, commands: list[bytes], *, keys: list[bytes | None] | None = None,
              deadline: float | None = None, errors: str = "raise") -> list:
    """Send pre-packed commands in one write and read every reply: a pipeline without its overhead.

    A dead pooled socket (Redis restarted since the last call) is dropped and the batch sent once
    more on a fresh connection, if the deadline (a `time.monotonic()` instant) allows; callers only
    send idempotent commands (reads, whole-row HSETs). A timeout is never retried: the socket waits
    at most until the deadline. Connection failures propagate as redis.ConnectionError /
    TimeoutError. A command's error reply (e.g. WRONGTYPE) is raised, or with errors="keep" left in
    its place as a redis.ResponseError so the other replies stay usable.

    On a Redis Cluster `keys` (the key of each command; None: any node) routes every command to
    the node that owns its hash slot, one such batch per node.
    """
    if isinstance(client, redis.RedisCluster):
        return _cluster_roundtrip(client, commands, keys, deadline, errors)
    payload = [b"".join(commands)]
    for attempt in (0, 1):
        conn = client.connection_pool.get_connection()
        try:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise redis.TimeoutError(f"request deadline passed before {describe(client)} was asked")
                conn._sock.settimeout(left)  # redis-py reads with the socket's own timeout
            conn.send_packed_command(payload)
            replies = _read_replies(conn, len(commands))
            break
        except redis.TimeoutError:
            conn.disconnect()  # a half-read socket must not go back to the pool
            raise
        except redis.ConnectionError:
            conn.disconnect()
            if attempt or (deadline is not None and time.monotonic() >= deadline):
                raise
        except BaseException:
            conn.disconnect()
            raise
        finally:
            if deadline is not None and conn._sock is not None:
                conn._sock.settimeout(conn.socket_timeout)
            client.connection_pool.release(conn)
    if errors == "raise":
        for r in replies:
            if isinstance(r, redis.ResponseError):
                raise r
    return replies


def _cluster_roundtrip(client: redis.RedisCluster, commands: list[bytes], keys, deadline, errors: str) -> list:
    if keys is None or len(keys) != len(commands):
        raise ValueError("a Redis Cluster round trip needs the key of every command")
    groups: dict[str, tuple] = {}  # node name -> (node, command positions)
    slots = client.nodes_manager
    for i, k in enumerate(keys):
        node = client.get_default_node() if k is None else slots.get_node_from_slot(client.keyslot(k))
        groups.setdefault(node.name, (node, []))[1].append(i)
    out: list = [None] * len(commands)
    for node, idx in groups.values():
        replies = roundtrip(node.redis_connection, [commands[i] for i in idx], deadline=deadline, errors="keep")
        for i, r in zip(idx, replies):
            out[i] = r
    if any(isinstance(r, redis.exceptions.AskError) for r in out):  # MOVED / ASK: slots changed hands
        slots.initialize()
        raise redis.ConnectionError(f"{describe(client)}: slots moved during the call; the next call uses the new layout")
    if errors == "raise":
        for r in out:
            if isinstance(r, redis.ResponseError):
                raise r
    return out


def _read_replies(conn, n: int) -> list:
    """The next `n` replies on `conn`; an error reply stays in its place as a ResponseError."""
    parser = getattr(conn, "_parser", None)
    if getattr(parser, "_reader", None) is not None and hasattr(parser, "_next_response"):
        try:
            return _read_replies_hiredis(parser, n)
        except socket.timeout:  # the socket errors as redis-py's read_response turns them into
            raise redis.TimeoutError(f"Timeout reading from {conn._host_error()}") from None
        except OSError as e:
            raise redis.ConnectionError(f"Error while reading from {conn._host_error()} : {e.args}") from e
    out = []
    for _ in range(n):
        try:
            out.append(conn.read_response())
        except redis.ResponseError as e:  # an error reply; the connection stays in step
            out.append(e)
    return out


def _read_replies_hiredis(parser, n: int) -> list:
    """`n` replies straight from redis-py's hiredis reader: a socket read feeds as many replies as it
    holds, each taken by one C call (redis-py's `read_response` costs ~10 us of Python per reply:
    a request's 200 stats and embedding replies, a materialize chunk's 5,000 HSET answers)."""
    from redis._parsers.hiredis import NOT_ENOUGH_DATA

    push = getattr(parser, "_hiredis_PushNotificationType", None)
    reader, out = parser._reader, []
    if parser._next_response is not NOT_ENOUGH_DATA:  # one reply cached by can_read()
        out.append(parser._next_response)
        parser._next_response = NOT_ENOUGH_DATA
    while len(out) < n:
        r = reader.gets()
        if r is NOT_ENOUGH_DATA:
            parser.read_from_socket()  # TimeoutError / ConnectionError as redis-py raises them
            continue
        if isinstance(r, redis.ConnectionError) or (isinstance(r, list) and r and isinstance(r[0], redis.ConnectionError)):
            raise r if isinstance(r, redis.ConnectionError) else r[0]
        if push is not None and isinstance(r, push):  # RESP3 push messages are not replies
            parser.handle_push_response(r)
            continue
        out.append(r)
    return out


class CircuitBreaker:
    """Fails calls at once while Redis is sick, instead of each request waiting out its deadline.

    Closed: calls go through. After `failures` consecutive connection failures or timeouts it
    opens: calls raise `CircuitOpen` without touching Redis. `reset_s` after opening, one call
    (the probe) goes through: success closes the circuit, failure opens it for another `reset_s`.
    """

    def __init__(self, failures: int = 5, reset_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.failures, self.reset_s, self.clock = failures, reset_s, clock
        self._lock = threading.Lock()
        self._count, self._opened_at, self._probing = 0, None, False
        self.last_error, self.times_opened = "", 0

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self._probing or self.clock() - self._opened_at >= self.reset_s else "open"

    def check(self) -> None:
        """Raise `CircuitOpen` when open (no probe due), without admitting a call."""
        with self._lock:
            self._refuse_if_open(self.clock())

    def _refuse_if_open(self, now: float) -> None:
        if self._opened_at is None:
            return
        wait = self._opened_at + self.reset_s - now
        if self._probing or wait > 0:
            raise CircuitOpen(f"online store unavailable: circuit open after {self._count} consecutive failures "
                              f"(last: {self.last_error}); next probe in {max(wait, 0):.2f}s")

    def call(self, fn: Callable[[], T]) -> T:
        with self._lock:
            self._refuse_if_open(self.clock())
            probe = self._opened_at is not None
            self._probing = self._probing or probe
        try:
            out = fn()
        except (redis.ConnectionError, redis.TimeoutError, OnlineStoreUnavailable) as e:
            with self._lock:
                self._count += 1
                self.last_error = str(e)
                self._probing = False if probe else self._probing
                if probe or self._count >= self.failures:
                    self.times_opened += self._opened_at is None
                    self._opened_at = self.clock()
            raise
        except BaseException:
            if probe:
                with self._lock:
                    self._probing = False
            raise
        with self._lock:
            self._count, self._opened_at = 0, None
            self._probing = False if probe else self._probing
        return out


def marker_key(view: str, project: str) -> bytes:
    """Key of the marker materialization sets for a (versioned) feature view; ends with the project
    like Feast's own keys, which start with a binary entity key and so never collide with it. The
    `{markers}` hash tag keeps all markers in one Redis Cluster slot (one EXISTS checks them all)."""
    return f"_dashclip_materialized:{{markers}}:{view}:{project}".encode()


def describe(client: redis.Redis | redis.RedisCluster) -> str:
    """Where a client points, for errors and logs: host, port and db, never the password."""
    if isinstance(client, redis.RedisCluster):
        return "redis cluster at " + ",".join(sorted(n.name for n in client.get_nodes()))
    kw = client.connection_pool.connection_kwargs
    return f"redis at {kw.get('host')}:{kw.get('port')} db={kw.get('db', 0)}"


def main(argv: list[str] | None = None) -> int:
    """``python -m features.store env`` (the parser is ``features.cli.store_main``)."""
    from features.cli import store_main

    return store_main(argv)


def run_cli(args) -> int:
    """``env`` after parsing: a shell-quoted export line (a password may hold any character)."""
    print(f"export {C.ENV_FEAST_REDIS}={shlex.quote(feast_connection_string())}")
    return 0
