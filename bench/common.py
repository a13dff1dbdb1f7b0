"""Shared bits of the feature-store benchmarks: a scratch Feast store on $REDIS_URL, machine notes."""

from __future__ import annotations

import json
import os
import platform
import uuid
from datetime import timedelta
from pathlib import Path

import redis
from feast import FeatureStore

from bench.machine import cpu_model
from features.repo import open_repo_store

RESULTS = Path(__file__).resolve().parent / "results"
BENCH_DB = 14  # a dedicated DB index; keys are also scoped by a per-run project name
DATA_CSV = Path(os.environ.get("DASHCLIP_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "catalog.csv"


def redis_url() -> str:
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    base = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{base}/{BENCH_DB}"


def scratch_store(root: Path, data_dir: Path, engine: str) -> FeatureStore:
    """The feature repo's store over `data_dir` (model version v1) in a per-run project on the bench DB."""
    return open_repo_store(data_dir, root, project=f"bench_{uuid.uuid4().hex[:8]}", redis_url=redis_url(),
                           batch_engine=engine, model_versions=("v1",))


def drop_project(project: str) -> None:
    r = redis.Redis.from_url(redis_url())
    keys = list(r.scan_iter(match=b"*" + project.encode(), count=5000))
    for i in range(0, len(keys), 5000):
        r.delete(*keys[i : i + 5000])


def machine(note: str = "") -> dict:
    return {
        "cpu": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "redis": redis.Redis.from_url(redis_url()).info("server")["redis_version"] + " on loopback",
        "note": note or os.environ.get("BENCH_NOTE", ""),
    }


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return out


WINDOW = timedelta(days=1)
