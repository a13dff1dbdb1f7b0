"""Compact vector storage in Redis (float16, int8): encode/decode round trip, Feast framing,
materialization and online lookup with the option set."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import redis
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from features import columns as C
from features import materialize as M
from features import redis_format as F
from features.online import OnlineLookup, decode_stats_rows, hmget_parts
from features.store import pack_command
from features.repo import open_repo_store
from features.synthetic import T0, write_stats, write_tables
from tests.redis_fixture import db_url, delete_project_keys, redis_url, unique_project  # noqa: F401


@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 96)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_float16_round_trip_is_the_float16_rounding(vectors):
    blobs = F.encode_vectors(vectors, "float16")
    assert len(blobs[0]) < 2 * 96 + 8  # half of float32's 4 * 96 bytes, plus a few of framing
    got, present = F.decode_float_lists(blobs + [None, b""])
    assert present.tolist() == [True] * 50 + [False, False]
    np.testing.assert_array_equal(got[:50], vectors.astype(np.float16).astype(np.float32))
    assert not got[50:].any()
    np.testing.assert_array_equal(F.decode_float_lists(blobs, dim=96)[0], got[:50])


def test_int8_round_trip_is_within_half_a_step(vectors):
    got, _ = F.decode_float_lists(F.encode_vectors(vectors, "int8"))
    step = np.abs(vectors).max(axis=1, keepdims=True) / 127
    assert (np.abs(got - vectors) <= step / 2 + 1e-7).all()
    zero, _ = F.decode_float_lists(F.encode_vectors(np.zeros((1, 96), np.float32), "int8"))
    assert not zero.any()


def test_compact_values_are_feast_bytes_values(vectors):
    for dtype, code in (("float16", 2), ("int8", 1)):
        v = ValueProto()
        v.ParseFromString(F.encode_vectors(vectors[:1], dtype)[0])
        assert v.WhichOneof("val") == "bytes_val" and v.bytes_val[0] == code
    assert F.encode_vectors(vectors, "float32") == F.encode_float_lists(vectors)
    with pytest.raises(ValueError, match="vector dtype 'bfloat16'"):
        F.encode_vectors(vectors, "bfloat16")


def test_a_column_of_mixed_layouts_decodes_row_by_row(vectors):
    blobs = [F.encode_vectors(vectors[:1], "float16")[0], F.encode_float_lists(vectors[1:2])[0]]
    got, _ = F.decode_float_lists(blobs, dim=96)
    np.testing.assert_array_equal(got[0], vectors[0].astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(got[1], vectors[1])


@pytest.mark.redis
def test_float16_materialize_and_online_lookup(tmp_path, redis_url):  # noqa: F811
    tables = write_tables(tmp_path / "data", ("v1",), n_products=60, n_queries=4, n_consumers=3, d=32)
    write_stats(tmp_path / "data", tables.product_ids, tables.consumer_ids)
    url = db_url(redis_url)
    projects = {}
    try:
        for dtype in ("float32", "float16"):
            project = projects[dtype] = unique_project()
            store = open_repo_store(tmp_path / "data", tmp_path, project=project, redis_url=url,
                                    batch_engine={"type": M.ENGINE_TYPE, "vector_dtype": dtype}, model_versions=("v1",))
            store.materialize(T0 - timedelta(days=1), T0 + timedelta(days=1))
            req = OnlineLookup(store, "v1").lookup("c1", tables.product_ids[:10], query_id="q2")
            want = tables.products["v1"][:10]
            if dtype == "float16":
                want = want.astype(np.float16).astype(np.float32)
            np.testing.assert_array_equal(req.products, want)
            assert req.product_found.all() and req.query_source == "store"
        r = redis.Redis.from_url(url)
        key = {d: F.entity_keys(C.PRODUCT_ID, ["p0"], p)[0] for d, p in projects.items()}
        field = F.feature_field(C.embedding_view_name(C.PRODUCT_ENTITY, "v1"), "embedding")
        size = {d: r.hstrlen(key[d], field) for d in key}
        assert size["float16"] == len(F.packed_header("float16", 32)) + 2 * 32 and size["float32"] > 4 * 32
    finally:
        for p in projects.values():
            delete_project_keys(url, p)


def test_scalar_fast_paths_match_protobuf():
    strings = ["", "a", "é" * 70, "x" * 300, "z" * 20000]  # 1-, 2- and 3-byte length varints
    assert F.encode_strings(strings) == [ValueProto(string_val=s).SerializeToString() for s in strings]
    assert F.encode_bools(np.array([True, False])) == [ValueProto(bool_val=b).SerializeToString() for b in (True, False)]


def test_stats_rows_decode_like_the_protobuf_parser_value_by_value():
    """decode_stats_rows (numpy, a value type at a time) == parse_scalar on every value, rows with an
    undecodable value or a wrong-type reply NaN throughout and reported."""
    rng = np.random.default_rng(3)
    types = ("INT64", "DOUBLE", "INT64", "FLOAT", "INT32")
    kinds = {"INT64": "int64_val", "DOUBLE": "double_val", "FLOAT": "float_val", "INT32": "int32_val"}
    ints = [0, 1, 127, 128, 300, 2**40, -1, -(2**62), 2**63 - 1]
    rows = []
    for i in range(60):
        row = []
        for t in types:
            v = int(rng.choice(ints)) if t.startswith("INT") else float(rng.standard_normal())
            v = max(min(v, 2**31 - 1), -(2**31)) if t == "INT32" else v
            row.append(ValueProto(**{kinds[t]: v}).SerializeToString())
        rows.append(row)
    rows[3][1] = None  # missing field
    rows[4][0] = b""  # stored null
    rows[5][1] = ValueProto(int64_val=5).SerializeToString()  # another numeric kind: the parser's value
    rows[6][2] = ValueProto(string_val="x").SerializeToString()  # not a number: corrupt
    rows[7][4] = b"\xff\x01"  # not a ValueProto: corrupt
    rows[8] = redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
    rows[9][1] = ValueProto(string_val="1.5").SerializeToString()  # the parser reads it as 1.5
    (vals, bad), (one, none_bad) = decode_stats_rows([(rows, types), (rows[:2], types)])  # two views, one decode per type
    np.testing.assert_array_equal(one, vals[:2])
    assert none_bad == {}
    assert sorted(bad) == [6, 7, 8] and "WRONGTYPE" in bad[8]
    for i, row in enumerate(rows):
        if i in bad:
            assert np.isnan(vals[i]).all()
            continue
        np.testing.assert_array_equal(vals[i], [F.parse_scalar(b) for b in row], err_msg=f"row {i}")
    assert vals[5, 1] == 5.0 and vals[9, 1] == 1.5 and np.isnan(vals[3, 1]) and np.isnan(vals[4, 0])


def test_hmget_commands_are_the_packed_command():
    fields = [F.feature_field("product_stats", f) for f in ("a", "b\r\n", "é")]
    head, tail = hmget_parts(fields)
    for key in F.entity_keys("product_id", ["p1", "", "x" * 300], "proj"):
        assert head + b"$%d\r\n%b\r\n" % (len(key), key) + tail == pack_command(b"HMGET", key, *fields)
