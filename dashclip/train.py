"""Training entry point.

    python -m dashclip.train stage1 --out DIR [--config FILE] [--catalog PATH] [--epochs N] [--device auto|cpu|cuda[:N]]
    python -m dashclip.train stage2 --checkpoint STAGE1_DIR --out DIR [--config FILE] [--catalog PATH] [--labels TABLE]
        [--queries QUERY_LOG [--generate-queries]] [--seed-judgments JUDGMENTS] [--labeller teacher|llm]

(or ``dashclip train ...``). Under ``torchrun --nproc_per_node N -m dashclip.train ...`` the stage
trains with DistributedDataParallel over N processes (``dashclip.distributed``, docs/gpu.md).
``--config`` is a JSON file of Stage1Config / Stage2Config fields; flags override it. The
defaults train on the shipped catalog. The same command runs on a GPU box with larger settings.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


def _load(cls, path: str | None, overrides: dict):
    from dashclip.cli import load_config

    cfg = load_config(cls, path, overrides)
    if cfg.catalog and "catalog" in cfg.model_fields_set:  # recorded resolved: --reuse from elsewhere compares the same file
        cfg = cfg.model_copy(update={"catalog": str(Path(cfg.catalog).resolve())})
    return cfg


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
        if isinstance(cfg, dict):  # saved before the device fields: the defaults, which it ran with
            cfg.pop("loader_workers", None)  # how batches are read changes no result
            cfg.setdefault("device", "auto")
            if "teacher_device" in cfg:  # None follows ``device``
                cfg["teacher_device"] = cfg["teacher_device"] or cfg["device"]
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


RENAMED = {"--stage1": "--checkpoint"}  # older spellings, still accepted


def build_parser():
    from dashclip.cli import parser, subcommand

    ap = parser("python -m dashclip.train", __doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="stage", required=True, metavar="STAGE")
    s1 = subcommand(sub, "stage1", "continual pretraining of the product encoder")
    s2 = subcommand(sub, "stage2", "relevance labels and query-encoder alignment")
    s2.add_argument("--checkpoint", required=True, help="the stage-1 checkpoint folder to start from")
    s2.add_argument("--queries", help="query log (query_id, query[, count]): the training queries")
    s2.add_argument("--generate-queries", action="store_true", default=None,
                    help="add generated queries to the query log's")
    s2.add_argument("--seed-judgments", help="human seed (query_id, query, product_id, label 0-3) the teacher "
                                             "learns from; default: the rule annotator (simulated labels)")
    s2.add_argument("--labeller", choices=("teacher", "llm"),
                    help="who grades the mined pairs (llm: endpoint, model and key from DASHCLIP_LLM_*)")
    s2.add_argument("--labels", help="label table of spark_jobs/label_pairs.py: its labels replace in-process teacher labelling")
    for s in (s1, s2):
        s.add_argument("--out", required=True, help="output folder: the checkpoint trained here")
        s.add_argument("--config", help="JSON file of Stage1Config / Stage2Config fields (flags override it)")
        s.add_argument("--catalog", help="catalog file, ingested products.parquet or its folder "
                       "(default: $DASHCLIP_CATALOG, else $DASHCLIP_DATA/catalog.csv, else ../shared/data/catalog.csv)")
        s.add_argument("--epochs", type=int, help="training epochs (default: the config's)")
        s.add_argument("--threads", type=int, help="torch CPU threads (default: the config's, else torch's)")
        s.add_argument("--device", help="auto (CUDA when present) | cpu | cuda | cuda:N (default: the config's, "
                                        "else auto); stage 2's teacher follows it unless teacher_device is set")
        s.add_argument("--reuse", action="store_true",
                       help="skip training when OUT already holds a checkpoint trained with the same settings")
    return ap


def main(argv: list[str] | None = None) -> int:
    from dashclip.cli import run_main

    return run_main(build_parser(), _run, argv, RENAMED)


def _run(args) -> int:
    from dashclip import distributed
    from dashclip.inputs import InputError

    main = distributed.is_main()  # under torchrun, rank 0 logs and prints; the others warn only
    logging.basicConfig(level=logging.INFO if main else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        summary = _train(args)
    except InputError as e:  # a query log or seed judgments with problems: every one of them, a line each
        for p in e.problems:
            print(f"error: {p.line()}", file=sys.stderr)
        return 2
    finally:
        distributed.cleanup()
    if summary is None or not main:  # --reuse and already up to date; or not rank 0
        return 0
    print(json.dumps(summary, indent=2))
    print(f"checkpoint: {args.out}")
    return 0


def _train(args) -> dict | None:
    if args.stage == "stage1":
        from dashclip.stage1 import Stage1Config, train_stage1

        cfg = _load(Stage1Config, args.config, {"catalog": args.catalog, "epochs": args.epochs, "threads": args.threads,
                                                "device": args.device})
        if args.reuse and _up_to_date(args.out, cfg.model_dump(), None):
            return None
        return train_stage1(cfg, args.out)
    else:
        from dashclip.stage2 import Stage2Config, train_stage2

        cfg = _load(Stage2Config, args.config, {"catalog": args.catalog, "epochs": args.epochs, "threads": args.threads,
                                                "device": args.device,
                                                "queries_file": args.queries, "generate_queries": args.generate_queries,
                                                "seed_judgments": args.seed_judgments, "labeller": args.labeller,
                                                "labels": args.labels})
        if args.reuse and _up_to_date(args.out, cfg.model_dump(), args.checkpoint):
            return None
        return train_stage2(cfg, args.checkpoint, args.out)


if __name__ == "__main__":
    sys.exit(main())
