"""Fragments: immutable Zarr v3 groups holding the concatenated rows of several entries of a modality.

A fragment is written once, by one task, under a fresh unique name, and never changed; it counts only
once a catalog commit points at it (:mod:`affectcache.store.format.catalog`). Layout of
``<store>/<modality>/fragments/<fragment_id>/``::

    zarr.json                 group; attrs["affectcache_fragment"]: format, kind, n_rows, n_entries, created
    values   (row, ...)       float16/float32/..., or UTF-8 strings (text modalities)
    frame, time_s (row,)      frame-level modalities        } listed as coordinates of ``values``
    start_s, end_s (row,)     segment / text / clip kinds   }
    mask     (row,) bool      row validity (all True for entries stored without a mask)
    video_id (video_id,)      the entries, in row order (an index coordinate for xarray)
    n_rows   (video_id,)      rows per entry (entry i starts at the sum of the previous ones)

Arrays are plain Zarr v3: the ``bytes`` codec (uncompressed: features do not compress and reads become
one ranged read per entry) or ``vlen-utf8`` for strings, regular chunks of about
:data:`TARGET_CHUNK_BYTES` along rows, chunk keys ``<i>.<j>`` (the "v2" encoding, so no nested folders).
The metadata and chunks are written here directly (no zarr calls on the write path: creating arrays
through zarr costs milliseconds each); ``zarr`` and ``xarray.open_zarr`` read them as usual. Reading goes
through the same small codec set and falls back to ``zarr`` for anything else.
"""

from __future__ import annotations

import json
import math
import struct
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from affectcache.extractors.core.provenance import utc_now
from affectcache.extractors.core.records import ROW_KEYS
from affectcache.store.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from affectcache.extractors.core.records import FeatureArray, ModalityKind
    from affectcache.store.kv import Keys

FRAGMENT_FORMAT = 1
FRAGMENTS_GROUP = "fragments"
TARGET_CHUNK_BYTES = 4 << 20
"""Rows per chunk aim at this many bytes: few files per fragment, small ranged reads per entry."""
GROUP_META = b'{"zarr_format": 3, "node_type": "group", "attributes": {}}'
STRING_DTYPE = np.dtypes.StringDType()


def new_fragment_id(prefix: str = "f") -> str:
    """A unique, time-ordered fragment name (no two writers ever pick the same one)."""
    return f"{prefix}{time.time_ns():016x}-{uuid.uuid4().hex[:12]}"


def fragment_time_s(fragment_id: str) -> float:
    """When a fragment was named (seconds since the epoch), from its id; 0 when unparseable."""
    try:
        return int(fragment_id[1:17], 16) / 1e9
    except ValueError:
        return 0.0


def group_bytes(attributes: Mapping[str, Any]) -> bytes:
    """A Zarr v3 group ``zarr.json`` document."""
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": dict(attributes)},
                      allow_nan=False).encode()


@dataclass(frozen=True, kw_only=True)
class EntryRows:
    """Where one entry's rows are in a fragment, plus what the catalog records about it."""

    video_id: str
    """The entry."""
    start: int
    """First row in the fragment."""
    n_rows: int
    """Rows."""
    has_mask: bool
    """Whether the entry was written with a mask (otherwise every row is valid)."""
    source: Mapping[str, Any]
    """Source facts (path, size, mtime, clip bounds)."""
    attrs: Mapping[str, Any]
    """The extractor's per-item attrs."""


@dataclass(frozen=True, kw_only=True)
class FragmentInfo:
    """A written (not yet committed) fragment: what a task returns to the driver to commit."""

    fragment_id: str
    """Folder name under ``<modality>/fragments/``."""
    n_rows: int
    """Rows in the fragment."""
    entries: tuple[EntryRows, ...]
    """Its entries, in row order."""


