"""Checkpoints: a damaged or inconsistent checkpoint is refused with one error naming the file,
and weights or config changed in place never load under the old model version."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from dashclip.model import CheckpointError, DashCLIP
from dashclip.tiny import make_tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "tiny")


@pytest.fixture()
def ck(ckpt, tmp_path) -> Path:
    """A private copy the test may damage."""
    return Path(shutil.copytree(ckpt, tmp_path / "ck"))


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    path.write_text(json.dumps(data, indent=2))


def test_meta_records_the_full_digest_and_a_clean_checkpoint_loads(ckpt):
    meta = json.loads((ckpt / "meta.json").read_text())
    full = hashlib.sha256((ckpt / "model.safetensors").read_bytes() + (ckpt / "config.json").read_bytes()).hexdigest()
    assert meta["content_sha256"] == full
    assert meta["model_version"] == f"dashclip-tiny-tiny-{full[:10]}"
    assert DashCLIP.from_pretrained(ckpt).model_version == meta["model_version"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_unreadable_weights_name_the_file(ck, damage):
    w = ck / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a safetensors file at all" * 3,
                   "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        DashCLIP.from_pretrained(ck)


def test_weights_changed_in_place_do_not_load_under_the_old_version(ck):
    w = ck / "model.safetensors"
    state = load_file(str(w))
    name = next(k for k in state if k.startswith("image_proj"))
    state[name] = state[name] + 0.01  # same names and shapes: a well-formed file with other weights
    save_file(state, str(w))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*do not match the content_sha256"):
        DashCLIP.from_pretrained(ck)


def test_one_flipped_byte_in_the_tensor_data_is_caught(ck):
    w = ck / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF  # inside the last tensor: the header still parses
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="content_sha256"):
        DashCLIP.from_pretrained(ck)


def test_config_that_does_not_fit_the_weights_names_the_tensor(ck):
    _edit_json(ck / "config.json", embed_dim=24)
    with pytest.raises(CheckpointError, match=r"config\.json.*model\.safetensors.*image_proj\.weight.*\(16, 32\).*\(24, 32\)"):
        DashCLIP.from_pretrained(ck)


def test_config_edited_in_place_with_the_same_shapes_is_refused(ck):
    _edit_json(ck / "config.json", text_channel=0.5)  # changes the served embeddings, not the shapes
    with pytest.raises(CheckpointError, match="content_sha256"):
        DashCLIP.from_pretrained(ck)


@pytest.mark.parametrize("damage,match", [
    ("no_version", r"meta\.json: no model_version"),
    ("not_json", r"meta\.json: not valid JSON"),
    ("missing_meta", r"meta\.json: missing"),
    ("missing_config", r"config\.json: missing"),
    ("bad_config", r"config\.json: not a valid DashCLIP config.*embed_dim"),
    ("missing_weights", r"model\.safetensors: missing"),
])
def test_broken_metadata_gives_one_clear_error(ck, damage, match):
    if damage == "no_version":
        _edit_json(ck / "meta.json", model_version=None)
    elif damage == "not_json":
        (ck / "meta.json").write_text('{"model_version": ')
    elif damage == "missing_meta":
        (ck / "meta.json").unlink()
    elif damage == "missing_config":
        (ck / "config.json").unlink()
    elif damage == "bad_config":
        _edit_json(ck / "config.json", embed_dim="wide")
    else:
        (ck / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=match) as e:
        DashCLIP.from_pretrained(ck)
    assert str(ck) in str(e.value) and "\n" not in str(e.value)


def test_a_checkpoint_saved_without_the_full_digest_is_checked_against_its_version(ck):
    _edit_json(ck / "meta.json", content_sha256=None)
    assert DashCLIP.from_pretrained(ck).model_version.startswith("dashclip-tiny-tiny-")
    state = load_file(str(ck / "model.safetensors"))
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in state.items()}, str(ck / "model.safetensors"))
    with pytest.raises(CheckpointError, match="model_version"):
        DashCLIP.from_pretrained(ck)


def test_save_load_save_keeps_the_version(ckpt, tmp_path):
    m = DashCLIP.from_pretrained(ckpt)
    assert m.save_pretrained(tmp_path / "again", stage="tiny") == m.model_version
    torch.testing.assert_close(DashCLIP.from_pretrained(tmp_path / "again").image_proj.weight, m.image_proj.weight)


def test_embed_cli_prints_one_line_and_exits_2(ck, tmp_path):
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[:100])
    q = tmp_path / "q.csv"
    q.write_text("query_id,query\nq1,red shirt\n")
    r = subprocess.run([sys.executable, "-m", "dashclip.embed", "queries", "--checkpoint", str(ck), "--queries", str(q),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "model.safetensors: not a readable safetensors file" in lines[0]
    assert not (tmp_path / "o" / "query_embeddings.parquet").exists()


def test_spark_driver_refuses_a_tampered_checkpoint_before_any_task(ck):
    pytest.importorskip("pyspark")
    from spark_jobs.lib.products import model_version_of

    assert model_version_of(str(ck)) == json.loads((ck / "meta.json").read_text())["model_version"]
    _edit_json(ck / "config.json", text_channel=0.5)
    with pytest.raises(CheckpointError, match="content_sha256"):
        model_version_of(str(ck))
    _edit_json(ck / "meta.json", model_version=None)
    with pytest.raises(CheckpointError, match=r"meta\.json: no model_version"):
        model_version_of(str(ck))
