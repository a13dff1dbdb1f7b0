"""Fault probe of the ads server: Redis faults replayed under load, one after another.

    python bench/fault_probe.py [--concurrency 8] [--fault-s 3] [--lookup-timeout-ms 50] [--out bench/results/faults.json]

Starts its own `redis-server` on a free port (never the shared one), fills it with a small
synthetic feature store (`features.synthetic`, materialized by the project's engine), starts the
server (`ranking.serve.create_app`, uvicorn) in a child process with a toy ranker, and keeps
`--concurrency` clients posting /rank (100 candidates each) while a poller reads /health.
Each fault runs for `--fault-s` seconds, then is cleared:

- stop:    redis-server terminated (after saving its RDB), then started again from that file
- freeze:  redis-server SIGSTOPped, then SIGCONTed
- empty:   FLUSHALL (a restart without persistence), then `materialize_incremental` repairs it
- corrupt: one candidate's stored embedding truncated (the requests keep it among their candidates)

Per fault: requests, status counts, p50/p99 latency of /rank and of /health during the fault,
and the recovery time (from clearing the fault to the first 200, repair included for `empty`).
Writes `bench/results/faults.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import redis  # noqa: E402

RESULTS = ROOT / "bench" / "results"
D, N_PRODUCTS, VERSION = 32, 2000, "v1"
END = timedelta(days=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProc:
    def __init__(self, workdir: Path):
        self.exe = shutil.which("redis-server") or sys.exit("redis-server is not installed")
        self.workdir, self.port, self.proc = workdir, free_port(), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir), "--dbfilename", "dump.rdb"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                if redis.Redis.from_url(self.url, socket_timeout=0.2).ping():
                    return
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not come up on port {self.port}")

    def stop(self, save: bool) -> None:
        if save:
            redis.Redis.from_url(self.url).save()
        self.proc.terminate()
        self.proc.wait(timeout=10)


def open_store(root: Path, url: str):
    """The feature repo's store over `root/data` (registry under `root`) on the probe's Redis."""
    from features.materialize import ENGINE_TYPE
    from features.repo import open_repo_store

    return open_repo_store(root / "data", root, project="faultprobe", redis_url=url, batch_engine=ENGINE_TYPE,
                           model_versions=(VERSION,))


def build_store(root: Path, url: str):
    from features.synthetic import T0, write_stats, write_tables

    data = root / "data"
    tables = write_tables(data, versions=(VERSION,), n_products=N_PRODUCTS, n_queries=50, n_consumers=50, d=D)
    write_stats(data, tables.product_ids, tables.consumer_ids, categories=("A", "B"))
    store = open_store(root, url)
    store.materialize(T0 - timedelta(days=2), T0 + END)
    return store


def serve(args) -> None:
    """Child process: the ads server on the probe's store."""
    import uvicorn

    from features.online import OnlineLookup
    from features.store import CircuitBreaker
    from ranking.online import RankService
    from ranking.toy import toy_ranker
    from ranking.serve import create_app

    store = open_store(Path(args.root), args.redis_url)
    lookup = OnlineLookup(store, VERSION, timeout=args.lookup_timeout_ms / 1000,
                          breaker=CircuitBreaker(args.breaker_failures, args.breaker_reset_s))
    cats = {f"p{i}": "AB"[i % 2] for i in range(N_PRODUCTS)}
    service = RankService(store, toy_ranker(VERSION, name="toy"), VERSION, cats, lookup=lookup)
    uvicorn.run(create_app(service), host="127.0.0.1", port=args.port, log_level="error", access_log=False)


