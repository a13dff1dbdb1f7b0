"""A tiny randomly initialised checkpoint, for tests and for building downstream jobs early.

    python -m dashclip.tiny --out DIR [--config tiny-random] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dashclip.config import load_model_config
from dashclip.model import DashCLIP


def make_tiny_checkpoint(out: str | Path, config: str = "tiny-random", seed: int = 0,
                         with_query_tower: bool = True) -> Path:
    torch.manual_seed(seed)
    model = DashCLIP(load_model_config(config), with_query_tower=with_query_tower)
    model.save_pretrained(out, stage="tiny")
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashclip.tiny")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="tiny-random")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(make_tiny_checkpoint(args.out, args.config, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
