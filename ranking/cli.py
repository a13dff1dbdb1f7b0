"""The ads server's command line and settings, light enough to answer ``--help`` before FastAPI,
Feast and faiss load (``python -m ranking.serve`` parses here first).

Every setting is a flag and an environment variable (``DASHCLIP_SERVE_`` + the flag's name,
e.g. ``DASHCLIP_SERVE_RANKER``); a flag wins. The variables are how ``create_app()`` is configured
when a process manager imports it:

    uvicorn --factory ranking.serve:create_app --host 0.0.0.0 --port 8000 --workers 4
    gunicorn -k uvicorn.workers.UvicornWorker -w 4 'ranking.serve:create_app()'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dashclip.cli import CliError, lazy, parser, run_main

ENV_PREFIX = "DASHCLIP_SERVE_"
MAX_BODY_BYTES = 256 * 1024  # request bodies above it get 413 (ranking.serve uses these defaults too)
LOOKUP_TIMEOUT_MS = 50.0  # deadline for one request's Redis reads
RANK_THREADS = 2  # /rank requests scored at once per worker process
RENAMED = {"--models": "--ranker", "--repo": "--feature-repo", "--products": "--catalog"}  # older spellings
LOG_LEVELS = ("debug", "info", "warning", "error")


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def serve_parser():
    ap = parser("python -m ranking.serve", "The ads server: ranks ads for a consumer and a query with online "
                "features from Redis (POST /rank, GET /health, GET /metrics).")

    def add(flag: str, default, help: str, **kw) -> None:
        ap.add_argument(flag, default=os.environ.get(env_name(flag), default), help=f"{help} [${env_name(flag)}]", **kw)

    add("--ranker", "runs/ranker/models/with_embeddings", "ranker folder (ranking.train's OUT/models/with_embeddings)")
    add("--checkpoint", None, "DashCLIP checkpoint folder whose query tower embeds queries the store does not hold "
        "(default: none; such queries are scored without a query embedding)")
    add("--feature-repo", "feature_repo", "Feast repo folder (feast apply and materialize done)")
    add("--catalog", "runs/pipeline/ingest", "ingested products.parquet or its folder (product categories)")
    add("--host", "127.0.0.1", "address to listen on")
    add("--port", "8000", "port to listen on", type=int)
    add("--workers", "1", "worker processes (each loads the models; settings reach them through the environment)",
        type=int)
    add("--rank-threads", str(RANK_THREADS), "requests a worker process scores at once (threads); more wait in "
        "line, first come first served: scoring is CPU work under one interpreter lock, so many at once only "
        "share the core and all finish late", type=int)
    add("--retrieve-k", "100", "candidates retrieved by faiss when a request names none", type=int)
    add("--retriever", "flat", "faiss index kind built in memory when no index is published "
        "(python -m features.build_index)", choices=["flat", "hnsw", "ivf", "ivfpq"])
    add("--max-body-bytes", str(MAX_BODY_BYTES), "larger request bodies get 413", type=int)
    add("--lookup-timeout-ms", str(LOOKUP_TIMEOUT_MS),
        "deadline for all Redis reads of one request (ms); past it the request gets 503", type=float)
    add("--breaker-failures", "5", "consecutive Redis failures that open the circuit", type=int)
    add("--breaker-reset-s", "1.0", "seconds between probes while the circuit is open", type=float)
    ap.add_argument("--no-store-marker", action="store_true",
                    default=os.environ.get(env_name("--no-store-marker"), "").lower() in ("1", "true", "yes"),
                    help="serve without materialization markers (a store filled by an engine that writes none) "
                         f"[${env_name('--no-store-marker')}=1]")
    add("--log-level", "info", "log level of the server's own lines (third-party loggers: warnings only)",
        choices=LOG_LEVELS)
    return ap


def settings(argv: Sequence[str] = ()):
    """The server settings: flags in ``argv`` over ``DASHCLIP_SERVE_*`` over the defaults."""
    return serve_parser().parse_args(list(argv))


def export(args) -> None:
    """Put ``args`` into the environment, where worker processes' ``create_app()`` reads them."""
    for action in serve_parser()._actions:
        if action.option_strings and action.dest not in ("help", "debug"):
            value = getattr(args, action.dest)
            if value is not None:
                os.environ[env_name(action.option_strings[0])] = str(value)


def check_paths(args) -> None:
    """Each folder the server reads exists, or one line naming the flag, its variable and the value
    (said before FastAPI, Feast and the models load)."""
    wanted = [("--ranker", args.ranker, "config.json", "ranking.train writes OUT/models/with_embeddings"),
              ("--feature-repo", args.feature_repo, "feature_store.yaml", "python -m features.repo init DIR makes one"),
              ("--checkpoint", args.checkpoint, "meta.json", "a DashCLIP checkpoint folder")]
    for flag, value, inside, hint in wanted:
        if value is not None and not (Path(value) / inside).is_file():
            raise CliError(f"{flag} {value} (${env_name(flag)}): no {inside} there ({hint})")
    if args.catalog is not None and not Path(args.catalog).exists():
        raise CliError(f"--catalog {args.catalog} (${env_name('--catalog')}): no such file or folder")


SERVE_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def one_thread_per_worker() -> None:
    """Pin OpenMP / BLAS pools (faiss, numpy, torch's query encoder) to one thread unless the user
    set them: a request is one small matrix, and N workers with a pool of one thread per core
    each would spin N x cores threads on the machine (LightGBM already predicts on one thread)."""
    for name in SERVE_THREAD_ENV:
        os.environ.setdefault(name, "1")


def _serve(args) -> int:
    check_paths(args)
    one_thread_per_worker()  # before faiss, numpy and torch load; worker processes inherit it
    return lazy("ranking.serve:run_cli")(args)


def serve_main(argv: Sequence[str] | None = None) -> int:
    return run_main(serve_parser(), _serve, argv, RENAMED)


if __name__ == "__main__":
    raise SystemExit(serve_main())
