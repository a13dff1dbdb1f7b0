"""The installed package: its data files, file modes under the user's umask, and a wheel that runs
ingest -> embed -> evaluate in a fresh virtualenv with no source tree nearby."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashclip import columns as C
from dashclip.io import current_umask, match_umask, write_json_atomic, write_parquet_atomic
from dashclip.resources import HANDWRITTEN_QUERIES, resource_path
from features import columns as FC
from features.repo import TEMPLATE_FILES, init_repo, template_dir
from tests.test_stage1 import small_catalog

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dashclip", "features", "ranking", "spark_jobs")


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_written_files_get_the_mode_a_plain_open_gives(tmp_path, mask):
    from dashclip.tiny import make_tiny_checkpoint

    old = os.umask(mask)
    try:
        assert current_umask() == mask
        write_parquet_atomic(pd.DataFrame({"a": [1, 2]}), tmp_path / "t.parquet")
        write_json_atomic({"a": 1}, tmp_path / "t.json")
        (tmp_path / "plain.txt").write_text("x")
        ck = make_tiny_checkpoint(tmp_path / "ck")
    finally:
        os.umask(old)
    want = 0o666 & ~mask
    assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == want
    for f in [tmp_path / "t.parquet", tmp_path / "t.json", *sorted(ck.rglob("*"))]:
        if f.is_file():
            assert f.stat().st_mode & 0o777 == want, f"{f}: {oct(f.stat().st_mode & 0o777)} != {oct(want)}"
    assert pd.read_parquet(tmp_path / "t.parquet")["a"].tolist() == [1, 2]


def test_match_umask_widens_a_private_temp_file(tmp_path):
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=tmp_path)
    os.close(fd)
    assert os.stat(tmp).st_mode & 0o777 == 0o600
    old = os.umask(0o022)
    try:
        match_umask(tmp)
    finally:
        os.umask(old)
    assert os.stat(tmp).st_mode & 0o777 == 0o644


def test_packaged_queries_are_found_through_importlib_resources():
    from dashclip.embed import read_queries

    path = resource_path(HANDWRITTEN_QUERIES)
    assert path.is_file() and path.parent.name == "resources"
    queries, rejects = read_queries(path)
    assert len(queries) == len(pd.read_csv(path)) >= 100 and rejects.empty
    with pytest.raises(FileNotFoundError, match="handwritten_queries.csv"):
        resource_path("nope.csv")  # the error names what there is
    out = subprocess.run([sys.executable, "-m", "dashclip.resources", HANDWRITTEN_QUERIES],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and Path(out.stdout.strip()) == path


def test_feature_repo_init_copies_the_template_and_keeps_local_edits(tmp_path):
    repo = tmp_path / "fr"
    written = init_repo(repo)
    assert sorted(p.name for p in written) == sorted(TEMPLATE_FILES)
    for name in TEMPLATE_FILES:
        assert (repo / name).read_bytes() == (template_dir() / name).read_bytes()
    assert init_repo(repo) == []  # already there: nothing rewritten
    edited = (repo / "feature_store.yaml").read_text() + "# local edit\n"
    (repo / "feature_store.yaml").write_text(edited)
    (repo / "repo.py").unlink()
    with pytest.raises(FileExistsError, match="feature_store.yaml differs"):
        init_repo(repo)
    assert (repo / "feature_store.yaml").read_text() == edited and not (repo / "repo.py").exists()  # nothing written
    cli = subprocess.run([sys.executable, "-m", "features.repo", "init", str(repo)], capture_output=True, text=True,
                         timeout=60)
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1 and "--force" in cli.stderr
    assert [p.name for p in init_repo(repo, force=True)] == ["feature_store.yaml", "repo.py"]
    assert (repo / "feature_store.yaml").read_bytes() == (template_dir() / "feature_store.yaml").read_bytes()


def test_open_store_on_a_missing_repo_says_how_to_make_one(tmp_path):
    from features.store import open_store

    with pytest.raises(FileNotFoundError, match="python -m features.repo init"):
        open_store(tmp_path / "nowhere")


def test_default_catalog_comes_from_the_environment_or_the_working_directory(monkeypatch, tmp_path):
    from dashclip.stage1 import default_catalog

    monkeypatch.delenv("DASHCLIP_CATALOG", raising=False)
    monkeypatch.delenv("DASHCLIP_DATA", raising=False)
    assert default_catalog() == str(Path("..") / "shared" / "data" / "catalog.csv")
    monkeypatch.setenv("DASHCLIP_DATA", str(tmp_path))
    assert default_catalog() == str(tmp_path / "catalog.csv")
    monkeypatch.setenv("DASHCLIP_CATALOG", "/x/c.csv")
    assert default_catalog() == "/x/c.csv"
    # a catalog that is not there: one line and exit code 2, not a traceback
    res = subprocess.run([sys.executable, "-m", "dashclip.train", "stage1", "--out", str(tmp_path / "ck"),
                          "--catalog", str(tmp_path / "missing.csv")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and res.stderr.strip() == f"error: catalog not found: {tmp_path / 'missing.csv'}"


# --- the wheel, installed in a clean virtualenv ------------------------------------------------------

def _build_wheel(tmp: Path) -> Path:
    """The wheel of the current sources, built from a copy (a build writes build/ and *.egg-info)."""
    pytest.importorskip("setuptools", minversion="70.1", reason="building the wheel needs setuptools>=70.1 ([dev])")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("dashclip_stack-*.whl")
    return wheel


def _venv_with_wheel(tmp: Path, wheel: Path) -> tuple[Path, Path]:
    """A new virtualenv holding only the wheel; this environment's third-party packages are made
    visible by a plain .pth line (a directory added that way has its own .pth files ignored, so the
    editable install of this project that lives there stays inactive)."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    shared = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_shared_third_party.pth").write_text("".join(f"{p}\n" for p in shared))
    return py, site


