"""Stage 1 and stage 2 run time against an earlier checkout, run side by side on one machine.

Each stage is trained twice at the same time, one process per checkout with one torch thread
each, under ``/usr/bin/time -v`` (both start together, so both see the same machine):

    # the baseline checkout in its own worktree, sharing the venv and the trunk cache
    git worktree add ../base BASE_COMMIT && ln -s "$PWD/.venv" ../base/.venv
    mkdir -p ../base/runs && ln -s "$PWD/runs/cache" ../base/runs/cache
    (/usr/bin/time -v python -m dashclip.train stage2 --checkpoint S1 --out CUR --threads 1 ... > cur.log 2>&1 &
     cd ../base && /usr/bin/time -v python -m dashclip.train stage2 --stage1 S1 --out BASE --threads 1 ... > base.log 2>&1)

then this script reads the logs and the outputs' summaries:

    python bench/stage_times.py --stage stage2 --current CUR cur.log --base BASE base.log --base-commit BASE_COMMIT
    python bench/stage_times.py --stage stage1 --current CUR cur.log --base BASE base.log --base-commit BASE_COMMIT

and adds the pair to ``bench/results/stage_times.json`` (current / base ratios), under the stage's
name or ``--key``: two settings of the same code compared the same way go under their own key.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "stage_times.json"
SUMMARY_KEYS = ("epochs_run", "pairs_mined", "teacher_labelled_pairs", "teacher_train_s", "teacher_label_s",
                "label_s", "train_s", "cache_s", "model_version")


def time_v(log: Path) -> dict:
    """Wall, user and system seconds and peak memory from a ``/usr/bin/time -v`` log."""
    text = log.read_text(errors="replace")

    def field(name: str) -> str:
        m = re.search(rf"{re.escape(name)}: (.+)", text)
        if not m:
            raise ValueError(f"{log}: no '{name}' line (was the run wrapped in /usr/bin/time -v?)")
        return m.group(1).strip()

    parts = [float(x) for x in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    wall = sum(x * 60 ** i for i, x in enumerate(reversed(parts)))
    return {"wall_s": round(wall, 1), "user_s": float(field("User time (seconds)")),
            "system_s": float(field("System time (seconds)")),
            "max_rss_gib": round(int(field("Maximum resident set size (kbytes)")) / 2**20, 2),
            "exit_status": int(field("Exit status"))}


def run_figures(out: Path, log: Path, stage: str) -> dict:
    own = out / f"{stage}_summary.json"  # stage 2 writes one; every checkpoint's meta.json holds it too
    summary = json.loads(own.read_text()) if own.is_file() else json.loads((out / "meta.json").read_text())["summary"]
    return {**time_v(log), "out": str(out), **{k: summary[k] for k in SUMMARY_KEYS if k in summary}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=("stage1", "stage2"), required=True)
    ap.add_argument("--current", nargs=2, type=Path, metavar=("OUT", "LOG"), required=True)
    ap.add_argument("--base", nargs=2, type=Path, metavar=("OUT", "LOG"), required=True)
    ap.add_argument("--base-commit", required=True)
    ap.add_argument("--note", default="")
    ap.add_argument("--key", help="the record's key in the results file (default: the stage); e.g. a setting "
                                  "compared on the same code, with --base-commit naming it")
    args = ap.parse_args(argv)
    try:
        cur, base = run_figures(*args.current, args.stage), run_figures(*args.base, args.stage)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    ratio = {k: round(cur[k] / base[k], 3) for k in ("wall_s", "user_s", "label_s", "train_s", "teacher_labelled_pairs")
             if k in cur and k in base and base[k]}
    record = {"cpu": cpu_model(), "threads_per_run": 1, "side_by_side": True, "current_commit": head,
              "base_commit": args.base_commit, "current": cur, "base": base, "current_over_base": ratio,
              "note": args.note}
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results["what"] = "stage 1 / stage 2 wall time of the current code against an earlier checkout, side by side"
    results[args.key or args.stage] = record
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
