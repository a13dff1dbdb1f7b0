"""The index batch step: built from the committed table, keyed by model version, published atomically."""

from __future__ import annotations

import numpy as np
import pytest

from features import build_index as B
from features import columns as C
from features.retriever import FaissRetriever, RetrieverConfig, neighbour_recall_at_k
from features.synthetic import T0, product_table, unit_vectors, write_partition
from spark_jobs.lib.table import RUN_MARKER, partition


def _clustered(rng, n, d=32, k=40):
    centres = unit_vectors(rng, k, d)
    x = centres[rng.integers(0, k, n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture()
def table(tmp_path):
    rng = np.random.default_rng(0)
    t = tmp_path / C.PRODUCT_EMBEDDINGS_TABLE
    for v, n in (("v1", 2000), ("v2", 300)):
        write_partition(tmp_path, C.PRODUCT_EMBEDDINGS_TABLE, v, product_table([f"{v}-p{i}" for i in range(n)], _clustered(rng, n), T0))
        (t / partition(v) / RUN_MARKER).write_text(f"run-{v}-a")
    return t


def test_built_index_matches_exact_search(table):
    build, report = B.build_index(table, "v1", RetrieverConfig(kind="hnsw"))
    assert report["count"] == 2000 and report["source_run"] == "run-v1-a" and report["index_bytes"] > 0
    got = B.load_index(table, "v1")
    exact = FaissRetriever.from_table(table, "v1", RetrieverConfig(kind="flat"))
    q = _clustered(np.random.default_rng(1), 200)
    assert neighbour_recall_at_k(got.search_indices(q, 10), exact.search_indices(q, 10), 10) >= 0.95
    assert set(got.ids.tolist()) == set(exact.ids.tolist())


def test_index_is_keyed_by_model_version(table):
    B.build_index(table, "v1", RetrieverConfig(kind="flat"))
    assert B.load_index(table, "v2") is None  # v1's index is never served for v2
    B.build_index(table, "v2", RetrieverConfig(kind="flat"))
    v2 = B.load_index(table, "v2")
    assert v2.config.model_version == "v2" and all(i.startswith("v2-") for i in v2.ids)
    assert B.load_index(table, "v1").config.count == 2000
    # the table's reader does not see the index folder
    assert len(FaissRetriever.from_table(table, "v2", RetrieverConfig(kind="flat")).ids) == 300


def test_an_index_of_an_older_commit_is_refused(table):
    B.build_index(table, "v1", RetrieverConfig(kind="flat"))
    (table / partition("v1") / RUN_MARKER).write_text("run-v1-b")  # the table was recommitted since
    with pytest.raises(B.StaleIndex, match="built from run 'run-v1-a' but the committed run is 'run-v1-b'"):
        B.load_index(table, "v1")
    B.build_index(table, "v1", RetrieverConfig(kind="flat"))
    assert B.load_index(table, "v1").config.source_run == "run-v1-b"


def test_publish_is_atomic_and_prunes_old_builds(table, monkeypatch):
    first, _ = B.build_index(table, "v1", RetrieverConfig(kind="flat"))
    second, _ = B.build_index(table, "v1", RetrieverConfig(kind="flat"))
    root = B.index_root(table, "v1")
    assert (root / B.CURRENT).read_text().strip() == second.name

    def broken_save(self, out):  # a crash half-way through writing the new build
        out.mkdir(parents=True)
        (out / "index.faiss").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(FaissRetriever, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        B.build_index(table, "v1", RetrieverConfig(kind="flat"))
    monkeypatch.undo()
    assert (root / B.CURRENT).read_text().strip() == second.name  # still the complete build
    assert B.load_index(table, "v1").config.count == 2000
    third, _ = B.build_index(table, "v1", RetrieverConfig(kind="flat"))
    kept = {p.name for p in root.iterdir() if p.is_dir()}
    assert kept == {second.name, third.name}  # the previous build stays for readers mid-switch; older ones go
    assert not any(p.name.endswith(".tmp") for p in root.iterdir())


def test_cli_builds_and_reports(table, capsys):
    assert B.main(["--table", str(table), "--model-version", "v2", "--kind", "ivf", "--nlist", "4", "--nprobe", "4"]) == 0
    out = capsys.readouterr().out
    assert '"model_version": "v2"' in out and '"kind": "ivf"' in out
    assert B.load_index(table, "v2").config.ivf_nlist == 4


def test_a_server_maps_the_published_index_and_builds_one_without_it(table, caplog):
    built = B.open_retriever(table, "v2", RetrieverConfig(kind="flat"))  # nothing published: built in memory
    assert built.config.kind == "flat" and built.config.count == 300 and "no published retrieval index" in caplog.text
    B.build_index(table, "v2", RetrieverConfig(kind="hnsw"))
    mapped = B.open_retriever(table, "v2", RetrieverConfig(kind="flat"))
    assert mapped.config.kind == "hnsw" and mapped.config.source_run == "run-v2-a"
    (table / partition("v2") / RUN_MARKER).write_text("run-v2-b")  # recommitted: the published index is stale
    assert B.open_retriever(table, "v2", RetrieverConfig(kind="flat")).config.kind == "flat"