def _clean_env() -> dict:
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "DASHCLIP_CATALOG", "DASHCLIP_DATA", "DASHCLIP_FEATURE_DATA")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONNOUSERSITE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false")
    return env


@pytest.mark.slow
def test_wheel_runs_ingest_embed_evaluate_in_a_clean_venv_outside_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path)
    py, site = _venv_with_wheel(tmp_path, wheel)
    work = tmp_path / "work"
    cat = small_catalog(work / "cat", n=24)
    assert REPO not in work.parents and not (work / "dashclip").exists()
    env = _clean_env()

    def run(*args: str, exe: Path = py, **more_env: str) -> str:
        res = subprocess.run([str(exe), *args], cwd=work, env={**env, **more_env}, capture_output=True, text=True,
                             timeout=600, umask=0o022)
        assert res.returncode == 0, f"{' '.join(args)}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        return res.stdout

    # every package imports from the new venv's site-packages, not from the checkout
    where = json.loads(run("-c", "import json, dashclip, features, ranking, spark_jobs; "
                                 "print(json.dumps({m.__name__: m.__file__ for m in (dashclip, features, ranking, spark_jobs)}))"))
    for pkg in PACKAGES:
        assert Path(where[pkg]).is_relative_to(site), (pkg, where[pkg])
    queries = Path(run("-m", "dashclip.resources", HANDWRITTEN_QUERIES).strip())
    assert queries.is_relative_to(site) and queries.is_file()

    run("ingest", "--catalog", str(cat), "--out", "ingest", exe=py.parent / "dashclip")  # the console script
    run("-m", "dashclip.tiny", "--out", "ck")
    run("-m", "dashclip.embed", "products", "--checkpoint", "ck", "--catalog", str(cat), "--out", "emb")
    run("-m", "dashclip.embed", "queries", "--checkpoint", "ck", "--queries", str(queries), "--out", "emb")
    run("-m", "dashclip.evaluate", "products", "--checkpoint", "ck", "--catalog", "ingest/products.parquet",
        "--train-catalog", "ingest/products.parquet", "--out", "eval")
    run("-m", "dashclip.evaluate", "judgments", "--catalog", "ingest/products.parquet", "--split", "all",
        "--out", "eval/judged")
    run("-m", "dashclip.evaluate", "queries", "--checkpoint", "ck", "--catalog", "eval/judged/products.parquet",
        "--judgments", "eval/judged/judgments.csv", "--out", "eval")
    run("-m", "features.repo", "init", "feature_repo")
    service = FC.ranker_service_name("v1")  # the template's declarations import from the installed package
    run("-c", f"import runpy; d = runpy.run_path('feature_repo/repo.py'); assert {service!r} in d, sorted(d)",
        **{FC.ENV_MODEL_VERSIONS: "v1"})

    ingested = pd.read_parquet(work / "ingest" / "products.parquet")
    assert len(ingested) == 24 and ingested[C.HAS_IMAGE].all()
    prod = pd.read_parquet(work / "emb" / "product_embeddings.parquet")
    assert sorted(prod[C.PRODUCT_ID]) == sorted(ingested[C.PRODUCT_ID])
    assert len(pd.read_parquet(work / "emb" / "query_embeddings.parquet")) == len(pd.read_csv(queries))
    assert json.loads((work / "eval" / "products.json").read_text())["test_products"] == 24
    assert json.loads((work / "eval" / "queries.json").read_text())["queries"] > 0
    for name in TEMPLATE_FILES:
        assert (work / "feature_repo" / name).read_bytes() == (template_dir() / name).read_bytes()

    # the installed code computes what the checkout computes
    from dashclip.embed import main as embed_main

    assert embed_main(["products", "--checkpoint", str(work / "ck"), "--catalog", str(cat),
                       "--out", str(tmp_path / "here")]) == 0
    here = pd.read_parquet(tmp_path / "here" / "product_embeddings.parquet").set_index(C.PRODUCT_ID).loc[prod[C.PRODUCT_ID]]
    np.testing.assert_allclose(np.stack(prod[C.EMBEDDING]), np.stack(here[C.EMBEDDING]), atol=1e-5)

    # written with the user's umask (022): readable by group and others, like a plain open()
    outputs = [f for d in ("ingest", "ck", "emb", "eval", "feature_repo") for f in (work / d).rglob("*") if f.is_file()]
    assert len(outputs) > 15
    assert {str(f.relative_to(work)): oct(f.stat().st_mode & 0o777) for f in outputs
            if f.stat().st_mode & 0o777 != 0o644} == {}