def bodies(n: int, corrupt_pid: str, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cands = [corrupt_pid] + [f"p{j}" for j in rng.choice(N_PRODUCTS, 99, replace=False) if f"p{j}" != corrupt_pid][:99]
        out.append(json.dumps({"consumer_id": f"c{i % 50}", "query": f"query text {i % 50}", "query_id": f"q{i % 50}",
                               "candidate_ids": cands, "k": 10}).encode())
    return out


class Load:
    """Closed-loop clients on /rank and a /health poller, recording (start, end, status, extra)."""

    def __init__(self, url: str, payloads: list[bytes], concurrency: int, corrupt_pid: str):
        self.url, self.payloads, self.concurrency, self.corrupt_pid = url, payloads, concurrency, corrupt_pid
        self.rank: list[tuple] = []  # start, end, status, corrupt candidate flagged unknown, why not 200
        self.health: list[tuple[float, float, int]] = []
        self.running = True

    async def _client(self, client: httpx.AsyncClient, k: int) -> None:
        i = k
        while self.running:
            t = time.monotonic()
            try:
                r = await client.post("/rank", content=self.payloads[i % len(self.payloads)],
                                      headers={"content-type": "application/json"})
                status, out = r.status_code, r.json()
                flagged = status == 200 and self.corrupt_pid in out["unknown"].get("product", [])
                why = "" if status == 200 else out.get("detail", "") if status != 503 else _why(out)
            except httpx.HTTPError as e:
                status, flagged, why = 0, False, type(e).__name__  # no answer at all
            self.rank.append((t, time.monotonic(), status, flagged, why))
            i += self.concurrency

    async def _health(self, client: httpx.AsyncClient) -> None:
        while self.running:
            t = time.monotonic()
            try:
                status = (await client.get("/health")).status_code
            except httpx.HTTPError:
                status = 0
            self.health.append((t, time.monotonic(), status))
            await asyncio.sleep(0.05)

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency + 4)
        async with httpx.AsyncClient(base_url=self.url, timeout=30.0, limits=limits) as client:
            await asyncio.gather(self._health(client), *[self._client(client, k) for k in range(self.concurrency)])


def _why(out: dict) -> str:
    """A 503's cause in a few words: store empty, circuit open, timeout, refused."""
    reason = out.get("reason", "")
    for key, label in (("store empty", "store empty"), ("circuit open", "circuit open"), ("Timeout", "timeout"),
                       ("deadline", "timeout"), ("refused", "connection refused"), ("did not answer", "connection error")):
        if key in reason:
            return label
    return reason[:60]


def pct(x: list[float], q: float) -> float | None:
    return round(float(np.percentile(x, q)) * 1000, 2) if x else None


def summarize(load: Load, start: float, cleared: float, end: float) -> dict:
    during = [r for r in load.rank if start <= r[0] < cleared]
    after = [r for r in load.rank if r[0] >= cleared and r[0] < end]
    first_ok = min((r[1] for r in after if r[2] == 200), default=None)
    counts: dict[str, int] = {}
    causes: dict[str, int] = {}
    for r in during:
        counts[str(r[2])] = counts.get(str(r[2]), 0) + 1
        if r[4]:
            causes[r[4]] = causes.get(r[4], 0) + 1
    health = [h for h in load.health if start <= h[0] < cleared]
    hcounts: dict[str, int] = {}
    for h in health:
        hcounts[str(h[2])] = hcounts.get(str(h[2]), 0) + 1
    return {
        "requests": len(during), "status_counts": counts, "not_200_causes": causes,
        "p50_ms": pct([r[1] - r[0] for r in during], 50), "p99_ms": pct([r[1] - r[0] for r in during], 99),
        "max_ms": pct([r[1] - r[0] for r in during], 100),
        "health": {"requests": len(health), "status_counts": hcounts,
                   "p50_ms": pct([h[1] - h[0] for h in health], 50), "p99_ms": pct([h[1] - h[0] for h in health], 99)},
        "recovery_s": round(first_ok - cleared, 3) if first_ok is not None else None,
        "after_clear_statuses": {str(s): sum(1 for r in after if r[2] == s) for s in sorted({r[2] for r in after})},
        "corrupt_candidate_flagged_unknown": sum(1 for r in during if r[3]),
    }


