"""How long the input check takes on a large ads log (the pipeline runs it before any training).

    python bench/input_check.py [--impressions 1000000] [--format parquet|csv]

Writes a random but valid log (4 slots per request, 30 days, ~5% clicked, ~10% of clicks
converted, propensities) and a catalog of 50,000 ids to a temporary folder, then times
`dashclip.inputs.check_inputs` over it (reading included). Writes bench/results/input_check.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/input_check.py` from the root
from bench.common import write  # noqa: E402
from bench.machine import cpu_model  # noqa: E402
from dashclip.inputs import check_inputs  # noqa: E402



def make_log(out: Path, n: int, fmt: str, rng: np.random.Generator) -> None:
    out.mkdir(parents=True)
    n_req = n // 4
    req = np.repeat(np.arange(n_req), 4)
    ts = pd.Timestamp("2025-03-01", tz="UTC") + pd.to_timedelta(np.sort(rng.random(n_req))[req] * 30, unit="D")
    imp = pd.DataFrame({"request_id": pd.Series(req).map("r{:08d}".format), "event_timestamp": ts,
                        "consumer_id": pd.Series(rng.integers(0, 100_000, n_req)[req]).map("c{:06d}".format),
                        "query_id": pd.Series(rng.integers(0, 20_000, n_req)[req]).map("q{:05d}".format),
                        "product_id": [f"p{i:05d}" for i in (req * 7919 + np.tile(np.arange(4), n_req) * 104_729) % 50_000],
                        "slot": np.tile(np.arange(4), n_req), "propensity": rng.uniform(0.01, 1.0, n)})
    clicked = imp[rng.random(n) < 0.05]
    conv = clicked[rng.random(len(clicked)) < 0.1]
    queries = pd.DataFrame({"query_id": [f"q{i:05d}" for i in range(20_000)], "query": [f"query {i}" for i in range(20_000)]})
    tables = {"impressions": imp, "clicks": clicked[["request_id", "product_id", "event_timestamp"]],
              "conversions": conv[["request_id", "product_id", "event_timestamp"]], "queries": queries}
    for name, df in tables.items():
        df.to_parquet(out / f"{name}.parquet", index=False) if fmt == "parquet" else df.to_csv(out / f"{name}.csv", index=False)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impressions", type=int, default=1_000_000)
    ap.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pd.DataFrame({"product_id": [f"p{i:05d}" for i in range(50_000)], "title": "x"}).to_csv(root / "cat.csv", index=False)
        make_log(root / "logs", args.impressions, args.format, rng)
        t = time.perf_counter()
        problems = check_inputs(root / "cat.csv", logs=root / "logs")
        seconds = time.perf_counter() - t
    write(f"input_check_{args.format}", {
        "impressions": args.impressions, "format": args.format, "problems": len(problems),
        "check_seconds": round(seconds, 1), "cpu": cpu_model(), "cpus": os.cpu_count(),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "command": f"python bench/input_check.py --impressions {args.impressions} --format {args.format}"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
