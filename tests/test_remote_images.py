"""Remote image fetching (opt-in): capped, time-bound, never to private, loopback or link-local
addresses (redirects included). A local HTTP server plays the image host; it is on loopback, so
tests of what a fetch does opt in to loopback with ``remote_allow_private_hosts``."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from dashclip import columns as C
from dashclip.catalog import IngestConfig, ingest_frame
from tests.hostile import jpeg_bytes

JPEG = jpeg_bytes(7, (64, 48))


class _Handler(BaseHTTPRequestHandler):
    routes = {
        "/good.jpg": (200, {}, JPEG),
        "/big.jpg": (200, {}, b"\xff" * 50_000),
        "/to-good": (302, {"Location": "/good.jpg"}, b""),
        "/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
    }

    def do_GET(self):  # noqa: N802 - http.server's name
        self.server.seen.append(self.path)
        if self.path in ("/slow-body", "/slow-headers"):
            return self._drip(self.path == "/slow-headers")
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if self.path != "/big.jpg":  # no Content-Length: the cap must hold while reading
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drip(self, in_headers: bool):
        """One byte every 0.2 s, forever (until the client hangs up)."""
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            if not in_headers:
                self.wfile.write(b"Content-Length: 100000\r\n\r\n")
            while True:
                self.wfile.write(b"X-Slow: y\r\n" if in_headers else b"\xff")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            return

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.seen = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()


def _ingest(urls: list[str], **cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = pd.DataFrame({C.PRODUCT_ID: [f"r{i}" for i in range(len(urls))], C.TITLE: "remote", C.IMAGE: urls})
    for col in C.CATALOG_COLUMNS:
        if col not in raw:
            raw[col] = ""
    res = ingest_frame(raw, Path("."), IngestConfig(fetch_remote_images=True, **cfg), progress=False)
    return res.products.set_index(C.PRODUCT_ID), res.rejects.set_index(C.PRODUCT_ID)


def test_loopback_and_private_hosts_are_refused_without_a_request(server):
    base = f"http://127.0.0.1:{server.server_port}"
    server.seen.clear()
    prods, rej = _ingest([f"{base}/good.jpg", "http://10.1.2.3/x.jpg", "http://169.254.169.254/latest/meta-data/",
                          f"http://localhost:{server.server_port}/good.jpg"])
    assert prods.empty and server.seen == []
    assert rej.loc["r0", C.REJECT_REASON] == "refused: 127.0.0.1 is a loopback address"
    assert rej.loc["r1", C.REJECT_REASON] == "refused: 10.1.2.3 is a private address"
    assert rej.loc["r2", C.REJECT_REASON] == "refused: 169.254.169.254 is a link-local address"
    assert rej.loc["r3", C.REJECT_REASON].startswith("refused: localhost resolves to ")
    assert (rej[C.REJECT_FIELD] == C.IMAGE).all()


def test_an_allowed_private_host_is_fetched_with_a_cap_and_checked_redirects(server):
    base = f"http://127.0.0.1:{server.server_port}"
    server.seen.clear()
    prods, rej = _ingest([f"{base}/good.jpg", f"{base}/to-good", f"{base}/big.jpg", f"{base}/to-metadata",
                          f"{base}/to-file", f"{base}/loop", "ftp://127.0.0.1/x.jpg"],
                         remote_allow_private_hosts=True, max_image_bytes=10_000)
    assert prods.index.tolist() == ["r0", "r1"]
    assert prods[C.IMAGE_STATUS].eq("ok").all() and prods[C.IMAGE_WIDTH].eq(64).all()
    reasons = rej[C.REJECT_REASON]
    assert reasons["r2"] == "more than 10000 bytes, over the 10000-byte limit (max_image_bytes)"
    assert reasons["r3"] == "refused: 169.254.169.254 is a link-local address"  # even with private hosts allowed
    assert reasons["r4"] == "refused: unsupported URL scheme 'file' (http and https only)"
    assert reasons["r5"] == "refused: more than 3 redirects"
    assert reasons["r6"] == "refused: unsupported URL scheme 'ftp' (http and https only)"
    assert "/latest/meta-data/" not in server.seen


@pytest.mark.parametrize("path", ["/slow-body", "/slow-headers"])
def test_a_server_that_drips_bytes_is_cut_at_the_total_deadline(server, path):
    base = f"http://127.0.0.1:{server.server_port}"
    t0 = time.perf_counter()
    prods, rej = _ingest([f"{base}{path}"], remote_allow_private_hosts=True, remote_timeout_s=1.0,
                         remote_total_timeout_s=1.5)
    took = time.perf_counter() - t0
    assert took < 4.0, took  # each byte arrives within the per-read timeout; only the deadline stops it
    # a failed fetch keeps the product text-only, as an unreachable host does
    assert rej.empty and prods.loc["r0", C.IMAGE_STATUS] == "missing" and not prods.loc["r0", C.HAS_IMAGE]
