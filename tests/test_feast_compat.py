"""The Feast internals behind `features.feast_compat`: the pinned version, and that each one still
exists and behaves as the fast Redis paths assume. A Feast upgrade fails here first, by name."""

from __future__ import annotations

import inspect
import re
import struct
from datetime import timedelta
from pathlib import Path

import mmh3
import numpy as np
import pyarrow as pa
import pytest
from feast import Entity, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Float64, String

from features import feast_compat as FC
from features import redis_format as F

ROOT = Path(__file__).resolve().parents[1]


def test_installed_feast_is_the_pinned_version():
    pins = re.findall(r"^feast==(\S+)$", (ROOT / "constraints.txt").read_text(), flags=re.M)
    assert pins == [FC.PINNED_FEAST], f"constraints.txt pins feast {pins}, features/feast_compat.py {FC.PINNED_FEAST}"
    low, high = re.search(r'"feast\[redis\]>=([\d.]+),<([\d.]+)"', (ROOT / "pyproject.toml").read_text()).groups()
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(FC.PINNED_FEAST) < as_tuple(high), f"pyproject allows feast >={low},<{high}"
    assert FC.installed_feast() == FC.PINNED_FEAST, (
        f"feast {FC.installed_feast()} is installed, features/feast_compat.py was checked against {FC.PINNED_FEAST}: "
        "re-check every name in feast_compat (this module's tests), then bump PINNED_FEAST and constraints.txt")


def test_field_hash_is_murmur3_little_endian():
    for view, feature in (("product_stats", "product_ctr"), ("v", "é"), ("", "")):
        name = f"{view}:{feature}"
        assert FC.field_hash(name) == struct.pack("<I", mmh3.hash(name, signed=False))
        assert F.feature_field(view, feature) == FC.field_hash(name)


def test_redis_key_round_trips_with_the_column_encoder():
    ids = ["p1", "", "é" * 40, "x" * 300]
    ours = F.entity_keys("product_id", ids, "proj")
    for i, key in zip(ids, ours):
        ek = EntityKey(join_keys=["product_id"], entity_values=[ValueProto(string_val=i)])
        assert FC.redis_key("proj", ek) == key
        assert key.endswith(b"proj") and i.encode() in key


def _view(name: str = "v") -> FeatureView:
    ent = Entity(name="product", join_keys=["product_id"], value_type=ValueType.STRING)
    return FeatureView(name=name, entities=[ent], ttl=timedelta(0), schema=[Field(name="product_id", dtype=String),
                       Field(name="x", dtype=Float64)], source=FileSource(path="/nowhere.parquet", timestamp_field="ts"))


def test_versioned_view_name_is_the_plain_name_without_online_versioning(tmp_path):
    cfg = RepoConfig(project="p", provider="local", registry=str(tmp_path / "r.db"),
                     online_store={"type": "redis", "connection_string": "localhost:6379"},
                     entity_key_serialization_version=3)
    assert FC.versioned_view_name(_view("product_stats"), cfg) == "product_stats"


def test_columns_to_proto_values_gives_feasts_value_protos():
    batch = pa.record_batch({"n": pa.array([3, None], pa.int64()), "x": pa.array([0.5, 2.0])})
    got = FC.columns_to_proto_values(batch, [("n", ValueType.INT64), ("x", ValueType.DOUBLE)])
    assert got["n"][0] == ValueProto(int64_val=3) and got["n"][1].WhichOneof("val") is None
    assert [v.double_val for v in got["x"]] == [0.5, 2.0]


def test_parse_connection_string_reads_nodes_and_options():
    nodes, kw = FC.parse_connection_string('h1:6380,db=3,password="a\\u002cb",ssl=true')
    assert nodes == [{"host": "h1", "port": "6380"}] and kw == {"db": 3, "password": "a,b", "ssl": True}  # JSON escapes survive the split on commas


def test_local_engine_hooks_the_materializer_overrides():
    params = list(inspect.signature(FC.LocalComputeEngine._materialize_one).parameters)
    assert params[:3] == ["self", "registry", "task"], params
    job = FC.LocalMaterializationJob(job_id="j", status=FC.MaterializationJobStatus.ERROR, error=KeyError("k"))
    assert job.job_id() == "j" and job.status() == FC.MaterializationJobStatus.ERROR
    assert isinstance(job.error(), KeyError)
    assert {"feature_view", "start_time", "end_time", "tqdm_builder"} <= set(inspect.signature(FC.MaterializationTask).parameters)
    assert {t.value for t in FC.RedisType} >= {"redis", "redis_cluster"}
    assert issubclass(FC.RedisOnlineStoreConfig, FC.FeastConfigBaseModel)


@pytest.mark.parametrize("value_type, kind, value", [("DOUBLE", "double_val", 2.5), ("FLOAT", "float_val", 0.25),
                                                     ("INT64", "int64_val", -7), ("INT32", "int32_val", 300)])
def test_scalar_wire_layout_is_one_tag_and_the_value(value_type, kind, value):
    """The layout the vectorised stats decoder reads without protobuf (redis_format.decode_scalars)."""
    blob = ValueProto(**{kind: value}).SerializeToString()
    assert blob[:1] == F.scalar_tag(value_type) and len(blob) <= 11
    vals, errors = F.decode_scalars([blob, None, b""], value_type)
    assert errors == {} and vals[0] == value and np.isnan(vals[1:]).all()