# ---- writing --------------------------------------------------------------------------------------
def _chunk_rows(shape: tuple[int, ...], itemsize: int) -> int:
    row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * itemsize)
    return int(max(1, min(max(shape[0], 1), TARGET_CHUNK_BYTES // row_bytes)))


def _encode_strings(values: npt.NDArray[Any]) -> bytes:
    """The ``vlen-utf8`` codec: item count, then (length, UTF-8 bytes) per item, little-endian u32."""
    encoded = [str(v).encode("utf-8") for v in values]
    parts = [struct.pack("<I", len(encoded))]
    for item in encoded:
        parts.append(struct.pack("<I", len(item)))
        parts.append(item)
    return b"".join(parts)


def _decode_strings(data: bytes) -> npt.NDArray[Any]:
    (count,) = struct.unpack_from("<I", data, 0)
    pos = 4
    out = []
    for _ in range(count):
        (length,) = struct.unpack_from("<I", data, pos)
        pos += 4
        out.append(data[pos: pos + length].decode("utf-8"))
        pos += length
    return np.array(out, dtype=STRING_DTYPE)


def array_files(path: str, arr: npt.NDArray[Any], dims: Sequence[str],
                attributes: Mapping[str, Any] | None = None) -> list[tuple[str, bytes | bytearray]]:
    """The Zarr v3 files (``zarr.json`` + chunks) of one array at ``path``."""
    if arr.dtype.kind in "TUO":
        data_type = "string"
        fill: str | bool | int = ""
        codecs: list[dict[str, Any]] = [{"name": "vlen-utf8", "configuration": {}}]
        rows = max(1, min(max(arr.shape[0], 1), 65536))
    else:
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        data_type = arr.dtype.name
        fill = False if arr.dtype.kind == "b" else 0
        codec: dict[str, Any] = {"name": "bytes"}
        if arr.dtype.itemsize > 1:
            codec["configuration"] = {"endian": "little"}
        codecs = [codec]
        rows = _chunk_rows(arr.shape, arr.dtype.itemsize)
    tail = ".0" * (arr.ndim - 1)
    n_chunks = math.ceil(arr.shape[0] / rows)
    if data_type != "string" and n_chunks > 1:
        return _sharded_files(path, arr, dims, attributes, rows, n_chunks)
    meta = {"zarr_format": 3, "node_type": "array", "shape": list(arr.shape), "data_type": data_type,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [rows, *arr.shape[1:]]}},
            "chunk_key_encoding": {"name": "v2", "configuration": {"separator": "."}},
            "fill_value": fill, "codecs": codecs, "attributes": dict(attributes or {}),
            "dimension_names": list(dims)}
    files: list[tuple[str, bytes | bytearray]] = [(f"{path}/zarr.json", json.dumps(meta).encode())]
    for i in range(math.ceil(arr.shape[0] / rows)):
        block = arr[i * rows: (i + 1) * rows]
        if data_type == "string":
            data = _encode_strings(block)
        else:
            if block.shape[0] < rows:  # Zarr v3 stores edge chunks at full chunk size
                pad = np.zeros((rows - block.shape[0], *arr.shape[1:]), dtype=arr.dtype)
                block = np.concatenate([block, pad])
            data = block.tobytes()
        files.append((f"{path}/{i}{tail}", data))
    return files


def _sharded_files(path: str, arr: npt.NDArray[Any], dims: Sequence[str],
                   attributes: Mapping[str, Any] | None,
                   rows: int, n_chunks: int) -> list[tuple[str, bytes | bytearray]]:
    """A multi-chunk array as one Zarr v3 shard (``sharding_indexed``): one file instead of one per chunk.

    The inner chunks are stored back to back in order, then the index (offset, size per chunk), so row
    ``r`` is at byte ``r * row_bytes`` of the shard (what :func:`shard_layout_ok` checks before the
    direct reader relies on it).
    """
    padded = n_chunks * rows
    chunk_bytes = rows * (arr[:1].nbytes if arr.shape[0] else 0)
    # The shard assembled in one buffer with one copy of the rows (the last inner chunk is stored at
    # full size: zero padding), then the index: a compaction writes hundreds of MB through here.
    data = bytearray(n_chunks * chunk_bytes + 16 * n_chunks)
    np.frombuffer(data, dtype=np.uint8, count=arr.nbytes)[:] = arr.reshape(-1).view(np.uint8)
    index = np.frombuffer(data, dtype="<u8", offset=n_chunks * chunk_bytes).reshape(n_chunks, 2)
    index[:, 0] = np.arange(n_chunks, dtype=np.uint64) * chunk_bytes
    index[:, 1] = chunk_bytes
    endian = {"configuration": {"endian": "little"}} if arr.dtype.itemsize > 1 else {}
    meta = {"zarr_format": 3, "node_type": "array", "shape": list(arr.shape), "data_type": arr.dtype.name,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [padded, *arr.shape[1:]]}},
            "chunk_key_encoding": {"name": "v2", "configuration": {"separator": "."}},
            "fill_value": False if arr.dtype.kind == "b" else 0,
            "codecs": [{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [rows, *arr.shape[1:]], "codecs": [{"name": "bytes", **endian}],
                "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
                "index_location": "end"}}],
            "attributes": dict(attributes or {}), "dimension_names": list(dims)}
    tail = ".0" * (arr.ndim - 1)
    return [(f"{path}/zarr.json", json.dumps(meta).encode()), (f"{path}/0{tail}", data)]


