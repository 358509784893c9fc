"""FeatureStore: self-describing features in a Zarr v3 hierarchy, keyed by modality and video.

On-disk layout (readable with plain ``zarr`` and ``xarray.open_zarr``, no affectcache needed)::

    <store>/                              attrs["affectcache"] = {"layout": 1, "created": ...}
    <store>/<modality>/                   attrs["affectcache"] = provenance (written once, at creation)
    <store>/<modality>/<video_id>/        attrs: n_rows, source {path, size, mtime, start_s, end_s},
                                                 attrs, written, complete (true, written LAST)
        values   (n_rows, ...)            float16/float32, or variable-length UTF-8 strings for text
        frame    (n_rows,) int64          } frame-level modalities (dimension "frame")
        time_s   (n_rows,) float64        }
        start_s  (n_rows,) float64        } segment / text / clip modalities (dimension "segment"/"clip")
        end_s    (n_rows,) float64        }
        mask     (n_rows,) bool           optional row validity
    <store>/labels/<track>/<video_id>/    same layout, for label tracks (valence, arousal, ...)
    <store>/_affectcache/locks/           build locks (one file per modality being built)
    <store>/_affectcache/failures/<modality>   attrs["failures"] = {video_id: {error, message, time}}

Provenance at the modality group: ``extractor``, ``version``, ``modality_kind``, ``config`` (full),
``config_fingerprint`` (output-affecting fields only, chained with upstream fingerprints), ``upstream``,
``model`` {id, revision, sha256}, ``libraries``, ``created``. Reopening a modality with another
extractor, version, fingerprint or model is refused (:class:`ProvenanceMismatchError`).

An entry without ``complete`` is treated as absent: a crashed writer leaves nothing a reader can see.
Workers only ever create per-video groups (the driver creates the modality group), so concurrent
writers never touch the same Zarr key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import zarr
from zarr.errors import ContainsGroupError, ZarrUserWarning

from affectcache.extractors.core.provenance import library_versions, stable_hash, utc_now
from affectcache.extractors.core.records import ROW_KEYS, FeatureArray, ModalityKind
from affectcache.store.errors import FeatureNotFoundError, ProvenanceMismatchError, StoreError
from affectcache.store.ids import validate_video_id
from affectcache.store.packed import PackedModality

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    import xarray

logger = logging.getLogger(__name__)

LAYOUT_VERSION = 1
LABELS_GROUP = "labels"
PRIVATE_GROUP = "_affectcache"
_MODALITY_NAME = re.compile(r"^(labels/)?[a-z0-9][a-z0-9_.-]*$")
# Identity fields: a modality reopened with any of these different would mix incompatible rows.
IDENTITY_KEYS = ("extractor", "version", "modality_kind", "config_fingerprint", "model")
ROW_DIM = {"frame": "frame", "segment": "segment", "text": "segment", "clip": "clip"}
TARGET_CHUNK_BYTES = 4 << 20
_ZARR_READ_ERRORS = (json.JSONDecodeError, KeyError, ValueError, TypeError)


@dataclass(frozen=True, kw_only=True)
class EntryState:
    """What the store knows about one video entry of a modality."""

    video_id: str
    """The entry's video id."""
    complete: bool
    """True once every array and attribute was written (the commit marker)."""
    n_rows: int | None
    """Rows written (None for incomplete entries)."""
    source: Mapping[str, Any] | None
    """Source facts recorded at write time (path, size, mtime, clip bounds)."""
    warning: str | None = None
    """The extractor's per-item warning (``attrs["warning"]``, e.g. no face in any frame), if any."""


SOURCE_KEYS = ("size", "mtime", "start_s", "end_s")


