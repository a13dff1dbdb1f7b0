"""Small I/O helpers: atomic writes so a crash never leaves a half-written artifact."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def current_umask() -> int:
    """The process umask, read without changing it where the OS shows it (Linux /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it (briefly)
    os.umask(mask)
    return mask


def match_umask(path: str | os.PathLike) -> None:
    """Give a file the mode a plain open() would have (0o666 & ~umask): temporary files
    (mkstemp, safetensors' writer) are created 0o600, which executors and service users cannot read."""
    os.chmod(path, 0o666 & ~current_umask())


def write_parquet_atomic(data: pd.DataFrame | pa.Table, path: str | os.PathLike) -> None:
    """Write a frame (or an arrow table with its own schema) to a temporary file beside
    ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if isinstance(data, pa.Table):
            pq.write_table(data, tmp)
        else:
            data.to_parquet(tmp, index=False)
        match_umask(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(obj: object, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)
