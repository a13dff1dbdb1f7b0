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

One writer per table: a job holds ``writer_lock`` (``OUT/_writer.lock``) from ``recover`` to the
end of its commit, so a second job waits (up to ``lock_wait_s``) or is refused with a message
naming the holder, and never deletes a running job's staging. ``commit`` refuses staging whose
row counts differ from what the run reports, and records a manifest of the committed files
(bytes, rows, SHA-256) in the run report, against which ``verify`` checks the table later.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from dashclip import columns as C
from dashclip.io import write_json_atomic
from spark_jobs.lib import columns as S

log = logging.getLogger(__name__)

RUN_MARKER = "_run_id"  # inside each staged folder: which run wrote it (makes roll-forward idempotent)
_CHUNK = 1 << 20


class TableError(RuntimeError):
    """A table operation that was refused; the message says why in one line."""


class TableLocked(TableError):
    """Another job holds the table's writer lock."""


class CommitRefused(TableError):
    """The staged output does not hold what the run reports; nothing was committed."""


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


# --- one writer at a time -------------------------------------------------------------------------
def _holder(fd: int) -> str:
    try:
        h = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"run {h['run_id']} (pid {h['pid']} on {h['host']}, since {h['since']})"
    except (OSError, ValueError, KeyError):
        return "another job (holder unknown)"


@contextmanager
def writer_lock(out: Path, wait_s: float = 0.0, run_id: str = "") -> Iterator[None]:
    """Hold the table's exclusive writer lock for the block; wait up to ``wait_s`` seconds for it,
    then raise TableLocked naming the table and the holder.

    flock(2) on ``OUT/_writer.lock``: the kernel drops the lock when its holder exits, however it
    exits, so a crashed job never leaves a stale lock. Works between processes of one machine
    and on network file systems that share locks between clients (NFSv4, CephFS, Lustre with
    flock). Not covered: object stores (``local_path`` refuses them) and mounts whose locks are
    local to each client or absent (some FUSE and SMB mounts): two machines could then both
    hold it; run one writer per table there.
    """
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / S.LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TableLocked(f"table {out} is being written by {_holder(fd)}; waited {wait_s:g} s: retry when "
                                      f"it has finished, or wait longer (--lock-wait SECONDS)") from None
                time.sleep(min(0.5, max(0.01, deadline - time.monotonic())))
        me = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


# --- what was committed ---------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith((".", "_")))


def manifest(root: Path, rel_dirs: list[str]) -> dict:
    """{rel dir: {file: {bytes, rows, sha256}}} of the parquet files under ``root``/rel; rows from
    the files' footers."""
    out = {}
    for rel in rel_dirs:
        files = {}
        for p in _data_files(root / rel):
            files[str(p.relative_to(root / rel))] = {"bytes": p.stat().st_size, "rows": pq.ParquetFile(p).metadata.num_rows,
                                                     "sha256": _sha256(p)}
        out[rel] = files
    return out


def rows(files: dict) -> int:
    return sum(f["rows"] for f in files.values())


def check_staged(out: Path, run_id: str, expected: dict[str, int]) -> dict:
    """The manifest of a run's staging; CommitRefused when a folder's rows differ from ``expected``."""
    staged = manifest(staging(out, run_id), list(expected))
    for rel, n in expected.items():
        got = rows(staged[rel])
        if got != n:
            raise CommitRefused(f"commit refused: staged {rel} of table {out} holds {got} rows but run {run_id} "
                                f"reports {n}; the committed table is unchanged (the next run removes this staging)")
    return staged


def verify(out: Path, recorded: dict) -> str | None:
    """What differs between the committed folders and the manifest ``recorded`` at their commit
    (None when nothing does): files missing, added, or with other bytes."""
    for rel, files in recorded.items():
        now = {str(p.relative_to(out / rel)) for p in _data_files(out / rel)}
        missing, added = sorted(set(files) - now), sorted(now - set(files))
        if missing or added:
            return f"{rel}: " + "; ".join(([f"missing {missing[:3]}"] if missing else []) +
                                          ([f"unexpected {added[:3]}"] if added else []))
        for name, f in files.items():
            p = out / rel / name
            if p.stat().st_size != f["bytes"] or _sha256(p) != f["sha256"]:
                return f"{rel}/{name} changed since it was committed"
    return None


# --- a table partition written in one process (the jobs' in-process twins) ------------------------
def commit_partition(out: Path, run_id: str, model_version: str, rows: pa.Table, report: dict) -> dict:
    """Stage ``rows`` as the whole partition of ``model_version``, check and commit it with its
    manifest, as the Spark jobs do (the caller holds ``writer_lock``); returns the saved report."""
    rel = partition(model_version)
    folder = staging(out, run_id) / rel
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, folder / "part-00000.parquet")
    report = {**report, "run_id": run_id, "model_version": model_version, "rows_out": rows.num_rows}
    report["table"] = check_staged(out, run_id, {rel: rows.num_rows})
    commit(out, run_id, [rel], report)
    return report
