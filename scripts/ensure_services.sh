#!/usr/bin/env bash
# Make sure Redis answers at $REDIS_URL (default redis://127.0.0.1:6379) and Java 17 is present.
# Where no Redis answers, start a local redis-server (installing it from the system packages
# when it is missing and we are root). Source-able: exports REDIS_URL and JAVA_HOME.
set -euo pipefail
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

_redis_hostport() {
  python3 - "$REDIS_URL" <<'PY'
import sys
from urllib.parse import urlparse
u = urlparse(sys.argv[1])
print(u.hostname or "127.0.0.1", u.port or 6379)
PY
}

_redis_ping() {
  local host port
  read -r host port < <(_redis_hostport)
  python3 - "$host" "$port" <<'PY'
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0)
    s.sendall(b"PING\r\n")
    data = s.recv(64)
    # "-NOAUTH" also means a Redis is there (password set via REDIS_URL)
    sys.exit(0 if data.startswith((b"+PONG", b"-NOAUTH")) else 1)
except OSError:
    sys.exit(1)
PY
}

if _redis_ping; then
  echo "[services] redis answers at $REDIS_URL"
else
  read -r host port < <(_redis_hostport)
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "[services] installing redis-server from the system packages"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      echo "[services] ERROR: no Redis at $REDIS_URL and redis-server is not installed (install it or set REDIS_URL)" >&2
      exit 1
    fi
  fi
  echo "[services] starting redis-server on $host:$port"
  redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
    --dir /tmp --logfile "/tmp/dashclip-redis-$port.log"
  for _ in $(seq 1 50); do _redis_ping && break; sleep 0.1; done
  _redis_ping || { echo "[services] ERROR: redis-server did not come up on $host:$port" >&2; exit 1; }
  echo "[services] redis started at $REDIS_URL"
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
