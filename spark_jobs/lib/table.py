"""Atomic, recoverable commits of parquet tables partitioned by model version (local file system).

Layout of a table folder ``OUT`` (names starting with ``_`` are invisible to parquet readers):

    OUT/model_version=V/part-*.parquet       committed rows of one model version
    OUT/_rejects/model_version=V/...         rows the run that wrote V rejected
    OUT/_staging/<run_id>/<same sub-folders> a run's complete output, before commit
    OUT/_commit.json                         journal: exists only while a commit is applied
    OUT/_runs/<run_id>.json                  what each committed run did

Protocol. A job writes everything under staging, then ``commit`` writes the journal (the decision
point) and swaps each staged folder into place: ``renameat2(RENAME_EXCHANGE)`` where the kernel has
it, so a reader sees the old or the new partition and never a missing one; two renames elsewhere.
Every job starts with ``recover``: a journal means a commit was decided, so it is rolled forward;
staging without a journal is an abandoned run and is deleted. A crash at any point leaves the
previous table or the new one, never a mix, and a rerun never duplicates rows.
One writer per table at a time (a second concurrent job would delete the first one's staging).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from dashclip import columns as C
from dashclip.io import write_json_atomic
from spark_jobs.lib import columns as S

log = logging.getLogger(__name__)

RUN_MARKER = "_run_id"  # inside each staged folder: which run wrote it (makes roll-forward idempotent)


def local_path(uri: str | os.PathLike) -> Path:
    """A local path from ``/x``, ``x`` or ``file:///x``; other schemes are refused with a clear error."""
    s = str(uri)
    parsed = urlparse(s)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # len 1: a Windows drive letter
        return Path(parsed.path if parsed.scheme == "file" else s).resolve()
    raise ValueError(f"output {s!r}: only local (or mounted) paths are supported for tables, got scheme {parsed.scheme!r}")


def uri(path: Path) -> str:
    """``file://`` URI for Spark (a bare path would mean the cluster's default FS; ``Path.as_uri``
    percent-encodes the ``=`` of partition folders, which Hadoop would take literally)."""
    return "file://" + str(path)


def partition(model_version: str) -> str:
    return f"{C.MODEL_VERSION}={model_version}"


def rejects_partition(model_version: str) -> str:
    return f"{S.REJECTS_DIR}/{partition(model_version)}"


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def staging(out: Path, run_id: str) -> Path:
    return out / S.STAGING_DIR / run_id


def has_rows(folder: Path) -> bool:
    """True when a folder holds at least one parquet data file."""
    return folder.is_dir() and any(p.suffix == ".parquet" for p in folder.rglob("*.parquet"))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _marker(folder: Path) -> str | None:
    try:
        return (folder / RUN_MARKER).read_text().strip()
    except OSError:
        return None


def _apply(out: Path, run_id: str, rel_dirs: list[str], report: dict | None) -> None:
    """Swap the staged folders into place; safe to call again after a crash at any line."""
    stage, trash = staging(out, run_id), out / S.TRASH_DIR / run_id
    for rel in rel_dirs:
        src, dst, old = stage / rel, out / rel, trash / rel
        old.parent.mkdir(parents=True, exist_ok=True)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if _marker(dst) == run_id:  # already in place: only the old copy may be left in staging
            if src.exists():
                os.rename(src, old)
            continue
        if not dst.exists():
            os.rename(src, dst)
        elif _exchange(src, dst):
            os.rename(src, old)  # src now holds the previous version
        else:
            os.rename(dst, old)
            os.rename(src, dst)
    if report is not None:
        save_report(out, report)
    (out / S.JOURNAL).unlink(missing_ok=True)
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)
    for parent in (trash.parent, stage.parent):
        _rmdir_if_empty(parent)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (another run's leftovers are recover's business) or already gone


def save_report(out: Path, report: dict) -> None:
    write_json_atomic(report, out / S.RUNS_DIR / f"{report['run_id']}.json")


def load_report(out: Path, run_id: str) -> dict | None:
    try:
        return json.loads((out / S.RUNS_DIR / f"{run_id}.json").read_text())
    except (OSError, ValueError):
        return None


def committed_run(out: Path, model_version: str) -> str | None:
    """The run that wrote the committed partition of ``model_version`` (None when there is none)."""
    return _marker(out / partition(model_version))


def commit(out: Path, run_id: str, rel_dirs: list[str], report: dict | None = None) -> None:
    """Make the staged folders of ``run_id`` the table's current ones (see the module docstring)."""
    stage = staging(out, run_id)
    for rel in rel_dirs:
        if not (stage / rel).is_dir():
            raise FileNotFoundError(f"commit {run_id}: staged folder {stage / rel} is missing")
        (stage / rel / RUN_MARKER).write_text(run_id)
    write_json_atomic({"run_id": run_id, "dirs": rel_dirs, "report": report}, out / S.JOURNAL)
    _apply(out, run_id, rel_dirs, report)


def recover(out: Path) -> str | None:
    """Finish a decided commit or drop an abandoned staging; returns what was done, if anything."""
    done = None
    journal = out / S.JOURNAL
    if journal.exists():
        j = json.loads(journal.read_text())
        _apply(out, j["run_id"], j["dirs"], j.get("report"))
        done = f"rolled forward commit {j['run_id']}"
    abandoned = sorted(p.name for p in (out / S.STAGING_DIR).glob("*")) if (out / S.STAGING_DIR).exists() else []
    for name in abandoned:
        shutil.rmtree(out / S.STAGING_DIR / name, ignore_errors=True)
    shutil.rmtree(out / S.TRASH_DIR, ignore_errors=True)
    if abandoned:
        done = (done + "; " if done else "") + f"removed abandoned staging {abandoned}"
    if done:
        log.warning("table %s: %s", out, done)
    return done
