"""Training entry point.

    python -m dashclip.train stage1 --out DIR [--config FILE] [--catalog PATH] [--epochs N]
    python -m dashclip.train stage2 --stage1 DIR --out DIR [--config FILE] [--catalog PATH] [--labels TABLE]
        [--queries QUERY_LOG [--generate-queries]] [--seed-judgments JUDGMENTS] [--labeller teacher|llm]

``--config`` is a JSON file of Stage1Config / Stage2Config fields; flags override it. The
defaults train on the shipped catalog. The same command runs on a GPU box with larger settings.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _load(cls, path: str | None, overrides: dict):
    data = json.loads(Path(path).read_text()) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if data.get("catalog"):  # recorded resolved, so --reuse from another directory compares the same file
        data["catalog"] = str(Path(data["catalog"]).resolve())
    return cls.model_validate(data)


def _up_to_date(out: str, train_config: dict, stage1: str | None) -> bool:
    """A checkpoint in ``out`` trained with these settings (and, for stage 2, on this stage-1
    version; for stage 1, with the architecture the named model config describes today)."""
    meta_path = Path(out) / "meta.json"
    if not meta_path.exists() or not (Path(out) / "model.safetensors").exists():
        return False
    meta = json.loads(meta_path.read_text())

    def norm(cfg: dict | None) -> dict | None:  # the same catalog file, however its path is written
        cfg = json.loads(json.dumps(cfg, default=str))
        if isinstance(cfg, dict) and cfg.get("catalog"):
            cfg["catalog"] = str(Path(cfg["catalog"]).resolve())
        return cfg
    same = norm(train_config) == norm(meta.get("train_config"))
    if stage1 is None and same and "model" in train_config:
        from dashclip.config import DashCLIPConfig, load_model_config

        saved = DashCLIPConfig.model_validate_json((Path(out) / "config.json").read_text())
        same = saved == load_model_config(train_config["model"])
    if stage1 is not None and same:  # the query log and seed files, by content: an edited file retrains
        from dashclip.inputs import file_digests

        same = meta.get("inputs", {}) == file_digests(train_config.get("queries_file"), train_config.get("seed_judgments"))
    if stage1 is not None:
        from dashclip.checkpoint import read_meta

        s1 = read_meta(Path(stage1))["model_version"]
        same = same and meta.get("stage1_version") == s1
    if same:
        print(f"checkpoint {out} is up to date ({meta['model_version']}); --reuse: not retraining")
    return same


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashclip.train", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    s1 = sub.add_parser("stage1", help="continual pretraining of the product encoder")
    s2 = sub.add_parser("stage2", help="relevance labels and query-encoder alignment")
    s2.add_argument("--stage1", required=True, help="stage-1 checkpoint folder")
    s2.add_argument("--queries", help="query log (query_id, query[, count]): the training queries")
    s2.add_argument("--generate-queries", action="store_true", default=None,
                    help="add generated queries to the query log's")
    s2.add_argument("--seed-judgments", help="human seed (query_id, query, product_id, label 0-3) the teacher "
                                             "learns from; default: the rule annotator (simulated labels)")
    s2.add_argument("--labeller", choices=("teacher", "llm"),
                    help="who grades the mined pairs (llm: endpoint, model and key from DASHCLIP_LLM_*)")
    s2.add_argument("--labels", help="label table of spark_jobs/label_pairs.py: its labels replace in-process teacher labelling")
    for s in (s1, s2):
        s.add_argument("--out", required=True)
        s.add_argument("--config", help="JSON file with training settings")
        s.add_argument("--catalog", help="catalog file or ingested products.parquet")
        s.add_argument("--epochs", type=int)
        s.add_argument("--threads", type=int)
        s.add_argument("--reuse", action="store_true",
                       help="skip training when OUT already holds a checkpoint trained with the same settings")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from dashclip.checkpoint import CheckpointError
    from dashclip.inputs import InputError
    from dashclip.stage2 import LabelTableError

    try:
        summary = _train(args)
    except InputError as e:  # a query log or seed judgments with problems: every one of them
        for p in e.problems:
            print(f"error: {p.line()}", file=sys.stderr)
        return 2
    except (FileNotFoundError, CheckpointError, LabelTableError) as e:  # a missing catalog, a damaged or changed
        # checkpoint, a label table without this run's pairs: one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary is None:  # --reuse and already up to date
        return 0
    print(json.dumps(summary, indent=2))
    print(f"checkpoint: {args.out}")
    return 0


def _train(args) -> dict | None:
    if args.stage == "stage1":
        from dashclip.stage1 import Stage1Config, train_stage1

        cfg = _load(Stage1Config, args.config, {"catalog": args.catalog, "epochs": args.epochs, "threads": args.threads})
        if args.reuse and _up_to_date(args.out, cfg.model_dump(), None):
            return None
        return train_stage1(cfg, args.out)
    else:
        from dashclip.stage2 import Stage2Config, train_stage2

        cfg = _load(Stage2Config, args.config, {"catalog": args.catalog, "epochs": args.epochs, "threads": args.threads,
                                                "queries_file": args.queries, "generate_queries": args.generate_queries,
                                                "seed_judgments": args.seed_judgments, "labeller": args.labeller,
                                                "labels": args.labels})
        if args.reuse and _up_to_date(args.out, cfg.model_dump(), args.stage1):
            return None
        return train_stage2(cfg, args.stage1, args.out)


if __name__ == "__main__":
    sys.exit(main())