def shard_layout_ok(keys: Keys, meta: ArrayMeta) -> bool:
    """Whether a one-shard array's index says its inner chunks lie back to back in order (as written
    here), so rows can be read at ``row * row_bytes``; anything else is read through zarr."""
    n_chunks = meta.chunk_rows // meta.inner_rows
    chunk_bytes = meta.inner_rows * meta.row_bytes
    try:
        raw = keys.get_range(meta.chunk_key(0), n_chunks * chunk_bytes, 16 * n_chunks)
    except (FileNotFoundError, OSError):
        return False
    if len(raw) != 16 * n_chunks:
        return False
    index = np.frombuffer(raw, dtype="<u8").reshape(n_chunks, 2)
    expected = np.arange(n_chunks, dtype=np.uint64) * chunk_bytes
    return bool((index[:, 0] == expected).all() and (index[:, 1] == chunk_bytes).all())


def write_fragment(keys: Keys, modality: str, kind: ModalityKind,
                   entries: Sequence[tuple[FeatureArray, Mapping[str, Any]]]) -> FragmentInfo:
    """Write ``(features, source)`` pairs as one new fragment of ``modality`` (uncommitted)."""
    if not entries:
        raise StoreError(f"{modality}: a fragment needs at least one entry")
    feats = [f for f, _ in entries]
    columns: dict[str, npt.NDArray[Any]] = {"values": _concat([f.values for f in feats],
                                                              what=f"{modality} values")}
    for key in ROW_KEYS[kind]:
        columns[key] = np.concatenate([np.asarray(getattr(f, key)) for f in feats])
    if any(f.mask is not None for f in feats):
        columns["mask"] = np.concatenate([f.mask if f.mask is not None else np.ones(f.n_rows, bool)
                                          for f in feats])
    return write_columns(keys, modality, kind, columns, [
        (f.video_id, f.n_rows, f.mask is not None, source, f.attrs) for f, source in entries])


def write_columns(keys: Keys, modality: str, kind: ModalityKind, columns: Mapping[str, npt.NDArray[Any]],
                  entries: Sequence[tuple[str, int, bool, Mapping[str, Any], Mapping[str, Any]]],
                  *, prefix: str = "f") -> FragmentInfo:
    """Write concatenated row ``columns`` (``values``, the kind's row keys, optional ``mask``) of
    ``entries`` = ``(video_id, n_rows, has_mask, source, attrs)`` in row order as a new fragment."""
    fid = new_fragment_id(prefix)
    base = f"{modality}/{FRAGMENTS_GROUP}/{fid}"
    counts = np.array([e[1] for e in entries], dtype=np.int64)
    n_rows = int(counts.sum())
    files: list[tuple[str, bytes | bytearray]] = []
    coords = " ".join(ROW_KEYS[kind])
    for key, arr in columns.items():
        if arr.shape[0] != n_rows:
            raise StoreError(f"{modality}: column {key} has {arr.shape[0]} rows, the entries {n_rows}")
        dims = ["row"] + (["feature"] if arr.ndim == 2 else [f"feature_{i}" for i in range(1, arr.ndim)])
        attrs = {"coordinates": coords} if key == "values" else None
        files += array_files(f"{base}/{key}", arr, dims, attrs)
    files += array_files(f"{base}/video_id", np.array([e[0] for e in entries], dtype=STRING_DTYPE),
                         ["video_id"])
    files += array_files(f"{base}/n_rows", counts, ["video_id"])
    files.append((f"{base}/zarr.json", group_bytes({"affectcache_fragment": {
        "format": FRAGMENT_FORMAT, "kind": kind, "n_rows": n_rows, "n_entries": len(entries),
        "created": utc_now()}})))
    keys.put_many(files)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    # One JSON round trip for all entries' facts (tuples become lists; numpy scalars are refused).
    plain = json.loads(json.dumps([[dict(e[3]), dict(e[4])] for e in entries]))
    rows = tuple(EntryRows(video_id=vid, start=int(s), n_rows=int(n), has_mask=has_mask, source=src,
                           attrs=attrs)
                 for (vid, n, has_mask, _, _), s, (src, attrs) in zip(entries, starts, plain, strict=True))
    return FragmentInfo(fragment_id=fid, n_rows=n_rows, entries=rows)


