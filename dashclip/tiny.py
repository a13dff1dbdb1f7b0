"""A tiny randomly initialised checkpoint, for tests and for building downstream jobs early.

    python -m dashclip.tiny --out DIR [--config tiny-random] [--seed 0]
"""

from __future__ import annotations

from pathlib import Path


def make_tiny_checkpoint(out: str | Path, config: str = "tiny-random", seed: int = 0,
                         with_query_tower: bool = True) -> Path:
    import torch

    from dashclip.config import load_model_config
    from dashclip.model import DashCLIP

    torch.manual_seed(seed)
    model = DashCLIP(load_model_config(config), with_query_tower=with_query_tower)
    model.save_pretrained(out, stage="tiny")
    return Path(out)


def build_parser():
    from dashclip.cli import parser

    ap = parser("python -m dashclip.tiny", __doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder: the checkpoint")
    ap.add_argument("--config", default="tiny-random", metavar="NAME|FILE",
                    help="model architecture: a name in dashclip/configs/ or a JSON file")
    ap.add_argument("--seed", type=int, default=0, help="weight initialisation seed")
    return ap


def main(argv: list[str] | None = None) -> int:
    from dashclip.cli import run_main

    return run_main(build_parser(), lambda a: print(make_tiny_checkpoint(a.out, a.config, a.seed)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