def source_changed(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> bool:
    """Whether the media an entry was built from changed (file size/mtime or clip bounds).

    Not comparable counts as unchanged: media that is gone now (keep what was built from it), or an entry
    written without source facts.
    """
    old = dict(recorded or {})
    if old.get("size") is None or current.get("size") is None:
        return False
    return any(old.get(k) != current.get(k) for k in SOURCE_KEYS)


def label_modality(track: str) -> str:
    """Store name of a label track (``valence`` → ``labels/valence``)."""
    return f"{LABELS_GROUP}/{track}"


def check_modality_name(name: str) -> str:
    """Return ``name`` if it is a valid modality group name, else raise :class:`StoreError`."""
    if not _MODALITY_NAME.match(name) or name == LABELS_GROUP:
        raise StoreError(f"invalid modality name {name!r}: expected [a-z0-9][a-z0-9_.-]* "
                         f"or labels/<track>")
    return name


class FeatureStore:
    """A feature store rooted at a local path or any fsspec URL (``s3://``, ``memory://``, ...).

    Args:
        url: Local directory (created if missing) or fsspec URL of the Zarr v3 root.
        read_only: Open without write access.
        storage_options: fsspec options for remote URLs.
    """

    def __init__(self, url: str | Path, *, read_only: bool = False,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = str(url)
        self.read_only = read_only
        self.storage_options = dict(storage_options or {})
        mode: Literal["r", "a"] = "r" if read_only else "a"
        kwargs: dict[str, Any] = {"mode": mode, "use_consolidated": False}
        if self.storage_options:
            kwargs["storage_options"] = self.storage_options
        try:
            self._root = zarr.open_group(self.url, zarr_format=3, **kwargs)
        except FileNotFoundError as exc:
            raise FeatureNotFoundError(f"no feature store at {self.url}") from exc
        except ContainsGroupError:
            # Mode "a" checks, then creates: another process created the store in between. Open theirs.
            self._root = zarr.open_group(self.url, zarr_format=3, **{**kwargs, "mode": "r+"})
        if not read_only and "affectcache" not in self._root.attrs:
            self._root.update_attributes({"affectcache": {"layout": LAYOUT_VERSION, "created": utc_now()}})

    def __repr__(self) -> str:
        return f"FeatureStore({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Reopen on the worker rather than pickling zarr handles.
        return {"url": self.url, "read_only": self.read_only, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], read_only=state["read_only"],  # type: ignore[misc]
                      storage_options=state["storage_options"])

    @property
    def local_path(self) -> Path | None:
        """The store's directory when it is on the local filesystem, else None."""
        if "://" in self.url and not self.url.startswith("file://"):
            return None
        return Path(self.url.removeprefix("file://"))

    def private_dir(self) -> Path | None:
        """Local directory for store-private files (locks), created as a Zarr group; None if remote."""
        root = self.local_path
        if root is None:
            return None
        if f"{PRIVATE_GROUP}/locks" not in self._root:
            self._writable()
            with contextlib.suppress(ContainsGroupError):  # created by a concurrent builder meanwhile
                self._root.require_group(f"{PRIVATE_GROUP}/locks")
        return root / PRIVATE_GROUP

    # ---- narrowing zarr's Array | Group union in one place ---------------------------------------
    def _group(self, path: str) -> zarr.Group:
        try:
            node = self._root[path]
        except KeyError:
            raise FeatureNotFoundError(f"{path!r} is not in the store {self.url}") from None
        if not isinstance(node, zarr.Group):
            raise StoreError(f"{path!r} in {self.url} is an array, expected a group")
        return node

    @staticmethod
    def _array(group: zarr.Group, name: str) -> zarr.Array[Any]:
        node = group[name]
        if not isinstance(node, zarr.Array):
            raise StoreError(f"{group.path}/{name} is a group, expected an array")
        return node

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.url} was opened read-only")

    # ---- modalities -------------------------------------------------------------------------------
    def modalities(self) -> list[str]:
        """Names of the feature modalities in the store (label tracks excluded)."""
        names = [k for k in self._root.group_keys() if k not in (LABELS_GROUP, PRIVATE_GROUP)]
        return sorted(names)

    def label_tracks(self) -> list[str]:
        """Names of the label tracks (``valence`` for ``labels/valence``)."""
        if LABELS_GROUP not in self._root:
            return []
        return sorted(self._group(LABELS_GROUP).group_keys())

    def has_modality(self, name: str) -> bool:
        """Whether the modality group exists (it may still hold no complete entries)."""
        return check_modality_name(name) in self._root

    def provenance(self, name: str) -> dict[str, Any]:
        """The provenance record stored at the modality group."""
        # Read fresh every time: another process (or store object) may have rebuilt the modality.
        attrs = _attrs(self._group(check_modality_name(name)))
        if "affectcache" not in attrs:
            raise StoreError(f"{name!r} in {self.url} has no affectcache provenance; it was not "
                             "written by affectcache")
        return dict(attrs["affectcache"])

    def init_modality(self, name: str, provenance: Mapping[str, Any], *, overwrite: bool = False) -> None:
        """Create the modality group, or check that the existing one has the same identity.

        Raises:
            ProvenanceMismatchError: The modality exists with another extractor, version, fingerprint or
                model and ``overwrite`` is false.
        """
        self._writable()
        check_modality_name(name)
        prov = json.loads(json.dumps(dict(provenance)))  # attrs must be plain JSON
        if name in self._root and overwrite:
            logger.info("overwrite: deleting modality %s from %s", name, self.url)
            self.delete(name)
        if name in self._root:
            old = self.provenance(name)
            diffs = _identity_differences(old, prov)
            if diffs:
                raise ProvenanceMismatchError(
                    f"modality {name!r} in {self.url} was built differently: {'; '.join(diffs)}. "
                    f"Mixing would corrupt it: rebuild it (`affectcache rebuild {name} ...` or "
                    "--overwrite), or write to another store")
            if old.get("libraries") != prov.get("libraries"):
                logger.warning("modality %s: library versions differ from those it was created with "
                               "(%s now vs %s); config and model are unchanged, so new entries are added",
                               name, prov.get("libraries"), old.get("libraries"))
            return
        group = self._root.require_group(name)
        group.update_attributes({"affectcache": prov})

    def init_label_track(self, track: str, *, source: str, description: str = "",
                         overwrite: bool = False) -> str:
        """Create ``labels/<track>`` (frame-level) and return its modality name."""
        name = label_modality(track)
        config = {"track": track, "source": source, "description": description}
        self.init_modality(name, {
            "extractor": "labels", "version": "1", "modality_kind": "frame", "config": config,
            "config_fingerprint": stable_hash(config), "upstream": {},
            "model": {"id": None, "revision": None, "sha256": None},
            "libraries": library_versions(), "created": utc_now(),
        }, overwrite=overwrite)
        return name

    def delete(self, name: str, video_ids: Iterable[str] | None = None) -> None:
        """Delete a whole modality, or only some of its entries (their failure records too)."""
        self._writable()
        check_modality_name(name)
        if name not in self._root:
            return
        if video_ids is None:
            del self._root[name]
            if self._failures_path(name) in self._root:
                del self._root[self._failures_path(name)]
            return
        group = self._group(name)
        ids = [validate_video_id(v) for v in video_ids]
        for vid in ids:
            if vid in group:
                del group[vid]
        self._update_failures(name, {}, resolved=ids)

    # ---- entries ----------------------------------------------------------------------------------
    def entry_states(self, name: str) -> dict[str, EntryState]:
        """State of every entry of a modality, complete or not."""
        group = self._group(check_modality_name(name))
        try:
            with warnings.catch_warnings():
                # A folder without metadata: a writer killed (or out of space) before its first write.
                warnings.filterwarnings("ignore", "Object at .* is not recognized", ZarrUserWarning)
                children = [(vid, _attrs(sub)) for vid, sub in group.groups()]
        except _ZARR_READ_ERRORS:
            # Some entry's metadata was cut short by a killed writer: read entries one by one.
            children = [(vid, self._entry_attrs(f"{name}/{vid}")) for vid in self._child_names(name)]
        states: dict[str, EntryState] = {}
        for vid, attrs in children:
            complete = attrs.get("complete") is True
            item_attrs = attrs.get("attrs") or {} if complete else {}
            states[vid] = EntryState(video_id=vid, complete=complete,
                                     n_rows=attrs.get("n_rows") if complete else None,
                                     source=attrs.get("source") if complete else None,
                                     warning=item_attrs.get("warning"))
        return states

    def _child_names(self, path: str) -> list[str]:
        from zarr.core.sync import sync

        async def names() -> list[str]:
            return [key async for key in self._root.store.list_dir(f"{self._root.path}/{path}".strip("/"))]

        return sorted(k for k in sync(names()) if k != "zarr.json")

    def _entry_attrs(self, path: str) -> dict[str, Any]:
        """Attributes of an entry group; empty when its metadata is missing or unreadable."""
        try:
            return _attrs(self._group(path))
        except (*_ZARR_READ_ERRORS, FeatureNotFoundError, StoreError):
            return {}

    def videos(self, name: str) -> list[str]:
        """Sorted ids of the complete entries of a modality."""
        return sorted(v for v, s in self.entry_states(name).items() if s.complete)

    def has(self, name: str, video_id: str) -> bool:
        """True only if the entry exists and is complete."""
        check_modality_name(name)
        return self._entry_attrs(f"{name}/{validate_video_id(video_id)}").get("complete") is True

    def write(self, name: str, feats: FeatureArray, *, source: Mapping[str, Any] | None = None) -> None:
        """Write one entry (replacing any previous one); the ``complete`` marker goes last."""
        self._writable()
        vid = validate_video_id(feats.video_id)
        prov = self.provenance(name)
        if feats.kind != prov["modality_kind"]:
            raise StoreError(f"{name}: entry {vid} has {feats.kind!r} rows but the modality is "
                             f"{prov['modality_kind']!r}")
        group = self._group(name).create_group(vid, overwrite=True, attributes={"complete": False})
        row_dim = ROW_DIM[feats.kind]
        for key, arr in feats.row_arrays().items():
            dims = (row_dim,) + (("feature",) if arr.ndim == 2 else
                                 tuple(f"feature_{i}" for i in range(1, arr.ndim)))
            group.create_array(key, data=arr, chunks=_row_chunks(arr), dimension_names=dims)
        group.update_attributes({
            "n_rows": feats.n_rows,
            "source": json.loads(json.dumps(dict(source or {}))),
            "attrs": json.loads(json.dumps(dict(feats.attrs))),
            "written": utc_now(),
            "complete": True,
        })

    def read(self, name: str, video_id: str) -> FeatureArray:
        """One complete entry as a :class:`FeatureArray`."""
        return self._read(name, validate_video_id(video_id), self.provenance(name)["modality_kind"])

    def _read(self, name: str, vid: str, kind: ModalityKind) -> FeatureArray:
        try:
            group = self._group(f"{name}/{vid}")
            attrs = _attrs(group)
        except _ZARR_READ_ERRORS:  # absent (FeatureNotFoundError is a KeyError) or cut short
            attrs = {}
        if attrs.get("complete") is not True:
            raise FeatureNotFoundError(
                f"{name}/{vid} is not (completely) in {self.url}; build it with "
                f"`affectcache extract {name} --only {vid} ...`")
        arrays: dict[str, Any] = {}
        for key in ("values", *ROW_KEYS[kind], "mask"):
            if key in group:
                arrays[key] = self._array(group, key)[...]
        return FeatureArray(video_id=vid, kind=kind, attrs=attrs.get("attrs") or {}, **arrays)

    def read_many(self, name: str, video_ids: Iterable[str] | None = None) -> Iterator[FeatureArray]:
        """Entries of a modality (all complete ones by default), in id order."""
        ids = self.videos(name) if video_ids is None else [validate_video_id(v) for v in video_ids]
        kind = self.provenance(name)["modality_kind"]
        for vid in ids:
            yield self._read(name, vid, kind)

    def load(self, name: str, videos: Iterable[str] | None = None) -> PackedModality:
        """A whole modality (or the given entries, in that order) in memory as one packed result."""
        prov = self.provenance(name)
        entries = list(self.read_many(name, videos))
        return PackedModality.from_entries(name, prov["modality_kind"], entries, provenance=prov)

    def open_dataset(self, name: str, video_ids: Sequence[str] | None = None) -> xarray.Dataset:
        """Lazy (dask-backed) view of a whole modality: every entry's rows stacked along ``row``.

        The ``video_id`` coordinate says which entry each row came from; provenance is in
        ``ds.attrs["affectcache"]``. Text values are loaded eagerly (strings do not chunk usefully).
        """
        import dask.array as da
        import xarray as xr

        ids = self.videos(name) if video_ids is None else [validate_video_id(v) for v in video_ids]
        if not ids:
            raise FeatureNotFoundError(f"modality {name!r} in {self.url} has no complete entries")
        kind = self.provenance(name)["modality_kind"]
        columns: dict[str, list[Any]] = {}
        row_owner: list[np.ndarray] = []
        for vid in ids:
            group = self._group(f"{name}/{vid}")
            for key in ("values", *ROW_KEYS[kind], "mask"):
                if key in group:
                    arr = self._array(group, key)
                    chunk = arr[...] if arr.dtype.kind in "TOU" else da.from_zarr(arr)
                    columns.setdefault(key, []).append(chunk)
            row_owner.append(np.full(int(_attrs(group)["n_rows"]), vid, dtype=object))
        data_vars: dict[str, Any] = {}
        for key, parts in columns.items():
            if len(parts) != len(ids):
                raise StoreError(f"{name}: array {key!r} is present in only some entries")
            stacked = (np.concatenate(parts) if isinstance(parts[0], np.ndarray)
                       else da.concatenate(parts, axis=0))
            dims = ("row", *tuple(f"feature_{i}" if i > 1 else "feature" for i in range(1, stacked.ndim)))
            data_vars[key] = (dims, stacked)
        return xr.Dataset(data_vars, coords={"video_id": ("row", np.concatenate(row_owner).astype(str))},
                          attrs={"affectcache": self.provenance(name)})

    # ---- failures ---------------------------------------------------------------------------------
    def failures(self, name: str) -> dict[str, dict[str, Any]]:
        """Per-item failure records of a modality: ``{video_id: {error, message, time}}``."""
        path = self._failures_path(name)
        if path not in self._root:
            return {}
        return dict(_attrs(self._group(path)).get("failures") or {})

    def record_failures(self, name: str, failures: Mapping[str, Mapping[str, Any]],
                        *, resolved: Iterable[str] = ()) -> None:
        """Add failure records and drop those of ``resolved`` ids (called by the driver only)."""
        self._writable()
        self._update_failures(name, failures, resolved=resolved)

    @staticmethod
    def _failures_path(name: str) -> str:
        # Kept apart from the modality group, whose metadata workers read while the driver records.
        return f"{PRIVATE_GROUP}/failures/{check_modality_name(name)}"

    def _update_failures(self, name: str, failures: Mapping[str, Mapping[str, Any]],
                         *, resolved: Iterable[str]) -> None:
        current = self.failures(name)
        changed = False
        for vid in resolved:
            changed |= current.pop(vid, None) is not None
        for vid, record in failures.items():
            current[vid] = dict(record)
            changed = True
        if changed:
            self._root.require_group(self._failures_path(name)).update_attributes({"failures": current})


