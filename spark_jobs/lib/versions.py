"""The live model versions of a feature data folder: `<data>/model_versions.json`.

    {"model_versions": ["2025-01-v1", "2025-02-v2"]}

The job that commits a model version's product embedding table (`spark_jobs/embed_catalog.py`)
adds the version here (`register_model_version`); the feature repo's `repo.py` declares one set of
embedding views and one ranker feature service per listed version (`live_model_versions`), so
`feast apply` picks up a new version without scanning folders. The file sits beside the tables it
describes, so a data folder carries its own list wherever it is copied. `$DASHCLIP_MODEL_VERSIONS`
(a comma list) overrides the file, e.g. to declare only the version being rolled out.

No Feast import here: the Spark driver calls it.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

from spark_jobs.lib import columns as C

MODEL_VERSIONS_FILE = "model_versions.json"
KEY = "model_versions"


def versions_file(data_dir: str | Path) -> Path:
    return Path(data_dir) / MODEL_VERSIONS_FILE


def read_model_versions(data_dir: str | Path) -> tuple[str, ...]:
    """The versions the file lists, in registration order; () when there is no file."""
    path = versions_file(data_dir)
    if not path.is_file():
        return ()
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from e
    versions = doc.get(KEY) if isinstance(doc, dict) else None
    if not isinstance(versions, list) or not all(isinstance(v, str) and v.strip() for v in versions):
        raise ValueError(f"{path}: field {KEY!r} must be a list of non-empty strings, got {versions!r}")
    for v in versions:
        C.version_slug(v)  # raises, naming the version, when it cannot name a view
    return tuple(versions)


def live_model_versions(data_dir: str | Path) -> tuple[str, ...]:
    """`$DASHCLIP_MODEL_VERSIONS` when set, else the data folder's file; raises when neither lists one."""
    env = os.environ.get(C.ENV_MODEL_VERSIONS, "").strip()
    if env:
        return tuple(v.strip() for v in env.split(",") if v.strip())
    versions = read_model_versions(data_dir)
    if not versions:
        raise FileNotFoundError(
            f"{versions_file(data_dir)}: no model version registered (the product embedding job adds its version "
            f"when it commits: spark_jobs.lib.versions.register_model_version); or set ${C.ENV_MODEL_VERSIONS}=v1,v2")
    return versions


@contextmanager
def _locked(data_dir: Path):
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / f".{MODEL_VERSIONS_FILE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two jobs committing at once both land in the file
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def register_model_version(data_dir: str | Path, model_version: str) -> tuple[str, ...]:
    """Add a version to the data folder's list (idempotent, atomic); returns the list."""
    C.version_slug(model_version)
    data_dir = Path(data_dir)
    with _locked(data_dir):
        versions = read_model_versions(data_dir)
        if model_version in versions:
            return versions
        versions = (*versions, model_version)
        path = versions_file(data_dir)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({KEY: list(versions)}, indent=2) + "\n")
        os.replace(tmp, path)
    return versions
