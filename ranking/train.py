"""Train the ads ranker (pCTR, pCVR) with and without DashCLIP embedding features; measure the lift.

    python -m ranking.train --checkpoint runs/pipeline/stage2 [--catalog runs/pipeline/ingest] \
        [--out runs/ranker] [--feature-data DIR] [--config cfg.json] [--fast] [--truth annotator|independent|both] \
        [--logs DIR [--queries Q] | --simulate]

Simulates traffic (SIMULATED, `ranking/simulator.py`), runs the batch jobs (`spark_jobs`, in one
process) that write the stats, consumer-profile and missing product/query embedding rows under the
feature data folder (`$DASHCLIP_FEATURE_DATA`, default `feature_repo/data`; rows the Spark jobs
wrote for the checkpoint's model version are reused), builds point-in-time frames through Feast
(which only read that folder), and writes
`OUT/models/{with_embeddings,baseline}/` and `OUT/report.{json,md}` + `OUT/*.png`.
`--logs DIR` trains on a user's own ads logs instead (`ranking.logs`; no simulation, no A/B).
`--fast` is a small setting (fewer consumers, days and requests) for a quick end-to-end run.
`--truth` picks whose relevance grades the simulated clicks follow (`world.truth`): the rule
annotator that labels stage 2, or the independent judge; `both` runs the measurement once per truth
into `OUT/truth=<name>/` and compares the lifts in `OUT/lift_by_truth.{json,md}`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from features import columns as FC

if TYPE_CHECKING:
    from ranking.pipeline import TrainConfig

FAST_CONFIG = Path(__file__).resolve().parent / "configs" / "fast.json"  # the --fast setting


def overlay(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, nested sections merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | None, fast: bool):
    """``--config`` (a TrainConfig JSON file) over the ``--fast`` file when given; unknown keys are
    refused, naming the file, field and value."""
    from dashclip.cli import load_config as load
    from ranking.pipeline import TrainConfig

    if not fast:
        return load(TrainConfig, path)
    user = load(TrainConfig, path).model_dump(exclude_unset=True) if path else {}
    return load(TrainConfig, None, overlay(json.loads(FAST_CONFIG.read_text()), user))


TRUTHS = ("annotator", "independent")  # ranking.world.TRUTHS, spelled here so --help imports nothing heavy
RENAMED = {"--products": "--catalog"}  # older spellings, still accepted


def build_parser():
    from dashclip.cli import parser

    ap = parser("python -m ranking.train", __doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="DashCLIP checkpoint folder (query + product towers)")
    ap.add_argument("--catalog", default="runs/pipeline/ingest",
                    help="ingested products.parquet or its folder (or a raw catalog, ingested here)")
    ap.add_argument("--out", default="runs/ranker", help="output folder: models/, sim/, report.{json,md}, figures")
    ap.add_argument("--feature-data", help=f"offline tables folder (default: ${FC.ENV_DATA_DIR}, else feature_repo/data)")
    ap.add_argument("--config", help="JSON file of TrainConfig fields (world, sim, params, ...)")
    ap.add_argument("--fast", action="store_true", help="small simulation for a quick run")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--logs", help="train on these ads logs (impressions, clicks, conversions[, purchases, "
                                    "queries, candidates]; docs/own_data.md) instead of simulating")
    src.add_argument("--simulate", action="store_true", help="simulate traffic (the default without --logs)")
    ap.add_argument("--queries", help="query log (query_id, query): texts of logged queries (with --logs)")
    ap.add_argument("--truth", choices=[*TRUTHS, "both"],
                    help="relevance behind the simulated clicks: the stage-2 annotator, the independent judge, or "
                         "both (one run each into OUT/truth=<name>/, compared in OUT/lift_by_truth.md); "
                         "default: the config's world.truth (annotator)")
    return ap


def main(argv: list[str] | None = None) -> int:
    from dashclip.cli import run_main

    return run_main(build_parser(), _run, argv, RENAMED)


def _run(args) -> int:
    from dashclip.catalog import load_products
    from dashclip.cli import CliError
    from features.definitions import default_data_dir
    from features.store import REPO_DIR
    from ranking import report as REPORT
    from ranking.pipeline import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cfg = load_config(args.config, args.fast)
    out = Path(args.out)
    data_dir = Path(args.feature_data) if args.feature_data else default_data_dir(REPO_DIR)
    if args.logs and args.truth:
        raise CliError("--truth sets the simulator's relevance; it does not apply to --logs")
    products = load_products(args.catalog)
    if args.logs:
        return _main_logs(args, products, cfg, out, data_dir)
    if args.truth != "both":
        if args.truth:
            cfg = cfg.model_copy(update={"world": cfg.world.model_copy(update={"truth": args.truth})})
        _simulated(run(products, args.checkpoint, out, data_dir, cfg, progress=True), out, data_dir)
        return 0
    # the config's own truth runs last, so the feature tables left under data_dir are its world's
    order = sorted(TRUTHS, key=lambda t: t == cfg.world.truth)
    reports = {}
    for truth in order:
        sub = out / f"truth={truth}"
        print(f"--- truth: {truth} ({sub})")
        c = cfg.model_copy(update={"world": cfg.world.model_copy(update={"truth": truth})})
        reports[truth] = _simulated(run(products, args.checkpoint, sub, data_dir, c, progress=True), sub, data_dir)
    paths = REPORT.write_by_truth({t: reports[t] for t in TRUTHS}, out)
    print(paths["markdown"].read_text())
    for k, p in paths.items():
        print(f"lift by truth {k + ':':<10} {p}")
    return 0


def _simulated(report: dict, out: Path, data_dir: Path) -> dict:
    """Write one simulated run's report and print its headline figures; returns the report."""
    from ranking import report as REPORT

    paths = REPORT.write(report, out)
    auc, ab = report["auc"]["ctr"], report["ab"]
    print(f"relevance truth: {report['truth']}")
    print(f"pCTR test AUC: with embeddings {auc['with_embeddings']:.4f}, baseline {auc['baseline']:.4f} (simulated clicks)")
    print(f"simulated A/B CTR lift {100 * ab['ctr_lift']:+.1f}% CI {[round(100 * x, 1) for x in ab['ctr_lift_ci95']]}, "
          f"CVR lift {100 * ab['cvr_lift']:+.1f}% CI {[round(100 * x, 1) for x in ab['cvr_lift_ci95']]}")
    print(f"models:          {out / 'models'}")
    print(f"simulated logs:  {out / 'sim'}")
    print(f"feature tables:  {data_dir}")
    for k, p in paths.items():
        print(f"report {k + ':':<10} {p}")
    return report


def _main_logs(args, products, cfg: TrainConfig, out: Path, data_dir: Path) -> int:
    from dashclip.inputs import InputError, read_table
    from ranking.logs import read_logs, run_on_logs, write_report

    try:
        logs = read_logs(args.logs, products, read_table(args.queries) if args.queries else None)
        report = run_on_logs(logs, products, args.checkpoint, out, data_dir, cfg, progress=True)
    except InputError as e:  # every problem of the logs, a line each
        for p in e.problems:
            print(f"error: {p.line()}", file=sys.stderr)
        return 2
    paths = write_report(report, out)
    auc = report["auc"]["ctr"]
    print(f"pCTR test AUC: with embeddings {auc['with_embeddings']:.4f}, baseline {auc['baseline']:.4f} (logged clicks)")
    for name, how in report["estimates"].items():
        print(f"{name + ':':<12} {how}")
    print(f"models:          {out / 'models'}")
    print(f"feature tables:  {data_dir}")
    for k, p in paths.items():
        print(f"report {k + ':':<10} {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