def _attrs(group: zarr.Group) -> dict[str, Any]:
    """A group's attributes as plain JSON data (zarr types them as a recursive JSON union)."""
    attrs: dict[str, Any] = group.attrs.asdict()
    return attrs


def _row_chunks(arr: np.ndarray) -> tuple[int, ...]:
    """Chunk along rows only, aiming at a few MB per chunk (never one chunk per frame)."""
    n = max(int(arr.shape[0]), 1)
    row_bytes = max(int(np.prod(arr.shape[1:], dtype=np.int64)) * max(arr.dtype.itemsize, 1), 1)
    if arr.dtype.kind == "T":
        row_bytes = 256
    rows = int(min(n, max(1, TARGET_CHUNK_BYTES // row_bytes)))
    return (rows, *arr.shape[1:])


def _identity_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences in identity fields between two provenance records."""
    diffs: list[str] = []
    for key in IDENTITY_KEYS:
        if old.get(key) != new.get(key):
            if key == "config_fingerprint":
                changed = _config_changes(old.get("config") or {}, new.get("config") or {})
                detail = f" (changed: {', '.join(changed)})" if changed else ""
                if old.get("upstream") != new.get("upstream"):
                    detail += " (an upstream modality was rebuilt)"
                diffs.append(f"config fingerprint {str(old.get(key))[:12]} != "
                             f"{str(new.get(key))[:12]}{detail}")
            else:
                diffs.append(f"{key} {old.get(key)!r} != {new.get(key)!r}")
    return diffs


def _config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