async def probe(args, rp: RedisProc, store, server_url: str) -> dict:
    from features import redis_format as F
    from features.synthetic import T0

    corrupt_pid = "p7"
    load = Load(server_url, bodies(256, corrupt_pid), args.concurrency, corrupt_pid)
    task = asyncio.create_task(load.run())
    r = redis.Redis.from_url(rp.url)
    results = {}
    await asyncio.sleep(args.fault_s)
    results["baseline"] = summarize(load, time.monotonic() - args.fault_s, time.monotonic(), time.monotonic())

    async def phase(name: str, inject, clear) -> None:
        start = time.monotonic()
        await asyncio.to_thread(inject)
        await asyncio.sleep(args.fault_s)
        cleared = time.monotonic()
        await asyncio.to_thread(clear)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(x[2] == 200 and x[0] >= cleared for x in load.rank):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        results[name] = summarize(load, start, cleared, time.monotonic())
        print(name, json.dumps(results[name]), flush=True)

    await phase("stop", lambda: rp.stop(save=True), rp.start)
    await phase("freeze", lambda: os.kill(rp.proc.pid, signal.SIGSTOP), lambda: os.kill(rp.proc.pid, signal.SIGCONT))
    await phase("empty", lambda: redis.Redis.from_url(rp.url).flushall(),
                lambda: store.materialize_incremental(T0 + END))
    key = F.entity_keys("product_id", [corrupt_pid], "faultprobe")[0]
    fields = [f for f in r.hkeys(key) if not f.startswith(b"_ts:")]
    blob = {f: r.hget(key, f) for f in fields}
    emb_field = max(fields, key=lambda f: len(blob[f]))  # the embedding is the long value
    await phase("corrupt", lambda: r.hset(key, emb_field, blob[emb_field][:-7]), lambda: r.hset(key, emb_field, blob[emb_field]))
    load.running = False
    await task
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bench/fault_probe.py", description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", type=int, default=8, help="closed-loop /rank clients")
    ap.add_argument("--fault-s", type=float, default=3.0, help="seconds each fault lasts")
    ap.add_argument("--lookup-timeout-ms", type=float, default=50.0)
    ap.add_argument("--breaker-failures", type=int, default=5)
    ap.add_argument("--breaker-reset-s", type=float, default=1.0)
    ap.add_argument("--out", default=str(RESULTS / "faults.json"))
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child process
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--redis-url", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="faultprobe-") as tmp:
        root = Path(tmp)
        (root / "redis").mkdir()
        rp = RedisProc(root / "redis")
        rp.start()
        child = None
        try:
            store = build_store(root, rp.url)
            port = free_port()
            child = subprocess.Popen([sys.executable, __file__, "--serve", "--root", str(root), "--redis-url", rp.url,
                                      "--port", str(port), "--lookup-timeout-ms", str(args.lookup_timeout_ms),
                                      "--breaker-failures", str(args.breaker_failures),
                                      "--breaker-reset-s", str(args.breaker_reset_s)], env={**os.environ, "PYTHONPATH": str(ROOT)})
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            else:
                raise RuntimeError("the server did not come up")
            faults = asyncio.run(probe(args, rp, store, url))
        finally:
            if child is not None:
                child.terminate()
                child.wait(timeout=10)
            if rp.proc.poll() is None:
                os.kill(rp.proc.pid, signal.SIGCONT)
                rp.stop(save=False)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.processor())
    payload = {
        "settings": {"concurrency": args.concurrency, "fault_s": args.fault_s, "lookup_timeout_ms": args.lookup_timeout_ms,
                     "breaker_failures": args.breaker_failures, "breaker_reset_s": args.breaker_reset_s,
                     "candidates_per_request": 100, "products": N_PRODUCTS, "dim": D},
        "machine": {"cpu": cpu, "cpus": os.cpu_count(), "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version(), "note": "client, server and redis-server share the machine"},
        "faults": faults,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
