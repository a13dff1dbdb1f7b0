"""Feast's Redis online-store format, encoded and decoded a whole column at a time.

Feast 0.67 (`feast/infra/online_stores/redis.py`, entity_key_serialization_version 3) stores one
Redis hash per entity key:

    key    = serialize_entity_key(EntityKey, v3) + project          (bytes)
    field  = mmh3_32_le(f"{view}:{feature}")                           (4 bytes) -> ValueProto bytes
    field  = f"_ts:{view}"                                             -> protobuf Timestamp bytes

All views on the same entity share the hash. A single string join key serialises as
`<u32 1><u32 STRING><u32 len(name)>name<u32 STRING><u32 len(value)>value`. An Array(Float32) value
is `Value{float_list_val: FloatList{val: packed floats}}`, i.e. a constant header that depends only
on the dimension followed by the little-endian float32 bytes, so a column of embeddings encodes
and decodes with numpy instead of one protobuf object per row. The headers are derived from the
protobuf library at run time (not hard-coded) and every path is tested byte-for-byte against
Feast's own serialisers.

Compact vectors (`encode_vectors(mat, "float16" | "int8")`): Feast has no float16 list type, so a
compact vector is a `Value{bytes_val}` whose payload is one type byte and the packed values:
`0x02` + d little-endian float16, or `0x01` + a float32 scale + d int8 (x ~= scale * q, scale =
max|x| / 127 per vector). `decode_float_lists` reads all three layouts to float32, so readers need
no setting; Feast's own `get_online_features` returns such a value as bytes.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Sequence

import numpy as np
from feast.protos.feast.types.Value_pb2 import FloatList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.protos.feast.types.Value_pb2 import ValueType
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from features.feast_compat import field_hash

_U32 = struct.Struct("<I")
_STRING = ValueType.STRING


def feature_field(view: str, feature: str) -> bytes:
    """Hash field under which Feast stores `view:feature`."""
    return field_hash(f"{view}:{feature}")


def ts_field(view: str) -> bytes:
    return f"_ts:{view}".encode()


@lru_cache(maxsize=64)
def _key_prefix(join_key: str) -> bytes:
    name = join_key.encode()
    return _U32.pack(1) + _U32.pack(_STRING) + _U32.pack(len(name)) + name + _U32.pack(_STRING)


def entity_keys(join_key: str, values: Sequence[str], project: str) -> list[bytes]:
    """Redis keys of single-string-join-key entities (what Feast's `_redis_key` returns)."""
    prefix, proj, pack = _key_prefix(join_key), project.encode(), _U32.pack
    out = []
    for v in values:
        b = v.encode()
        out.append(b"".join((prefix, pack(len(b)), b, proj)))
    return out


@lru_cache(maxsize=64)
def float_list_header(dim: int) -> bytes:
    """Bytes that precede the packed float32 payload of a `dim`-long Array(Float32) value."""
    probe = np.arange(1, dim + 1, dtype=np.float32)
    blob = ValueProto(float_list_val=FloatList(val=probe.tolist())).SerializeToString()
    header, payload = blob[: len(blob) - 4 * dim], blob[len(blob) - 4 * dim :]
    if payload != probe.astype("<f4").tobytes():  # the layout assumption no longer holds
        raise RuntimeError("unexpected protobuf layout for FloatList; the fast path cannot be used")
    return header


def encode_float_lists(mat: np.ndarray) -> list[bytes]:
    """(n, d) float32 -> n serialized ValueProto(float_list_val=...) blobs."""
    mat = np.ascontiguousarray(mat, dtype="<f4")
    n, d = mat.shape
    header = np.frombuffer(float_list_header(d), dtype=np.uint8)
    width = header.size + 4 * d
    buf = np.empty((n, width), dtype=np.uint8)  # (n, header + 4d)
    buf[:, : header.size] = header
    buf[:, header.size :] = mat.view(np.uint8).reshape(n, 4 * d)
    raw = buf.tobytes()
    return [raw[i * width : (i + 1) * width] for i in range(n)]


VECTOR_DTYPES = ("float32", "float16", "int8")
_PACKED = {"float16": 2, "int8": 1}  # type byte -> layout of a compact vector
_PACKED_DTYPE = {v: k for k, v in _PACKED.items()}


def _packed_payload_len(dtype: str, dim: int) -> int:
    return 1 + (2 * dim if dtype == "float16" else 4 + dim)


@lru_cache(maxsize=64)
def packed_header(dtype: str, dim: int) -> bytes:
    """Bytes before the values of a `dim`-long compact vector: the Value{bytes_val} framing, the
    type byte (and for int8 the per-vector scale follows)."""
    n = _packed_payload_len(dtype, dim)
    blob = ValueProto(bytes_val=bytes(n)).SerializeToString()
    return blob[: len(blob) - n] + bytes([_PACKED[dtype]])


def encode_vectors(mat: np.ndarray, dtype: str = "float32") -> list[bytes]:
    """(n, d) float vectors -> n serialized values stored as float32 lists or compact vectors."""
    if dtype == "float32":
        return encode_float_lists(mat)
    if dtype not in _PACKED:
        raise ValueError(f"vector dtype {dtype!r}: expected one of {VECTOR_DTYPES}")
    mat = np.ascontiguousarray(mat, dtype=np.float32)
    n, d = mat.shape
    header = np.frombuffer(packed_header(dtype, d), dtype=np.uint8)
    if dtype == "float16":
        body = mat.astype("<f2").view(np.uint8).reshape(n, 2 * d)
    else:
        scale = np.abs(mat).max(axis=1, keepdims=True) / 127.0  # (n, 1)
        q = np.rint(mat / np.where(scale > 0, scale, 1.0)).astype(np.int8)
        body = np.concatenate([scale.astype("<f4").view(np.uint8), q.view(np.uint8)], axis=1)  # (n, 4 + d)
    buf = np.concatenate([np.broadcast_to(header, (n, header.size)), body], axis=1)
    raw, width = buf.tobytes(), buf.shape[1]
    return [raw[i * width : (i + 1) * width] for i in range(n)]


def _unpack(dtype: str, body: np.ndarray) -> np.ndarray:
    """(m, payload after the type byte) uint8 -> (m, d) float32."""
    if dtype == "float16":
        return body.copy().view("<f2").astype(np.float32)
    scale = body[:, :4].copy().view("<f4")  # (m, 1)
    return body[:, 4:].copy().view(np.int8).astype(np.float32) * scale


def _packed_layout(blob: bytes) -> tuple[str, int] | None:
    """(dtype, dim) of a compact vector blob, None for any other value."""
    v = ValueProto()
    try:
        v.ParseFromString(blob)
    except Exception:
        return None
    if v.WhichOneof("val") != "bytes_val" or not v.bytes_val or v.bytes_val[0] not in _PACKED_DTYPE:
        return None
    dtype = _PACKED_DTYPE[v.bytes_val[0]]
    d = (len(v.bytes_val) - 1) // 2 if dtype == "float16" else len(v.bytes_val) - 5
    return (dtype, d) if _packed_payload_len(dtype, d) == len(v.bytes_val) else None


def _header_dim(blob: bytes) -> int | None:
    """Dimension of an Array(Float32) blob when it has the canonical layout, else None."""
    # payload size is 4*d and the header is at most a few bytes; try the sizes it can be
    for h in range(2, 12):
        d, rem = divmod(len(blob) - h, 4)
        if rem == 0 and d > 0 and float_list_header(d) == blob[:h]:
            return d
    return None


def decode_float_lists(blobs: Sequence[bytes | None], dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Serialized ValueProto blobs -> ((n, d) float32, (n,) bool present).

    Missing entries (None: no such key/field; b"": a stored null) give zero rows and present=False.
    """
    n = len(blobs)
    present = np.fromiter((bool(b) for b in blobs), dtype=bool, count=n)
    idx = np.flatnonzero(present)
    packed = _packed_layout(blobs[idx[0]]) if idx.size else None
    if dim is None:
        dim = packed[1] if packed else (_header_dim(blobs[idx[0]]) if idx.size else 0)
        if dim is None:
            dim = len(_parse_floats(blobs[idx[0]]))
    out = np.zeros((n, dim), dtype=np.float32)
    if not idx.size:
        return out, present
    if packed:
        header = packed_header(packed[0], dim)
        width = len(header) - 1 + _packed_payload_len(packed[0], dim)
    else:
        header = float_list_header(dim) if dim else b""
        width = len(header) + 4 * dim
    picked = [blobs[i] for i in idx]
    raw = b"".join(picked)
    if len(raw) == width * idx.size:
        arr = np.frombuffer(raw, dtype=np.uint8).reshape(idx.size, width)  # (m, header + payload)
        if (arr[:, : len(header)] == np.frombuffer(header, dtype=np.uint8)).all():
            body = arr[:, len(header) :]
            out[idx] = _unpack(packed[0], body) if packed else body.copy().view("<f4")
            return out, present
    for i in idx:  # odd rows (other dimension, non-canonical encoding): the protobuf way
        vals = _parse_floats(blobs[i])
        if len(vals) != dim:
            raise ValueError(f"embedding of dimension {len(vals)} where {dim} was expected (row {i})")
        out[i] = vals
    return out, present


def _parse_floats(blob: bytes) -> np.ndarray:
    packed = _packed_layout(blob)
    if packed:
        dtype, d = packed
        h = len(packed_header(dtype, d))
        return _unpack(dtype, np.frombuffer(blob, np.uint8)[h:][None, :])[0]
    v = ValueProto()
    v.ParseFromString(blob)
    if v.WhichOneof("val") != "float_list_val":
        raise ValueError(f"expected an Array(Float32) value, got {v.WhichOneof('val')}")
    return np.asarray(v.float_list_val.val, dtype=np.float32)


@lru_cache(maxsize=1)
def _string_tag() -> bytes:
    blob = ValueProto(string_val="a").SerializeToString()  # tag, length 1, "a"
    return blob[:-2]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_strings(values: Sequence[str]) -> list[bytes]:
    """Non-null strings -> serialized ValueProto(string_val=...), as Feast writes them."""
    tag, out = _string_tag(), []
    for v in values:
        b = v.encode()
        out.append(tag + (bytes((len(b),)) if len(b) < 128 else _varint(len(b))) + b)
    return out


def encode_bools(values: np.ndarray) -> list[bytes]:
    """Non-null booleans -> serialized ValueProto(bool_val=...)."""
    true, false = ValueProto(bool_val=True).SerializeToString(), ValueProto(bool_val=False).SerializeToString()
    return [true if v else false for v in np.asarray(values, dtype=bool).tolist()]


def encode_timestamps(micros: np.ndarray) -> list[bytes]:
    """int64 microseconds since the epoch (UTC) -> serialized protobuf Timestamps, as Feast writes."""
    uniq, inverse = np.unique(np.asarray(micros, dtype=np.int64), return_inverse=True)
    blobs = []
    for us in uniq.tolist():
        ts = Timestamp()
        ts.seconds, rem = divmod(us, 1_000_000)
        ts.nanos = rem * 1000
        blobs.append(ts.SerializeToString())
    return [blobs[i] for i in inverse.ravel().tolist()]


def timestamp_nanos(blob: bytes | None) -> int:
    """Stored `_ts:` blob -> nanoseconds since the epoch (0 when absent)."""
    if not blob:
        return 0
    ts = Timestamp()
    ts.ParseFromString(blob)
    return ts.seconds * 1_000_000_000 + ts.nanos


class Corrupt(ValueError):
    """A stored value that does not decode as a scalar."""


# scalar value types read without protobuf: the ValueProto field, and a probe whose payload is one byte/word
_SCALAR_PROBES = {"DOUBLE": ("double_val", 1.0, 8), "FLOAT": ("float_val", 1.0, 4),
                  "INT64": ("int64_val", 1, 1), "INT32": ("int32_val", 1, 1)}
_FIXED = {"DOUBLE": "<f8", "FLOAT": "<f4"}


@lru_cache(maxsize=8)
def scalar_tag(value_type: str) -> bytes:
    """The one-byte field tag that starts a serialized ValueProto holding this scalar type."""
    kind, probe, payload = _SCALAR_PROBES[value_type]
    blob = ValueProto(**{kind: probe}).SerializeToString()
    if len(blob) != 1 + payload:
        raise RuntimeError(f"unexpected protobuf layout for {kind}: {blob!r}; the fast path cannot be used")
    return blob[:1]


def parse_scalar(blob: bytes | None) -> float:
    """One stored ValueProto scalar -> float (NaN when missing or null); Corrupt when undecodable."""
    if not blob:
        return np.nan
    v = ValueProto()
    try:
        v.ParseFromString(blob)
        kind = v.WhichOneof("val")
        return float(getattr(v, kind)) if kind and kind != "null_val" else np.nan
    except (DecodeError, TypeError, ValueError) as e:
        raise Corrupt(f"{len(blob)} bytes: {e}") from e


def _decode_fixed(blobs: Sequence[bytes | None], idx: np.ndarray, value_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Blobs `idx` (all 1 + itemsize bytes long) -> (values, rows in the canonical layout)."""
    width = 1 + np.dtype(_FIXED[value_type]).itemsize
    raw = np.frombuffer(_joined(blobs, idx), np.uint8).reshape(idx.size, width)
    ok = raw[:, 0] == scalar_tag(value_type)[0]
    return raw[:, 1:].copy().view(_FIXED[value_type])[:, 0].astype(np.float64), ok


def _decode_varints(blobs: Sequence[bytes | None], idx: np.ndarray, lens: np.ndarray,
                    value_type: str) -> tuple[np.ndarray, np.ndarray]:
    """Blobs `idx` (tag + a varint of 1..10 bytes each), concatenated and decoded in one pass."""
    raw = np.frombuffer(_joined(blobs, idx), np.uint8)
    starts = np.zeros(idx.size, np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    ok = raw[starts] == scalar_tag(value_type)[0]
    is_tag = np.zeros(raw.size, bool)
    is_tag[starts] = True
    body = raw[~is_tag]  # the varint bytes, row after row
    body_starts = starts - np.arange(idx.size)
    last = np.zeros(body.size, bool)
    last[np.cumsum(lens - 1) - 1] = True  # the last byte of each varint
    cont = (body & 0x80) != 0
    bad_bytes = np.flatnonzero(cont == last)  # a continuation bit must be set on all but the last byte
    if bad_bytes.size:
        ok[np.searchsorted(body_starts, bad_bytes, side="right") - 1] = False
    pos = np.arange(body.size) - np.repeat(body_starts, lens - 1)  # byte index within its varint
    parts = (body & 0x7F).astype(np.uint64) << (pos.astype(np.uint64) * np.uint64(7))
    u = np.add.reduceat(parts, body_starts)  # the 7-bit groups do not overlap: sum == or
    return u.view(np.int64).astype(np.float64), ok  # int32 negatives are sign-extended to 10 bytes too


def _joined(blobs: Sequence[bytes | None], idx: np.ndarray) -> bytes:
    return b"".join(blobs if idx.size == len(blobs) else [blobs[i] for i in idx.tolist()])


def _lengths(blobs: Sequence[bytes | None]) -> np.ndarray:
    try:
        return np.fromiter(map(len, blobs), np.int64, len(blobs))
    except TypeError:  # a missing field (None) among them
        return np.fromiter((len(b) if b else 0 for b in blobs), np.int64, len(blobs))


def decode_scalars(blobs: Sequence[bytes | None], value_type: str) -> tuple[np.ndarray, dict[int, str]]:
    """Stored ValueProto scalars of one type -> ((n,) float64, {row: why it does not decode}).

    Missing (None) and null (b"") values are NaN. Blobs in the canonical layout of `value_type`
    (one tag byte, then 8 / 4 little-endian bytes or a varint) are decoded together by numpy; any
    other blob goes through the protobuf parser (`parse_scalar`), so the values are what it
    returns. Rows that do not decode are NaN and listed in the errors.
    """
    n = len(blobs)
    out = np.full(n, np.nan)
    lens = _lengths(blobs)
    fast = np.zeros(n, bool)
    if value_type in _FIXED:
        idx = np.flatnonzero(lens == 1 + np.dtype(_FIXED[value_type]).itemsize)
        vals, ok = _decode_fixed(blobs, idx, value_type) if idx.size else (None, None)
    elif value_type in _SCALAR_PROBES:
        idx = np.flatnonzero((lens >= 2) & (lens <= 11))
        vals, ok = _decode_varints(blobs, idx, lens[idx], value_type) if idx.size else (None, None)
    else:
        idx = np.zeros(0, np.int64)
    if idx.size:
        out[idx[ok]] = vals[ok]
        fast[idx[ok]] = True
    errors = {}
    for i in np.flatnonzero(~fast & (lens > 0)).tolist():
        try:
            out[i] = parse_scalar(blobs[i])
        except Corrupt as e:
            errors[i] = str(e)
    return out, errors
