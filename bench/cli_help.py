"""How long every command line takes to answer ``--help`` (a fresh interpreter each time, as a user
types it), against the 1 s target; also the time to import each entry point's heavy libraries,
which is what ``--help`` no longer waits for.

    python bench/cli_help.py [--repeats 5]

Writes bench/results/cli_help.json and prints one line per command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.machine import cpu_model  # noqa: E402

from tests.test_cli import ENTRY_POINTS  # noqa: E402  (the same list the test checks)

TARGET_S = 1.0
HEAVY = {"torch": "import torch", "pandas": "import pandas", "fastapi + feast + faiss": "import fastapi, feast, faiss"}


def wall(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, check=True, timeout=300,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - t



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="runs per command; the median is reported")
    a = ap.parse_args()
    rows = {}
    for name, args in ENTRY_POINTS.items():
        times = [wall([*args, "--help"]) for _ in range(a.repeats)]
        rows[name] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
        print(f"{name:<34} {rows[name]['median_s']:.3f} s (max {rows[name]['max_s']:.3f})")
    imports = {k: round(statistics.median(wall(["-c", code]) for _ in range(3)), 3) for k, code in HEAVY.items()}
    print("for comparison, a bare import of:", imports)
    worst = max(r["max_s"] for r in rows.values())
    result = {
        "what": "wall seconds for `<command> --help` in a fresh interpreter (median and max of the runs)",
        "target_s": TARGET_S, "all_under_target": worst < TARGET_S, "worst_s": worst, "repeats": a.repeats,
        "commands": rows, "bare_import_s": imports,
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()]},
    }
    out = REPO / "bench" / "results" / "cli_help.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"worst {worst:.3f} s (target {TARGET_S} s) -> {out}")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
