"""Throughput of ``spark_jobs/embed_catalog.py`` against a plain single-process batched torch loop.

    python bench/embed_throughput.py [--checkpoint DIR | --config dashclip-base] [--rows N]

Same rows, same checkpoint, same run: (1) the loop, which does what the embed CLI does
(``ingest_frame`` then ``ProductEmbedder.embed_products``, one process, torch threads = cores);
(2) ``spark-submit spark_jobs/embed_catalog.py`` on ``local[2]`` into a fresh table; (3) the same
command again on the unchanged catalog (it ends at the input fingerprint), and (4) once more with
``--revalidate`` (every row validated and joined against the committed table; nothing embedded). Spark throughput is reported after start-up (the job's own
clock, from a started session: worker start-up and model loading included) and with start-up (the
wall clock of the whole spark-submit). Writes bench/results/embed_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dashclip.catalog import ingest_frame, read_catalog  # noqa: E402

DATA = Path(os.environ.get("DASHCLIP_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "bench" / "results" / "embed_throughput.json"


def subset(catalog: Path, rows: int | None, work: Path) -> tuple[Path, int]:
    """Every k-th row (both sources represented) written to a CSV outside the repo; images stay put."""
    raw = read_catalog(catalog)
    if rows and rows < len(raw):
        raw = raw.iloc[:: len(raw) // rows].head(rows).reset_index(drop=True)
    path = work / "catalog_subset.csv"
    raw.to_csv(path, index=False)
    return path, len(raw)


def plain_loop(ckpt: str, catalog: Path, base_dir: Path, batch_size: int, threads: int) -> dict:
    from dashclip.inference import ProductEmbedder

    emb = ProductEmbedder(ckpt, device="cpu", batch_size=batch_size, threads=threads)
    raw = read_catalog(catalog)
    t0 = time.perf_counter()
    prods = ingest_frame(raw, base_dir, progress=False).products
    t1 = time.perf_counter()
    emb.embed_products(prods, progress=True)
    t2 = time.perf_counter()
    return {"rows": len(prods), "ingest_s": t1 - t0, "embed_s": t2 - t1, "total_s": t2 - t0}


def spark_run(ckpt: str, catalog: Path, image_root: Path, out: Path, report: Path, master: str, batch_size: int,
              extra: tuple[str, ...] = ()) -> dict:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(Path(sys.executable).parent / "spark-submit"), "--master", master, "--driver-memory", "2g",
           "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=2",
           str(REPO / "spark_jobs" / "embed_catalog.py"), "--checkpoint", ckpt, "--catalog", str(catalog),
           "--image-root", str(image_root), "--out", str(out), "--batch-size", str(batch_size), "--report", str(report), *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    rep = json.loads(report.read_text())
    return {"wall_s": wall, "job_s": rep["seconds"]["total"], "report": rep}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="checkpoint to use; default: a fresh untrained one of --config")
    ap.add_argument("--config", default="tiny-random", help="architecture when no --checkpoint (e.g. dashclip-base)")
    ap.add_argument("--catalog", default=str(DATA / "catalog.csv"))
    ap.add_argument("--rows", type=int, help="a deterministic subset of this many rows (default: all)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--note", default="", help="machine note stored with the figures")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="embed_bench_") as tmp:
        work = Path(tmp)
        ckpt = a.checkpoint
        if not ckpt:
            from dashclip.tiny import make_tiny_checkpoint

            ckpt = str(make_tiny_checkpoint(work / "ckpt", config=a.config))
        catalog = Path(a.catalog).resolve()
        sub, n_in = subset(catalog, a.rows, work)
        print(f"rows: {n_in}  checkpoint: {ckpt}")
        loop = plain_loop(ckpt, sub, catalog.parent, a.batch_size, threads=cores)
        print(f"loop: {loop}")
        full = spark_run(ckpt, sub, catalog.parent, work / "table", work / "full.json", a.master, a.batch_size)
        print(f"spark full: wall {full['wall_s']:.1f} s, job {full['job_s']:.1f} s")
        rerun = spark_run(ckpt, sub, catalog.parent, work / "table", work / "rerun.json", a.master, a.batch_size)
        print(f"spark unchanged rerun: wall {rerun['wall_s']:.1f} s, job {rerun['job_s']:.1f} s")
        reval = spark_run(ckpt, sub, catalog.parent, work / "table", work / "reval.json", a.master, a.batch_size,
                          ("--revalidate",))
        print(f"spark unchanged rerun --revalidate: wall {reval['wall_s']:.1f} s, job {reval['job_s']:.1f} s")
        meta = json.loads((Path(ckpt) / "meta.json").read_text())

    rows = full["report"]["rows_out"]
    res = {
        "rows": rows,
        "rows_in": n_in,
        "rows_rejected": full["report"]["rows_rejected"],
        "subset": f"every {len(read_catalog(catalog)) // n_in}-th row of {catalog.name}" if a.rows else "full catalog",
        "spark_rows_per_s": rows / full["job_s"],
        "spark_rows_per_s_with_startup": rows / full["wall_s"],
        "loop_rows_per_s": loop["rows"] / loop["total_s"],
        "loop_embed_only_rows_per_s": loop["rows"] / loop["embed_s"],
        "spark_vs_loop": (rows / full["job_s"]) / (loop["rows"] / loop["total_s"]),
        "full_run_s": full["job_s"],
        "full_run_with_startup_s": full["wall_s"],
        "unchanged_rerun_s": rerun["job_s"],
        "unchanged_rerun_with_startup_s": rerun["wall_s"],
        "rerun_speedup": full["job_s"] / rerun["job_s"],
        "rerun_speedup_with_startup": full["wall_s"] / rerun["wall_s"],
        "rerun_rows_embedded": rerun["report"]["rows_embedded"],
        "rerun_ended_at_fingerprint": bool(rerun["report"].get("unchanged_input")),
        "unchanged_rerun_revalidate_s": reval["job_s"],
        "unchanged_rerun_revalidate_with_startup_s": reval["wall_s"],
        "rerun_revalidate_speedup": full["job_s"] / reval["job_s"],
        "rerun_revalidate_rows_embedded": reval["report"]["rows_embedded"],
        "loop": loop,
        "spark_phases_s": {"full": full["report"]["seconds"], "rerun": rerun["report"]["seconds"],
                           "rerun_revalidate": reval["report"]["seconds"]},
        "targets": {"spark_vs_loop": ">= 0.8", "rerun_speedup": ">= 10"},
        "checkpoint": {"path": a.checkpoint or f"untrained {a.config} (made by the benchmark)",
                       "model_version": meta["model_version"], "stage": meta.get("stage")},
        "master": a.master,
        "batch_size": a.batch_size,
        "machine": f"{platform.machine()} {cores} CPU cores, {platform.python_version()}, CPU torch; {a.note}".strip(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/embed_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
