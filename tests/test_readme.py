"""The README's Python quickstart runs as written, on a tiny checkpoint in place of a trained one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dashclip.tiny import make_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _quickstart() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one Python quickstart"
    return blocks[0]


def test_readme_quickstart_runs(tmp_path):
    code = _quickstart()
    assert 'checkpoint = "runs/pipeline/stage2"' in code
    ckpt = make_tiny_checkpoint(tmp_path / "ckpt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "shoes.jpg")
    code = code.replace('"runs/pipeline/stage2"', repr(str(ckpt)))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                              "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                              "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-3000:]
    printed = res.stdout.strip()
    assert re.fullmatch(r"\['p[123]' 'p[123]'\]", printed), printed
