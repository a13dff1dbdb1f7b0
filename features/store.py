"""Opening the feature store and its Redis: connection strings, fail-fast clients, clear errors.

Feast wants its Redis as `host:port,db=0,password=...,ssl=true` in `feature_store.yaml`
(`connection_string: ${FEAST_REDIS_CONNECTION}`); the rest of the project speaks `REDIS_URL`
(`redis://[:password@]host:port/db`, `rediss://` for TLS). `feast_connection_string()` converts
one into the other, and `python -m features.store env` prints the export line for a shell.
"""

from __future__ import annotations

if __name__ == "__main__":  # the command line lives in features.cli: parsed (and --help answered) before Feast loads
    from features.cli import store_main

    raise SystemExit(store_main())

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import redis
from feast import FeatureStore, RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig, RedisType
from redis.backoff import NoBackoff
from redis.retry import Retry

from features import columns as C

# the default feature repo folder, relative to the working directory (`python -m features.repo init` makes it)
REPO_DIR = Path("feature_repo")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"


class OnlineStoreUnavailable(ConnectionError):
    """Redis (the online store) did not answer; raised fast, the next call retries."""


def feast_connection_string(redis_url: str | None = None) -> str:
    """`redis://user:pw@host:port/3` -> `host:port,db=3,username=user,password=pw` (Feast's format)."""
    url = redis_url or os.environ.get(C.ENV_REDIS_URL) or DEFAULT_REDIS_URL
    u = urlparse(url)
    if u.scheme not in ("redis", "rediss"):
        raise ValueError(f"{C.ENV_REDIS_URL}={url!r}: expected a redis:// or rediss:// URL")
    parts = [f"{u.hostname or '127.0.0.1'}:{u.port or 6379}"]
    db = (u.path or "/").strip("/")
    if db:
        parts.append(f"db={int(db)}")
    if u.username:
        parts.append(f"username={unquote(u.username)}")
    if u.password:
        parts.append(f"password={unquote(u.password)}")
    if u.scheme == "rediss":
        parts.append("ssl=true")
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
    ensure_connection_env()
    return FeatureStore(repo_path=str(repo_dir))


def redis_client(config: RepoConfig, *, connect_timeout: float = 0.5, timeout: float = 2.0) -> redis.Redis:
    """A redis-py client on the same Redis as the store's online store, set up to fail fast.

    One retry (no backoff) lets a call survive a Redis restart between calls (the pooled socket
    is dead, a fresh one works); a Redis that is down fails in ~connect_timeout.
    """
    osc = config.online_store
    if not isinstance(osc, RedisOnlineStoreConfig):
        raise ValueError(f"online_store.type is {getattr(osc, 'type', osc)!r}; the fast path needs 'redis'")
    if osc.redis_type != RedisType.redis:
        raise ValueError(f"redis_type {osc.redis_type.value!r} is not supported by the fast path; use plain 'redis'")
    nodes, kwargs = RedisOnlineStore._parse_connection_string(osc.connection_string)
    if not nodes or "$" in nodes[0].get("host", "$"):
        raise ValueError(
            f"online_store.connection_string {osc.connection_string!r} is not host:port[,..]; "
            f"set ${C.ENV_FEAST_REDIS} (or ${C.ENV_REDIS_URL}) before opening the store"
        )
    kwargs.setdefault("socket_connect_timeout", connect_timeout)
    kwargs.setdefault("socket_timeout", timeout)
    kwargs["retry"] = Retry(NoBackoff(), 1)
    kwargs["retry_on_error"] = [redis.ConnectionError, redis.TimeoutError]
    return redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **kwargs)


def pack_command(*args: bytes) -> bytes:
    """One Redis command in RESP, packed by hand (redis-py's pipeline packer costs more than Redis)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts += (b"$%d\r\n" % len(a), a, b"\r\n")
    return b"".join(parts)


def roundtrip(client: redis.Redis, commands: list[bytes]) -> list:
    """Send pre-packed commands in one write and read every reply: a pipeline without its overhead.

    A dead pooled socket (Redis restarted since the last call) is dropped and the batch sent once
    more on a fresh connection; callers only send idempotent commands (reads, whole-row HSETs).
    Connection failures propagate as redis.ConnectionError / TimeoutError.
    """
    payload = [b"".join(commands)]
    for attempt in (0, 1):
        conn = client.connection_pool.get_connection()
        try:
            conn.send_packed_command(payload)
            replies = [conn.read_response() for _ in range(len(commands))]
            break
        except (redis.ConnectionError, redis.TimeoutError):
            conn.disconnect()  # a half-read socket must not go back to the pool
            if attempt:
                raise
        except BaseException:
            conn.disconnect()
            raise
        finally:
            client.connection_pool.release(conn)
    for r in replies:
        if isinstance(r, redis.ResponseError):
            raise r
    return replies


def describe(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis at {kw.get('host')}:{kw.get('port')} db={kw.get('db', 0)}"


def main(argv: list[str] | None = None) -> int:
    """``python -m features.store env`` (the parser is ``features.cli.store_main``)."""
    from features.cli import store_main

    return store_main(argv)


def run_cli(args) -> int:
    """``env`` after parsing."""
    print(f"export {C.ENV_FEAST_REDIS}='{feast_connection_string()}'")
    return 0
