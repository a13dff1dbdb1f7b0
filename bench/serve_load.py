"""Load test of the ads server from a separate process: open-loop requests at a fixed rate.

    python bench/serve_load.py --sim runs/ranker/sim [--url http://127.0.0.1:8000] [--rate 50] \
        [--duration 60] [--candidates 100] [--ramp 100,150,200,300] [--ramp-duration 15] \
        [--serve "--models runs/ranker/models/with_embeddings --checkpoint runs/pipeline/stage2"]
    python bench/serve_load.py --synthetic 10000 [--serve "--workers 2"]

With `--synthetic N` no pipeline run is needed: a Feast repo of N synthetic 640-d products, a
ranker with the real feature list and a catalog are built in a scratch folder
(bench/serve_synthetic.py) and the server is started on them (`--serve` adds its arguments).

Requests replay the simulated log's (consumer, query) pairs with `--candidates` product ids each.
Without `--url` it starts `python -m ranking.serve` itself (arguments from `--serve`), in its own
process, and stops it at the end. Sends are scheduled at fixed intervals (open loop: a slow
answer does not delay the next send); latency is measured at the client. After the main run,
`--ramp` tries higher rates; `max_rate_held_rps` is the highest rate (main or ramp) held with zero
errors, p99 under `--p99-target-ms` and at least 95% of the target rate achieved. Writes
`bench/results/serve_load.json` and prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python bench/serve_load.py` from the root
from bench.machine import cpu_model  # noqa: E402


def payloads(sim: Path, n: int, candidates: int, seed: int = 0) -> list[bytes]:
    req = pd.read_parquet(sim / "requests.parquet", columns=["consumer_id", "query_id", "query"])
    pids = pd.read_parquet(sim / "bids.parquet", columns=["product_id"])["product_id"].to_numpy()
    rng = np.random.default_rng(seed)
    rows = req.sample(n=min(n, len(req)), random_state=seed, replace=len(req) < n)
    out = []
    for r in rows.itertuples():
        cands = rng.choice(pids, size=min(candidates, len(pids)), replace=False).tolist()
        out.append(json.dumps({"consumer_id": r.consumer_id, "query": r.query, "query_id": r.query_id,
                               "candidate_ids": cands, "k": 10}).encode())
    return out


class Connections:
    """Keep-alive HTTP/1.1 connections for POSTs of pre-encoded bodies, on asyncio streams. The
    load generator shares the machine's cores with the server: httpx spends ~1 CPU-ms per request
    (more than the server's own work at high rates), this ~0.1 ms. A request waits for a free
    connection (at most `size` in flight); its latency counts from its scheduled send time."""

    def __init__(self, url: str, size: int, timeout: float = 5.0):
        u = httpx.URL(url)
        self.host, self.port, self.timeout = u.host, u.port or 80, timeout
        self.head = f"POST /rank HTTP/1.1\r\nHost: {u.host}:{self.port}\r\nContent-Type: application/json\r\n".encode()
        self.free: asyncio.Queue = asyncio.Queue()
        for _ in range(size):
            self.free.put_nowait(None)  # a slot; its connection opens on first use

    async def post(self, body: bytes) -> tuple[int, bytes]:
        conn = await self.free.get()
        try:
            if conn is None:
                conn = await asyncio.open_connection(self.host, self.port)
            reader, writer = conn
            writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
            status = int(head[9:12])
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
            answer = await asyncio.wait_for(reader.readexactly(length), self.timeout)
        except BaseException:
            if conn is not None:
                conn[1].close()
            self.free.put_nowait(None)
            raise
        self.free.put_nowait(conn)
        return status, answer

    def close(self) -> None:
        while not self.free.empty():
            conn = self.free.get_nowait()
            if conn is not None:
                conn[1].close()


async def run_rate(url: str, bodies: list[bytes], rate: float, duration: float, connections: int = 64) -> dict:
    n = int(rate * duration)
    lat = np.full(n, np.nan)
    errors = []
    pool = Connections(url, connections)
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        try:
            status, answer = await pool.post(bodies[i % len(bodies)])
            if status != 200:
                errors.append(f"HTTP {status}: {answer[:200].decode(errors='replace')}")
                return
            lat[i] = time.perf_counter() - (t0 + i / rate)  # from the scheduled send: queueing counts
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, StopIteration) as e:
            errors.append(f"{type(e).__name__}: {e}")

    tasks = []
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    sent_s = time.perf_counter() - t0
    await asyncio.gather(*tasks)
    pool.close()
    ok = lat[~np.isnan(lat)] * 1000
    return {"rate_rps": rate, "duration_s": duration, "requests": n, "errors": len(errors),
            "achieved_rps": round(n / max(sent_s, 1e-9), 2), "connections": connections,
            "p50_ms": round(float(np.percentile(ok, 50)), 3) if ok.size else None,
            "p99_ms": round(float(np.percentile(ok, 99)), 3) if ok.size else None,
            "max_ms": round(float(ok.max()), 3) if ok.size else None, "first_errors": errors[:5]}


def server_cpu_s(proc: subprocess.Popen | None) -> float:
    """CPU seconds (user + system) of the server process and its workers so far; NaN without one."""
    if proc is None:
        return float("nan")
    import psutil

    p = psutil.Process(proc.pid)
    total = 0.0
    for q in [p, *p.children(recursive=True)]:
        try:
            t = q.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def timed_run(proc, url: str, bodies: list[bytes], rate: float, duration: float) -> dict:
    """`run_rate` plus the CPU it cost: the server's (all its processes) and this load generator's, per request."""
    s0, c0 = server_cpu_s(proc), time.process_time()
    r = asyncio.run(run_rate(url, bodies, rate, duration))
    r["server_cpu_ms_per_request"] = round(1000 * (server_cpu_s(proc) - s0) / max(r["requests"], 1), 3)
    r["load_generator_cpu_ms_per_request"] = round(1000 * (time.process_time() - c0) / max(r["requests"], 1), 3)
    return r


def held(r: dict, p99_target: float) -> bool:
    return r["errors"] == 0 and r["p99_ms"] is not None and r["p99_ms"] < p99_target and r["achieved_rps"] >= 0.95 * r["rate_rps"]


def start_server(args_line: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "ranking.serve", "--port", str(port), *shlex.split(args_line)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {' '.join(cmd)}")
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("server did not become healthy in 300 s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", default="runs/ranker/sim", help="simulated logs of ranking.train (requests, bids)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="serve N synthetic products from a scratch repo (bench/serve_synthetic.py) instead of --sim")
    ap.add_argument("--url", default=None)
    ap.add_argument("--serve", default="", help="arguments for python -m ranking.serve when --url is not given")
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--ramp", default="100,150,200,300")
    ap.add_argument("--ramp-duration", type=float, default=15.0)
    ap.add_argument("--p99-target-ms", type=float, default=25.0)
    ap.add_argument("--out", default=str(RESULTS / "serve_load.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        setup = None
        if args.synthetic:
            from bench.serve_synthetic import build

            setup = build(Path(tmp), n_products=args.synthetic, candidates=args.candidates)
            bodies, serve_args = setup.bodies, f"{setup.serve_args} {args.serve}"
        else:
            bodies, serve_args = payloads(Path(args.sim), 2000, args.candidates), args.serve
        try:
            result = measure(args, bodies, serve_args)
        finally:
            if setup is not None:
                setup.drop()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("rate_rps", "duration_s", "requests", "errors", "p50_ms", "p99_ms",
                                              "max_rate_held_rps")}))
    print(f"written: {out}")
    return 0


def measure(args, bodies: list[bytes], serve_args: str) -> dict:
    """The main run and the ramp against --url or a server started with `serve_args`."""
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(serve_args)
    try:
        asyncio.run(run_rate(url, bodies, 20.0, 3.0))  # warm-up: connections, caches
        main_run = timed_run(proc, url, bodies, args.rate, args.duration)
        print(f"{args.rate:.0f} req/s for {args.duration:.0f} s: p50 {main_run['p50_ms']} ms, p99 {main_run['p99_ms']} ms, "
              f"errors {main_run['errors']}, server {main_run['server_cpu_ms_per_request']} CPU-ms/request, load generator "
              f"{main_run['load_generator_cpu_ms_per_request']}", flush=True)
        ramp = []
        best = args.rate if held(main_run, args.p99_target_ms) else 0.0
        for rate in [float(x) for x in args.ramp.split(",") if x.strip()]:
            if rate <= best and best:
                continue
            r = timed_run(proc, url, bodies, rate, args.ramp_duration)
            ramp.append(r)
            print(f"  ramp {rate:.0f} req/s: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['errors']}, "
                  f"achieved {r['achieved_rps']} req/s, server {r['server_cpu_ms_per_request']} CPU-ms/request", flush=True)
            if not held(r, args.p99_target_ms):
                break
            best = rate
        health = httpx.get(url + "/health", timeout=2.0).json()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    return {
        "rate_rps": args.rate, "duration_s": args.duration, "requests": main_run["requests"], "errors": main_run["errors"],
        "p50_ms": main_run["p50_ms"], "p99_ms": main_run["p99_ms"], "max_rate_held_rps": best,
        "candidates_per_request": args.candidates, "p99_target_ms": args.p99_target_ms,
        "main_run": main_run, "ramp": ramp, "server": {k: health.get(k) for k in ("model_version", "ranker")},
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
                    "note": os.environ.get("BENCH_NOTE", "")},
        "load_generator": "separate process (this script: asyncio streams, keep-alive connections, open loop)",
        "server_args": serve_args, "synthetic_products": args.synthetic or None,
    }


if __name__ == "__main__":
    raise SystemExit(main())
