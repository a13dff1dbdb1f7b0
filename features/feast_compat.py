"""Every Feast internal the fast Redis paths use, in one place, for the pinned Feast version.

The fast materializer (`features.materialize`), the Redis format (`features.redis_format`), the
online reader (`features.online`) and the Redis client (`features.store`) write and read Feast's
Redis layout without going through `FeatureStore`; for that they need a few Feast functions that
are not public API (underscore names, or classes deep inside `feast.infra`). They import them from
here only. `tests/test_feast_compat.py` fails when the installed Feast is not `PINNED_FEAST` (the
version in constraints.txt and pyproject.toml) and checks that each name below still exists and
behaves as these modules assume; when Feast is upgraded, that test is the list to re-check.
"""

from __future__ import annotations

from importlib.metadata import version

from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig, RedisType, _versioned_fv_name
from feast.repo_config import FeastConfigBaseModel
from feast.utils import _columns_to_proto_values

PINNED_FEAST = "0.67.0"  # the version the names below were checked against (constraints.txt)


def installed_feast() -> str:
    return version("feast")


def versioned_view_name(view, config) -> str:
    """The view name Feast uses in Redis hash fields (a version suffix when online versioning is on)."""
    return _versioned_fv_name(view, config)


def field_hash(name: str) -> bytes:
    """Feast's 4-byte hash field of `"<view>:<feature>"` (murmur3_32, little endian)."""
    return _mmh3(name)


def redis_key(project: str, entity_key, serialization_version: int = 3) -> bytes:
    """Feast's Redis key of an EntityKey proto (the reference our column encoder is tested against)."""
    return _redis_key(project, entity_key, entity_key_serialization_version=serialization_version)


def columns_to_proto_values(batch, columns: list[tuple[str, object]]) -> dict[str, list]:
    """Arrow record batch columns -> ValueProtos, Feast's own converter (what its writer stores)."""
    return _columns_to_proto_values(batch, columns)


def parse_connection_string(connection_string: str) -> tuple[list[dict], dict]:
    """Feast's parse of `host:port,db=0,password=...`: (startup nodes, client keyword arguments)."""
    return RedisOnlineStore._parse_connection_string(connection_string)


__all__ = [
    "PINNED_FEAST", "installed_feast", "versioned_view_name", "field_hash", "redis_key", "columns_to_proto_values",
    "parse_connection_string", "LocalComputeEngine", "LocalMaterializationJob", "MaterializationJobStatus",
    "MaterializationTask", "RedisOnlineStoreConfig", "RedisType", "FeastConfigBaseModel",
]
