#!/usr/bin/env bash
# Make sure Redis answers at $REDIS_URL (default redis://127.0.0.1:6379) and Java 17 is present.
# The ping goes through redis-py with the URL's password and TLS settings (rediss://,
# ?ssl_ca_certs=..&ssl_cert_reqs=..): a Redis that refuses our credentials (NOAUTH, WRONGPASS) or
# our TLS handshake is an error, not a healthy Redis. Where nothing listens at a local address,
# start a local redis-server (installing it from the system packages when it is missing and we
# are root). The password never reaches the output or a command line. Source-able: exports
# REDIS_URL and JAVA_HOME.
set -euo pipefail
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_PY="${DASHCLIP_PYTHON:-$_ROOT/.venv/bin/python}"
[ -x "$_PY" ] || _PY="$(command -v python3)"

# _redis MODE, MODE one of: mask (the URL with its password as ***), hostport, password,
# ping (exit 0: answers; 1: nothing listens; 3: refused our credentials; 4: any other failure).
# The URL travels in the environment, never on a command line.
_redis() {
  "$_PY" - "$1" <<'PY'
import os
import sys
from urllib.parse import unquote, urlparse

url, mode = os.environ["REDIS_URL"], sys.argv[1]
u = urlparse(url)
if mode == "mask":
    netloc = f"{u.username or ''}:***@{u.hostname}" + (f":{u.port}" if u.port else "")
    print(u._replace(netloc=netloc).geturl() if u.password is not None else url)
    sys.exit(0)
if mode == "hostport":
    print(u.hostname or "127.0.0.1", u.port or 6379)
    sys.exit(0)
if mode == "password":
    print(unquote(u.password or ""))
    sys.exit(0)
try:
    import redis
except ImportError:
    print(f"[services] ERROR: redis-py is not installed for {sys.executable} (run scripts/setup_env.sh)", file=sys.stderr)
    sys.exit(4)
try:
    sys.exit(0 if redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0).ping() else 4)
except redis.AuthenticationError as e:
    print(f"[services] Redis refused our credentials: {e}", file=sys.stderr)
    sys.exit(3)
except redis.ConnectionError as e:
    if "SSL" in str(e) or "certificate" in str(e).lower():
        print(f"[services] TLS handshake with Redis failed: {e}", file=sys.stderr)
        sys.exit(4)
    import socket

    try:  # something listens but did not speak Redis to us (e.g. plaintext to a TLS port)
        socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=1.0).close()
    except OSError:
        sys.exit(1)
    print(f"[services] the server at the Redis address closed the connection: {e}", file=sys.stderr)
    sys.exit(4)
except (redis.RedisError, ValueError, OSError) as e:
    print(f"[services] Redis did not answer PING: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(4)
PY
}

_MASKED="$(_redis mask)"
_rc=0; _redis ping || _rc=$?
if [ "$_rc" = "0" ]; then
  echo "[services] redis answers at $_MASKED"
elif [ "$_rc" != "1" ]; then
  echo "[services] ERROR: a Redis at $_MASKED is not usable (see above); fix REDIS_URL or the server" >&2
  exit 1
else
  read -r host port < <(_redis hostport)
  case "$host" in
    127.*|localhost|::1) ;;
    *) echo "[services] ERROR: no Redis answers at $_MASKED (a remote address: not starting one here)" >&2; exit 1 ;;
  esac
  case "$REDIS_URL" in
    rediss://*) echo "[services] ERROR: no Redis answers at $_MASKED (TLS: not starting a local one)" >&2; exit 1 ;;
  esac
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "[services] installing redis-server from the system packages"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      echo "[services] ERROR: no Redis at $_MASKED and redis-server is not installed (install it or set REDIS_URL)" >&2
      exit 1
    fi
  fi
  echo "[services] starting redis-server on $host:$port"
  # the password (if any) goes in through the config on stdin, not the command line
  _redis password | "$_PY" -c 'import sys; pw = sys.stdin.read().rstrip("\n"); print("requirepass " + "\"" + pw.replace("\\", "\\\\").replace("\"", "\\\"") + "\"" if pw else "")' \
    | redis-server - --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
      --dir /tmp --logfile "/tmp/dashclip-redis-$port.log" >/dev/null
  for _ in $(seq 1 50); do _redis ping 2>/dev/null && break; sleep 0.1; done
  _redis ping || { echo "[services] ERROR: redis-server did not come up on $host:$port" >&2; exit 1; }
  echo "[services] redis started at $_MASKED"
fi

# Java 17 for Spark
if ! command -v java >/dev/null 2>&1; then
  echo "[services] ERROR: java not found; Spark needs a Java 17 runtime (set JAVA_HOME or install openjdk-17-jre-headless)" >&2
  exit 1
fi
JV="$(java -version 2>&1 | head -1 | sed -E 's/.*version "([0-9]+).*/\1/')"
if [ "$JV" != "17" ] && [ "$JV" -lt 17 ] 2>/dev/null; then
  echo "[services] ERROR: Java $JV found; Spark needs Java 17+" >&2
  exit 1
fi
echo "[services] java $JV ok"
