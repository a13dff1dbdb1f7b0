"""Batch step: the ANN index of a committed product embedding table, stored next to the table.

    python -m features.build_index --table DATA/product_embeddings --model-version V [--kind hnsw]

Layout (names starting with "_" are invisible to parquet and Spark readers of the table):

    TABLE/_index/model_version=V/<build>/index.faiss, ids.parquet, retriever.json
    TABLE/_index/model_version=V/CURRENT          the build a server loads (replaced atomically)

A build is written whole under its own folder and only then named in CURRENT, so a reader sees the
previous index or the new one, never a partial file; the build before the current one is kept for
servers that read CURRENT just before the switch, older ones are deleted. `retriever.json` records
the model version and the table's committed run (`source_run`); `load_index` refuses an index whose
run is no longer the committed one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from dashclip.columns import MODEL_VERSION
from features.retriever import CONFIG_FILE, FaissRetriever, RetrieverConfig

INDEX_DIR, CURRENT = "_index", "CURRENT"
log = logging.getLogger(__name__)


class StaleIndex(ValueError):
    """The stored index was built from another model version or another commit of the table."""


def index_root(table: str | Path, model_version: str) -> Path:
    return Path(table) / INDEX_DIR / f"{MODEL_VERSION}={model_version}"


def committed_source(table: str | Path, model_version: str) -> str | None:
    """The run that committed the table's partition of `model_version` (None for a table written
    without the Spark commit protocol)."""
    from spark_jobs.lib.table import committed_run

    return committed_run(Path(table), model_version)


def _fsync_dir(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())


def build_index(table: str | Path, model_version: str, config: RetrieverConfig | None = None) -> tuple[Path, dict]:
    """Build, store and publish the index of `model_version`; (build folder, report)."""
    source = committed_source(table, model_version)
    cfg = (config or RetrieverConfig()).model_copy(update={"source_run": source})
    t0 = time.perf_counter()
    retriever = FaissRetriever.from_table(table, model_version, cfg)
    build_s = time.perf_counter() - t0
    root = index_root(table, model_version)
    build = root / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    retriever.save(build)
    _fsync_dir(build)
    pointer = root / f".{CURRENT}.{build.name}.tmp"
    pointer.write_text(build.name + "\n")
    previous = _current_name(root)
    os.replace(pointer, root / CURRENT)  # the switch
    for old in root.iterdir():
        if old.is_dir() and old.name not in (build.name, previous):
            shutil.rmtree(old, ignore_errors=True)
    report = {"index": str(build), "model_version": model_version, "source_run": source, "count": retriever.config.count,
              "dim": retriever.config.dim, "kind": cfg.kind, "build_s": round(build_s, 3),
              "index_bytes": (build / "index.faiss").stat().st_size}
    return build, report


def _current_name(root: Path) -> str | None:
    try:
        return (root / CURRENT).read_text().strip() or None
    except OSError:
        return None


def load_index(table: str | Path, model_version: str, mmap: bool = True) -> FaissRetriever | None:
    """The published index of `model_version` (memory-mapped), None when none was built;
    StaleIndex when it was built for another version or another commit of the table."""
    root = index_root(table, model_version)
    name = _current_name(root)
    if name is None:
        return None
    cfg = json.loads((root / name / CONFIG_FILE).read_text())
    if cfg.get("model_version") != model_version:
        raise StaleIndex(f"{root / name}: model_version {cfg.get('model_version')!r}, expected {model_version!r}")
    source = committed_source(table, model_version)
    if cfg.get("source_run") != source:
        raise StaleIndex(f"{root / name}: built from run {cfg.get('source_run')!r} but the committed run is {source!r}; "
                         f"rerun python -m features.build_index")
    return FaissRetriever.load(root / name, mmap=mmap)


def open_retriever(table: str | Path, model_version: str, fallback: RetrieverConfig | None = None) -> FaissRetriever:
    """What a server loads at start-up: the published index of `model_version`, memory-mapped;
    when there is none, or it is stale, an index built in memory from the table (`fallback`)."""
    try:
        found = load_index(table, model_version)
        if found is not None:
            log.info("retrieval index %s (%s, %d products) mapped", index_root(table, model_version), found.config.kind,
                     found.config.count)
            return found
        log.warning("no published retrieval index for model_version=%s under %s; building one in memory "
                    "(python -m features.build_index publishes one)", model_version, table)
    except StaleIndex as e:
        log.warning("%s; building one in memory", e)
    return FaissRetriever.from_table(table, model_version, fallback)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m features.build_index", description=__doc__.split("\n")[0])
    ap.add_argument("--table", required=True, help="the product embedding table folder (model_version=V/ partitions)")
    ap.add_argument("--model-version", required=True)
    ap.add_argument("--kind", default="hnsw", choices=["flat", "hnsw", "ivf", "ivfpq"])
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef-search", type=int, default=128)
    ap.add_argument("--nlist", type=int, default=None, help="inverted lists (default 4*sqrt(n))")
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--pq-m", type=int, default=None, help="PQ sub-quantisers (default dim/8)")
    ap.add_argument("--pq-nbits", type=int, default=8, choices=[4, 8])
    ap.add_argument("--refine", default="sq8", choices=["none", "sq8", "fp16", "flat"])
    ap.add_argument("--k-factor", type=int, default=8, help="ivfpq: re-rank k * factor candidates")
    ap.add_argument("--threads", type=int, default=0, help="faiss build threads (0: faiss default)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    cfg = RetrieverConfig(kind=args.kind, hnsw_m=args.hnsw_m, hnsw_ef_construction=args.ef_construction,
                          hnsw_ef_search=args.ef_search, ivf_nlist=args.nlist, ivf_nprobe=args.nprobe, pq_m=args.pq_m,
                          pq_nbits=args.pq_nbits, refine=args.refine, refine_k_factor=args.k_factor)
    _, report = build_index(args.table, args.model_version, cfg)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
