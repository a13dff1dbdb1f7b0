"""Command lines of the feature store modules, light enough to answer ``--help`` before Feast loads.

    python -m features.store env        # the export line feature_store.yaml needs
    python -m features.repo init DIR    # a Feast repo folder from the packaged template
"""

from __future__ import annotations

from collections.abc import Sequence

from dashclip.cli import lazy, parser, run_main, subcommand


def store_main(argv: Sequence[str] | None = None) -> int:
    ap = parser("python -m features.store", "The feature store's Redis connection for Feast.")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    subcommand(sub, "env", "print the shell export line that feature_store.yaml reads (FEAST_REDIS_CONNECTION), "
               "converted from $REDIS_URL (default redis://127.0.0.1:6379)")
    return run_main(ap, lazy("features.store:run_cli"), argv)
