"""Train the ads ranker (pCTR, pCVR) with and without DashCLIP embedding features; measure the lift.

    python -m ranking.train --checkpoint runs/pipeline/stage2 [--products runs/pipeline/ingest] \
        [--out runs/ranker] [--feature-data DIR] [--config cfg.json] [--fast]

Simulates traffic (SIMULATED, `ranking/simulator.py`), writes the stats and consumer-profile
tables under the feature data folder (`$DASHCLIP_FEATURE_DATA`, default `feature_repo/data`),
reusing the product/query embedding tables the Spark jobs wrote for the checkpoint's model
version (missing rows are embedded here), builds point-in-time frames through Feast, and writes
`OUT/models/{with_embeddings,baseline}/` and `OUT/report.{json,md}` + `OUT/*.png`.
`--fast` is a small setting (fewer consumers, days and requests) for a quick end-to-end run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from dashclip.catalog import load_products
from dashclip.checkpoint import CheckpointError
from features import columns as FC
from features.definitions import default_data_dir
from features.store import REPO_DIR
from ranking import report as REPORT
from ranking.pipeline import TrainConfig, run

FAST_CONFIG = Path(__file__).resolve().parent / "configs" / "fast.json"  # the --fast setting


def overlay(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, nested sections merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | None, fast: bool) -> TrainConfig:
    """``--config`` (a TrainConfig JSON file) over the ``--fast`` file when given; unknown keys are refused."""
    data = json.loads(FAST_CONFIG.read_text()) if fast else {}
    return TrainConfig.model_validate(overlay(data, json.loads(Path(path).read_text()) if path else {}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ranking.train", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="DashCLIP checkpoint (query + product towers)")
    ap.add_argument("--products", default="runs/pipeline/ingest", help="ingested products.parquet (or its folder, or a catalog)")
    ap.add_argument("--out", default="runs/ranker")
    ap.add_argument("--feature-data", default=None, help=f"offline tables folder (default ${FC.ENV_DATA_DIR} or feature_repo/data)")
    ap.add_argument("--config", default=None, help="JSON with TrainConfig fields (world, sim, params, ...)")
    ap.add_argument("--fast", action="store_true", help="small simulation for a quick run")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cfg = load_config(args.config, args.fast)
    out = Path(args.out)
    data_dir = Path(args.feature_data) if args.feature_data else default_data_dir(REPO_DIR)
    products = load_products(args.products)
    try:
        report = run(products, args.checkpoint, out, data_dir, cfg, progress=True)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = REPORT.write(report, out)
    auc, ab = report["auc"]["ctr"], report["ab"]
    print(f"pCTR test AUC: with embeddings {auc['with_embeddings']:.4f}, baseline {auc['baseline']:.4f} (simulated clicks)")
    print(f"simulated A/B CTR lift {100 * ab['ctr_lift']:+.1f}% CI {[round(100 * x, 1) for x in ab['ctr_lift_ci95']]}, "
          f"CVR lift {100 * ab['cvr_lift']:+.1f}% CI {[round(100 * x, 1) for x in ab['cvr_lift_ci95']]}")
    print(f"models:          {out / 'models'}")
    print(f"simulated logs:  {out / 'sim'}")
    print(f"feature tables:  {data_dir}")
    for k, p in paths.items():
        print(f"report {k + ':':<10} {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
