"""Data files shipped inside the package, found through importlib.resources (so an installed
wheel has them too, with no source tree).

    python -m dashclip.resources                           # every file and its path
    python -m dashclip.resources handwritten_queries.csv   # one path, e.g. for --queries

``handwritten_queries.csv``: shopper queries written by hand (``query_id, query, intent``), the
second query set of the evaluation (never used for training or tuning).
``validation_queries.csv``: shopper queries of the same intent classes, worded apart from the test
set, for choosing settings (``python -m dashclip.wise_ft``) on the catalog's validation split.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

HANDWRITTEN_QUERIES = "handwritten_queries.csv"


def names() -> list[str]:
    return sorted(f.name for f in files(__name__).iterdir() if f.is_file() and not f.name.endswith((".py", ".pyc")))


def resource_path(name: str) -> Path:
    """The packaged file ``name`` on disk; FileNotFoundError names the ones there are."""
    f = files(__name__) / name
    if not f.is_file():
        raise FileNotFoundError(f"no packaged resource {name!r}; there are: {', '.join(names())}")
    return Path(str(f))  # pip installs unzipped, so the resource is a real file


def main(argv: list[str] | None = None) -> int:
    from dashclip.cli import parser, run_main

    ap = parser("python -m dashclip.resources", "Data files shipped inside the package, and where they are on disk.")
    ap.add_argument("names", nargs="*", metavar="NAME", help="print these files' paths (default: every file and its path)")
    return run_main(ap, _run, argv)


def _run(args) -> int:
    for name in args.names or names():
        print(resource_path(name) if args.names else f"{name}\t{resource_path(name)}")
    return 0