def _concat(parts: Sequence[npt.NDArray[Any]], *, what: str) -> npt.NDArray[Any]:
    shapes = {(p.dtype.kind in "TUO", p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise StoreError(f"{what}: entries of one modality must share dtype kind and feature shape, "
                         f"got {sorted(str(s) for s in shapes)}")
    if parts[0].dtype.kind in "TUO":
        return np.concatenate([p.astype(STRING_DTYPE) for p in parts])
    dtypes = {p.dtype for p in parts}
    if len(dtypes) > 1:
        raise StoreError(f"{what}: entries of one modality must share a dtype, "
                         f"got {sorted(map(str, dtypes))}")
    return np.concatenate(parts)


# ---- reading --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArrayMeta:
    """What reading one fragment array needs from its ``zarr.json``."""

    key: str
    """Array folder key."""
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    chunk_rows: int
    string: bool
    """vlen-utf8 strings."""
    direct: bool
    """Readable here (bytes or vlen-utf8 codec, v2 '.' chunk keys); otherwise through zarr."""
    inner_rows: int = 0
    """Rows per inner chunk of a one-shard array written by :func:`array_files` (0: not sharded); such
    an array is direct only once :func:`shard_layout_ok` confirmed its layout."""

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def chunk_key(self, i: int) -> str:
        return f"{self.key}/{i}" + ".0" * (len(self.shape) - 1)


def parse_array_meta(key: str, raw: bytes) -> ArrayMeta:
    """Parse an array's ``zarr.json`` (raises StoreError naming the key when it is not an array)."""
    meta = json.loads(raw)
    if meta.get("node_type") != "array":
        raise StoreError(f"{key} is not a Zarr array")
    codecs = [c.get("name") for c in meta.get("codecs", [])]
    string = meta["data_type"] == "string"
    enc = meta.get("chunk_key_encoding", {})
    direct = (enc.get("name") == "v2" and enc.get("configuration", {}).get("separator", ".") == "."
              and codecs == (["vlen-utf8"] if string else ["bytes"]))
    dtype = np.dtype(object) if string else np.dtype(meta["data_type"]).newbyteorder("<")
    chunk_rows = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
    inner_rows = 0
    if codecs == ["sharding_indexed"] and not string and enc.get("name") == "v2":
        conf = meta["codecs"][0].get("configuration", {})
        inner = conf.get("chunk_shape") or [0]
        plain = ([c.get("name") for c in conf.get("codecs", [])] == ["bytes"]
                 and [c.get("name") for c in conf.get("index_codecs", [])] == ["bytes"]
                 and conf.get("index_location", "end") == "end")
        # One shard holding the whole array, inner chunks along rows only: possibly ours.
        if (plain and int(inner[0]) > 0 and chunk_rows % int(inner[0]) == 0
                and chunk_rows >= int(meta["shape"][0]) and list(inner[1:]) == list(meta["shape"][1:])):
            inner_rows = int(inner[0])
    return ArrayMeta(key=key, shape=tuple(meta["shape"]), dtype=dtype, chunk_rows=chunk_rows,
                     string=string, direct=direct, inner_rows=inner_rows)


def read_rows(keys: Keys, meta: ArrayMeta, lo: int, hi: int,
              out: npt.NDArray[Any] | None = None, *, zarr_open: Any = None) -> npt.NDArray[Any]:
    """Rows ``lo:hi`` of a fragment array; numeric rows are read straight into ``out`` when given."""
    n = hi - lo
    if not meta.direct:
        data = zarr_open(meta.key)[lo:hi]
        if out is not None:
            out[...] = data
            return out
        return np.asarray(data)
    if meta.string:
        parts = []
        last = (hi - 1) // meta.chunk_rows + 1 if n else lo // meta.chunk_rows
        for c in range(lo // meta.chunk_rows, last):
            raw = keys.get(meta.chunk_key(c))
            if raw is None:
                raise FileNotFoundError(meta.chunk_key(c))
            block = _decode_strings(raw)
            c0 = c * meta.chunk_rows
            parts.append(block[max(lo - c0, 0): hi - c0])
        result = np.concatenate(parts) if parts else np.empty(0, dtype=STRING_DTYPE)
        if out is not None:
            out[...] = result
            return out
        return result
    if out is None:
        out = np.empty((n, *meta.shape[1:]), dtype=meta.dtype)
    if not out.flags.c_contiguous:
        raise StoreError(f"{meta.key}: rows must be read into a contiguous array")
    flat = memoryview(out.reshape(-1).view(np.uint8).data) if n else memoryview(b"")
    rb = meta.row_bytes
    row = lo
    while row < hi:
        c = row // meta.chunk_rows
        c_end = min(hi, (c + 1) * meta.chunk_rows)
        offset = (row - c * meta.chunk_rows) * rb
        keys.read_into(meta.chunk_key(c), offset, flat[(row - lo) * rb: (c_end - lo) * rb])
        row = c_end
    return out
