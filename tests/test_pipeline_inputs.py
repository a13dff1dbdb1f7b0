"""run_pipeline.sh checks a user's inputs before anything else and stops naming file, row and column."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(), reason="needs the project's .venv")
def test_the_pipeline_stops_on_bad_inputs_before_training(tmp_path):
    pd.DataFrame({"product_id": [f"e{i}" for i in range(5)], "title": [f"usb charger {i}" for i in range(5)]}).to_csv(
        tmp_path / "cat.csv", index=False)
    pd.DataFrame({"query_id": ["q1", "q1"], "query": ["usb charger"] * 2, "product_id": ["e1", "x9"],
                  "label": [3, 2]}).to_csv(tmp_path / "judg.csv", index=False)
    logs = tmp_path / "logs"
    logs.mkdir()
    pd.DataFrame({"request_id": ["r1"], "event_timestamp": ["2025-03-01T10:00:00Z"], "consumer_id": ["c1"],
                  "query_id": ["q1"], "product_id": ["e1"]}).to_csv(logs / "impressions.csv", index=False)
    env = {**os.environ, "CATALOG": str(tmp_path / "cat.csv"), "JUDGMENTS": str(tmp_path / "judg.csv"),
           "LOGS": str(logs), "RUN_DIR": str(tmp_path / "run")}
    p = subprocess.run(["bash", str(REPO / "scripts" / "run_pipeline.sh")], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    assert f"{tmp_path / 'judg.csv'}, row 1, column 'product_id', value 'x9': product_id not in the catalog" in p.stderr
    assert f"{logs / 'impressions.csv'}, column 'slot': missing required column" in p.stderr
    assert "nothing was trained" in p.stderr
    assert not (tmp_path / "run").exists()  # stopped before any step wrote anything
