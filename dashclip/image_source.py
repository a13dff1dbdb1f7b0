"""Reading image bytes that an untrusted catalog points at: local files and (opt-in) URLs, with limits.

Local files: only regular files are read (a FIFO, device, socket or directory is refused without
being opened), never more than ``max_bytes`` (checked on the size, then while reading), and a
symbolic-link loop is refused. Whether a path may be read at all (the image root) is the
caller's decision, made on the resolved path (``within``).

URLs: http and https only. Every host, the first and each redirect's, must resolve to public
addresses only; private and loopback ones are allowed on request (an intranet image host),
link-local (cloud metadata), multicast and unspecified ones never. The connection goes to the
address that was checked, so a second DNS answer cannot redirect it. The body is capped like a
file, and one deadline bounds the whole fetch, redirects included.

Not covered: DNS resolution itself is not bounded by the deadline; proxies are not used; a file
swapped for a symlink between the caller's root check and the open is not detected (the catalog
folder is assumed not to change under a running job).
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import os
import socket
import stat
import threading
import time
from urllib.parse import urljoin, urlsplit

MAX_IMAGE_BYTES = 50_000_000
_CHUNK = 1 << 16
_REDIRECTS = (301, 302, 303, 307, 308)


class ImageSourceError(OSError):
    """An image source refused by policy; ``reason`` says why (a reject reason), ``str`` adds the source."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = source, reason


def within(path: str, root: str) -> bool:
    """True when ``path`` (absolute, symlinks resolved) lies in ``root`` (likewise resolved)."""
    return os.path.commonpath([path, root]) == root


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISDIR, "directory"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """A read-only descriptor of a regular file and its stat; FileNotFoundError when absent. Anything
    else is refused before it is opened (opening a FIFO waits for a writer; opening some devices
    acts on them) and checked again on the descriptor (O_NONBLOCK: a swap to a FIFO cannot block)."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode):
                return fd, st
            os.close(fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageSourceError(path, "symbolic link loop") from None
        raise
    raise ImageSourceError(path, f"not a regular file ({_kind(st.st_mode)})")


def _over(max_bytes: int, n: int | None = None) -> str:
    size = f"{n} bytes" if n is not None else f"more than {max_bytes} bytes"
    return f"{size}, over the {max_bytes}-byte limit (max_image_bytes)"


def read_local(path: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ImageSourceError otherwise."""
    fd, st = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        if st.st_size > max_bytes:
            raise ImageSourceError(path, _over(max_bytes, st.st_size))
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since the stat
        raise ImageSourceError(path, _over(max_bytes))
    return data


def _refusal(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> str | None:
    """Why an address may not be fetched from, or None."""
    addr = getattr(addr, "ipv4_mapped", None) or addr
    for flag, name in (("is_link_local", "link-local"), ("is_multicast", "multicast"), ("is_unspecified", "unspecified")):
        if getattr(addr, flag):
            return name
    if addr.is_loopback:
        return None if allow_private else "loopback"
    if not addr.is_global:
        return None if allow_private else "private"
    return None


def checked_address(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to for ``host``: every address it resolves to must be allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise OSError(f"cannot resolve {host}: {e}") from None
    addrs = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for a in addrs:
        why = _refusal(a, allow_private)
        if why:
            what = f"{host} is" if host.strip("[]") == str(a) else f"{host} resolves to {a},"
            raise ImageSourceError(host, f"refused: {what} {'an' if why[0] in 'aeiou' else 'a'} {why} address")
    return str(addrs[0])


class _Deadline:
    """Shuts the current socket down when the time is up, so no blocking read (a header or body
    sent a byte at a time) outlives the fetch's deadline."""

    def __init__(self, seconds: float):
        self.seconds, self.end = seconds, time.monotonic() + seconds
        self.sock: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"took longer than {self.seconds} s (remote_total_timeout_s)")
        return left

    def _expire(self) -> None:
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def cancel(self) -> None:
        self._timer.cancel()


def _connect(url: str, ip: str, deadline: _Deadline, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=min(timeout, deadline.left()))
    port = conn.port
    # connect to the address that was checked, not to a fresh DNS answer; TLS still verifies the host name
    conn._create_connection = lambda _addr, t=None, src=None: socket.create_connection((ip, port), t, src)
    conn.connect()
    deadline.sock = conn.sock  # kept: http.client drops conn.sock once the response owns it
    return conn


def _read_body(resp: http.client.HTTPResponse, url: str, max_bytes: int, deadline: _Deadline, timeout: float) -> bytes:
    length = resp.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise ImageSourceError(url, _over(max_bytes, int(length)))
    parts, n = [], 0
    while True:
        deadline.sock.settimeout(min(timeout, deadline.left()))
        chunk = resp.read1(_CHUNK)  # one receive at most, so the deadline is checked between receives
        deadline.left()
        if not chunk:
            return b"".join(parts)
        n += len(chunk)
        if n > max_bytes:
            raise ImageSourceError(url, _over(max_bytes))
        parts.append(chunk)


def _get(url: str, deadline: _Deadline, max_bytes: int, timeout: float, allow_private: bool) -> bytes | str:
    """One request: the body, or the next URL when the answer is a redirect."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageSourceError(url, f"refused: unsupported URL scheme {parts.scheme!r} (http and https only)")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    conn = _connect(url, checked_address(parts.hostname, port, allow_private), deadline, timeout)
    try:
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                     headers={"Accept": "image/*", "User-Agent": "dashclip-ingest"})
        resp = conn.getresponse()
        if resp.status in _REDIRECTS and resp.getheader("Location"):
            return urljoin(url, resp.getheader("Location"))
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status} {resp.reason}")
        return _read_body(resp, url, max_bytes, deadline, timeout)
    finally:
        conn.close()


def fetch(url: str, max_bytes: int = MAX_IMAGE_BYTES, timeout_s: float = 5.0, total_s: float = 20.0,
          allow_private: bool = False, max_redirects: int = 3) -> bytes:
    """The body of an http(s) URL under the rules in the module docstring: ImageSourceError for a
    refusal (address, scheme, size, redirects), another OSError (TimeoutError, an HTTP error) for
    a fetch that failed."""
    deadline = _Deadline(total_s)
    try:
        for _ in range(max_redirects + 1):
            try:
                got = _get(url, deadline, max_bytes, timeout_s, allow_private)
            except ImageSourceError:
                raise
            except (OSError, http.client.HTTPException) as e:
                deadline.left()  # a read the deadline cut short reports the deadline
                raise e if isinstance(e, OSError) else OSError(f"{type(e).__name__}: {e}") from None
            if isinstance(got, bytes):
                return got
            url = got
        raise ImageSourceError(url, f"refused: more than {max_redirects} redirects")
    finally:
        deadline.cancel()
