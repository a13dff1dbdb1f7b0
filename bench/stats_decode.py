"""Decoding one ads request's stored stats values: numpy by value type against one protobuf parse per value.

    python bench/stats_decode.py [--candidates 100] [--categories 3] [--repeats 3000]

The request's HMGET replies as the ads server reads them (100 products x 5 stats, 1 consumer x 3,
3 categories x 3; int64 counts and double rates, serialized as Feast writes them), decoded by
`features.online.decode_stats_rows` (one `decode_scalars` call per value type across the views)
and by `redis_format.parse_scalar` on every value (the per-value protobuf path it replaces, still
its fallback). Both must give the same array; the thread's CPU time per request is reported.
No Redis: the round trip is in bench/serve_breakdown.py's 'stats' stage. Writes
bench/results/stats_decode.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/stats_decode.py` from the root
from bench.machine import cpu_model  # noqa: E402
from features.online import decode_stats_rows  # noqa: E402
from features.redis_format import ValueProto, parse_scalar  # noqa: E402

PRODUCT = ("INT64", "INT64", "INT64", "DOUBLE", "DOUBLE")
OTHER = ("INT64", "DOUBLE", "DOUBLE")


def _rows(rng: np.random.Generator, n: int, types) -> list[list[bytes]]:
    def blob(t: str) -> bytes:
        v = ValueProto(int64_val=int(rng.integers(10, 5000))) if t == "INT64" else ValueProto(double_val=float(rng.random()))
        return v.SerializeToString()

    return [[blob(t) for t in types] for _ in range(n)]


def per_value(blocks) -> list[np.ndarray]:
    out = []
    for rows, types in blocks:
        vals = np.full((len(rows), len(types)), np.nan)
        for i, r in enumerate(rows):
            vals[i] = [parse_scalar(b) for b in r]
        out.append(vals)
    return out


def by_type(blocks) -> list[np.ndarray]:
    return [vals for vals, _ in decode_stats_rows(blocks)]


def cpu_ms(fn, blocks, repeats: int) -> dict:
    for _ in range(min(200, repeats)):
        fn(blocks)
    ts = []
    for _ in range(repeats):
        c = time.thread_time()
        fn(blocks)
        ts.append(time.thread_time() - c)
    return {"mean": round(1000 * float(np.mean(ts)), 4), "median": round(1000 * float(np.median(ts)), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--categories", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    blocks = [(_rows(rng, args.candidates, PRODUCT), PRODUCT), (_rows(rng, 1, OTHER), OTHER),
              (_rows(rng, args.categories, OTHER), OTHER)]
    for a, b in zip(per_value(blocks), by_type(blocks)):
        np.testing.assert_array_equal(a, b)
    old, new = cpu_ms(per_value, blocks, args.repeats), cpu_ms(by_type, blocks, args.repeats)
    res = {"what": "decode one request's stats HMGET replies, CPU ms per request (thread clock)",
           "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
           "values": sum(len(r) * len(t) for r, t in blocks), "candidates": args.candidates,
           "per_value_protobuf_ms": old, "numpy_by_value_type_ms": new,
           "speedup_median": round(old["median"] / new["median"], 2), "identical": True, "cpu": cpu_model()}
    out = Path(__file__).resolve().parent / "results" / "stats_decode.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
