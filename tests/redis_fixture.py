"""Real Redis for the feature-store tests (imported by the test modules; no mocks).

- `redis_url`: the Redis at $REDIS_URL when it answers, else a `redis-server` this module starts
  on a free port (skips only when redis-server is not installed). Tests use a dedicated DB index
  and a project name unique to the run, and delete their keys afterwards.
- `RedisServer`: a private `redis-server` the reliability tests stop and restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis

TEST_DB = 13  # never the default DB 0 of a shared Redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


class RedisServer:
    """A redis-server subprocess on a free port; data kept across restart() via an RDB file."""

    def __init__(self, workdir: Path, port: int | None = None):
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed and no Redis answers at $REDIS_URL")
        self.exe, self.workdir, self.port = exe, Path(workdir), port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.workdir), "--dbfilename", "dump.rdb"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if _answers(self.url):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} on port {self.port}")
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self, save: bool = False) -> None:
        if self.proc is None:
            return
        if save:
            redis.Redis(port=self.port).save()
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop(save=True)
        self.start()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    if _answers(url):
        yield url
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


def unique_project() -> str:
    return f"dctest_{uuid.uuid4().hex[:10]}"


def db_url(url: str, db: int = TEST_DB) -> str:
    u = urlparse(url)
    return u._replace(path=f"/{db}").geturl()


def delete_project_keys(url: str, project: str) -> int:
    """Remove every key of a Feast project (keys end with the project name)."""
    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=b"*" + project.encode(), count=1000))
    for i in range(0, len(keys), 1000):
        r.delete(*keys[i : i + 1000])
    return len(keys)
