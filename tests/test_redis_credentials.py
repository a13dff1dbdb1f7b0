"""Credentials and managed-Redis settings: passwords that survive Feast's connection string and
the shell, masked URLs, and scripts/ensure_services.sh pinging through redis-py (auth, TLS with
the URL's ssl_ca_certs / ssl_cert_reqs) against private redis-servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from feast import RepoConfig
from feast.repo_config import load_repo_config

from features import columns as C
from features.feast_compat import parse_connection_string
from features.store import feast_connection_string, mask_url, redis_client
from tests.redis_fixture import free_port

REPO = Path(__file__).resolve().parents[1]
HOSTILE = ["p,w=1", "$(touch x)", "${HOME}", "123", "true", "it's \"q\" # x: y", "back\\slash`uname`", "ünï"]


def url_with(password: str, port: int = 6379, scheme: str = "redis", query: str = "") -> str:
    return f"{scheme}://:{quote(password, safe='')}@127.0.0.1:{port}/0" + (f"?{query}" if query else "")


@pytest.mark.parametrize("password", HOSTILE)
def test_any_password_survives_feasts_connection_string_and_yaml(tmp_path, monkeypatch, password):
    cs = feast_connection_string(url_with(password))
    _, kwargs = parse_connection_string(cs)
    assert kwargs["password"] == password and kwargs["db"] == 0
    (tmp_path / "feature_store.yaml").write_text(
        "project: p\nprovider: local\nregistry: r.db\nonline_store:\n  type: redis\n"
        "  connection_string: ${FEAST_REDIS_CONNECTION}\nentity_key_serialization_version: 3\n")
    monkeypatch.setenv(C.ENV_FEAST_REDIS, cs)
    cfg = load_repo_config(tmp_path, tmp_path / "feature_store.yaml")  # expandvars, then YAML
    assert parse_connection_string(cfg.online_store.connection_string)[1]["password"] == password


def test_env_line_is_shell_quoted(tmp_path):
    marker = tmp_path / "pwned"
    url = url_with("p,w=1 $(touch {marker}) 'q' \"x\" `touch {marker}` ${{HOME}}".format(marker=marker))
    env = {**os.environ, C.ENV_REDIS_URL: url, "PYTHONPATH": str(REPO)}
    env.pop(C.ENV_FEAST_REDIS, None)
    out = subprocess.run(["bash", "-c", f'eval "$({sys.executable} -m features.store env)"; printf %s "${C.ENV_FEAST_REDIS}"'],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not marker.exists()  # no shell code ran
    assert out.stdout == feast_connection_string(url)


def test_urls_are_masked_in_logs_and_errors():
    assert mask_url("rediss://user:s3cr%3Ft@h:6380/2?ssl_cert_reqs=required") == "rediss://user:***@h:6380/2?ssl_cert_reqs=required"
    assert mask_url('h:1,db=0,password="x\\u002cy",ssl=true') == "h:1,db=0,password=***,ssl=true"
    assert mask_url("redis://h:1") == "redis://h:1"
    with pytest.raises(ValueError) as e:
        feast_connection_string("http://:s3cret@h:1")
    assert "s3cret" not in str(e.value) and "***" in str(e.value)
    with pytest.raises(ValueError) as e:
        feast_connection_string("redis://:s3cret@h:1?verify=no")
    assert "s3cret" not in str(e.value) and "verify" in str(e.value)


class Server:
    """A redis-server whose config (a password, TLS files) comes in on stdin, off the command line."""

    def __init__(self, workdir: Path, config: str, *args: str, url: str):
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen([exe, "-", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", str(workdir), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proc.stdin.write(config.encode())
        self.proc.stdin.close()
        for _ in range(100):
            try:
                if redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping():
                    return
            except (redis.RedisError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not come up")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def ensure_services(url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, C.ENV_REDIS_URL: url, "DASHCLIP_PYTHON": sys.executable}
    return subprocess.run(["bash", str(REPO / "scripts" / "ensure_services.sh")], env=env, capture_output=True,
                          text=True, timeout=60)


def config_with(url: str) -> RepoConfig:
    return RepoConfig(project="p", provider="local", registry="r.db", entity_key_serialization_version=3,
                      online_store={"type": "redis", "connection_string": feast_connection_string(url)})


def test_password_protected_redis_needs_the_password_and_never_prints_it(tmp_path):
    password = "p,w=$(x) 'q'"
    port = free_port()
    config = 'requirepass "' + password.replace("\\", "\\\\").replace('"', '\\"') + '"\n'
    server = Server(tmp_path, config, "--port", str(port), url=url_with(password, port))
    try:
        assert redis_client(config_with(url_with(password, port))).ping()
        ok = ensure_services(url_with(password, port))
        assert ok.returncode == 0, ok.stderr
        assert "redis answers at redis://:***@127.0.0.1" in ok.stdout
        wrong = ensure_services(url_with("wrong", port))
        no_auth = ensure_services(f"redis://127.0.0.1:{port}/0")
        for res in (wrong, no_auth):  # NOAUTH / WRONGPASS: a Redis is there, but not a usable one
            assert res.returncode != 0 and "refused our credentials" in res.stderr
            assert "starting redis-server" not in res.stdout
        for res in (ok, wrong, no_auth):
            assert "p,w" not in res.stdout + res.stderr and "wrong" not in res.stdout + res.stderr
    finally:
        server.stop()


def _certificates(d: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run = lambda *a: subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True, timeout=60)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
        "-days", "1", "-extfile", "san.ext")
    return {n: d / f for n, f in (("ca", "ca.pem"), ("cert", "server.pem"), ("key", "server.key"))}


def test_tls_redis_with_the_urls_ca_certificate(tmp_path):
    certs = _certificates(tmp_path)
    port = free_port()
    query = f"ssl_ca_certs={quote(str(certs['ca']))}&ssl_cert_reqs=required"
    good = url_with("tls pw", port, "rediss", query)
    try:
        server = Server(tmp_path, 'requirepass "tls pw"\n', "--port", "0", "--tls-port", str(port),
                        "--tls-cert-file", str(certs["cert"]), "--tls-key-file", str(certs["key"]),
                        "--tls-ca-cert-file", str(certs["ca"]), "--tls-auth-clients", "no", url=good)
    except RuntimeError:
        pytest.skip("this redis-server has no TLS support")
    try:
        assert redis_client(config_with(good)).ping()  # ssl=true and ssl_ca_certs reach redis-py through Feast's format
        res = ensure_services(good)
        assert res.returncode == 0 and "redis answers at rediss://:***@127.0.0.1" in res.stdout, res.stderr
        unverified = ensure_services(url_with("tls pw", port, "rediss"))  # system CAs do not know the test CA
        assert unverified.returncode != 0 and "TLS" in unverified.stderr
        assert "starting redis-server" not in unverified.stdout
        plaintext = ensure_services(url_with("tls pw", port))
        assert plaintext.returncode != 0 and "starting redis-server" not in plaintext.stdout
    finally:
        server.stop()
