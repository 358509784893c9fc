"""FeatureStore: self-describing features in a Zarr v3 hierarchy, keyed by modality and video.

On-disk layout (format 2; readable with plain ``zarr`` and ``xarray.open_zarr``, no affectcache needed)::

    <store>/                              attrs["affectcache"] = {"layout": 2, "created": ...}
    <store>/<modality>/                   attrs["affectcache"] = provenance of the live data;
                                          attrs["affectcache_catalog"] = {"format": 2, "generation": G}
    <store>/<modality>/fragments/<id>/    immutable fragments: the rows of several entries concatenated
                                          (values, frame/time_s or start_s/end_s, mask; video_id, n_rows)
    <store>/<modality>/_log/<G>/          the catalog: commit records v<version>, checkpoints c<version>
    <store>/labels/<track>/               same layout, for label tracks (valence, arousal, ...)
    <store>/_affectcache/locks/           build locks (one file per modality being built)

See :mod:`affectcache.store.format.fragments` and :mod:`affectcache.store.format.catalog`. An entry exists
once the catalog commit naming it is written (the commit point; a crashed writer leaves only unreferenced
fragments, which nothing reads). Workers write fragments under fresh names, so no two writers ever touch the
same key; the driver commits. Failure records are appended to the same log.

Provenance at the modality group: ``extractor``, ``version``, ``modality_kind``, ``config`` (full),
``config_fingerprint`` (output-affecting fields only, chained with upstream fingerprints), ``upstream``,
``model`` {id, revision, sha256}, ``libraries``, ``created``. Reopening a modality with another
extractor, version, fingerprint or model is refused (:class:`ProvenanceMismatchError`). A whole-modality
rebuild (:meth:`FeatureStore.begin_rebuild`) writes a new generation beside the live one and switches
the modality's ``zarr.json`` to it (one atomic write) when complete.

Stores of format 1 (one Zarr group per video entry) are detected and refused with a message naming
``affectcache store upgrade`` (:mod:`affectcache.store.format.upgrade`), which converts them in place.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import itertools
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import zarr
from zarr.errors import ContainsGroupError

from affectcache.extractors.core.errors import UnknownExtractorError
from affectcache.extractors.core.provenance import library_versions, stable_hash, utc_now
from affectcache.extractors.core.records import ROW_KEYS, FeatureArray, ModalityKind
from affectcache.extractors.core.registry import did_you_mean, get_extractor_cls
from affectcache.store.errors import (
    FeatureNotFoundError,
    OldLayoutError,
    ProvenanceMismatchError,
    StoreError,
)
from affectcache.store.format.catalog import LOG_GROUP, Catalog, CatalogState
from affectcache.store.format.fragments import (
    FRAGMENTS_GROUP,
    STRING_DTYPE,
    ArrayMeta,
    FragmentInfo,
    group_bytes,
    new_fragment_id,
    parse_array_meta,
    read_rows,
    shard_layout_ok,
    write_fragment,
)
from affectcache.store.ids import validate_video_id
from affectcache.store.kv import Keys, LocalKeys, ZarrKeys
from affectcache.store.packed import PackedModality

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    import xarray

logger = logging.getLogger(__name__)

LAYOUT_VERSION = 2
"""Store format: 1 = one Zarr group per video entry (upgrade with ``affectcache store upgrade``),
2 = fragments + catalog."""
CATALOG_ATTR = "affectcache_catalog"
REBUILD_ATTR = "affectcache_rebuild"
LABELS_GROUP = "labels"
PRIVATE_GROUP = "_affectcache"
_MODALITY_NAME = re.compile(r"^(labels/)?[a-z0-9][a-z0-9_.-]*$")
# Identity fields: a modality reopened with any of these different would mix incompatible rows.
IDENTITY_KEYS = ("extractor", "version", "modality_kind", "config_fingerprint", "model")
_READ_ATTEMPTS = 4
LOAD_THREADS = 4
"""Threads a large ``load`` reads fragments with."""
PARALLEL_LOAD_BYTES = 64 << 20
"""Loads of at least this many bytes of values read their fragments in parallel."""


@dataclass(frozen=True, kw_only=True)
class EntryState:
    """What the store knows about one video entry of a modality."""

    video_id: str
    """The entry's video id."""
    complete: bool
    """True once committed (always, for entries the catalog lists)."""
    n_rows: int | None
    """Rows written."""
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
        self._root_group: zarr.Group | None = None
        local = self.local_path
        if not (read_only and local is not None and _is_v3_group(local)):
            self._open_root()
        # A local store opened read-only is read through plain files; zarr opens it only when asked
        # (listing groups, a fragment in a codec read through zarr): a status or a listing is
        # milliseconds, and zarr's open alone was most of them.
        self._keys: Keys = LocalKeys(local) if local is not None else ZarrKeys(self._root.store,
                                                                                self._root.path)
        # Modalities this object is rebuilding: reads and writes go to the new generation.
        self._views: dict[str, tuple[str, dict[str, Any]]] = {}
        self._catalogs: dict[tuple[str, str], Catalog] = {}
        self._metas: dict[str, ArrayMeta] = {}  # fragment array metadata never changes

    def _open_root(self) -> zarr.Group:
        mode: Literal["r", "a"] = "r" if self.read_only else "a"
        kwargs: dict[str, Any] = {"mode": mode, "use_consolidated": False}
        if self.storage_options:
            kwargs["storage_options"] = self.storage_options
        try:
            root = zarr.open_group(self.url, zarr_format=3, **kwargs)
        except FileNotFoundError as exc:
            raise FeatureNotFoundError(f"no feature store at {self.url}") from exc
        except ContainsGroupError:
            # Mode "a" checks, then creates: another process created the store in between. Open theirs.
            root = zarr.open_group(self.url, zarr_format=3, **{**kwargs, "mode": "r+"})
        if not self.read_only and "affectcache" not in root.attrs:
            root.update_attributes({"affectcache": {"layout": LAYOUT_VERSION, "created": utc_now()}})
        self._root_group = root
        return root

    @property
    def _root(self) -> zarr.Group:
        return self._root_group if self._root_group is not None else self._open_root()

    def __repr__(self) -> str:
        return f"FeatureStore({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Reopen on the worker rather than pickling zarr handles.
        return {"url": self.url, "read_only": self.read_only, "storage_options": self.storage_options,
                "views": self._views}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], read_only=state["read_only"],  # type: ignore[misc]
                      storage_options=state["storage_options"])
        self._views = dict(state.get("views") or {})

    @property
    def keys(self) -> Keys:
        """Byte-level access to the store (fragments, catalog)."""
        return self._keys

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
            raise FeatureNotFoundError(f"{path!r} is not in the store {self.url}"
                                       f"{self._suggest(path)}") from None
        if not isinstance(node, zarr.Group):
            raise StoreError(f"{path!r} in {self.url} is an array, expected a group")
        return node

    def _suggest(self, path: str) -> str:
        """`` (did you mean ...?)`` for a mistyped modality or label track (an entry path gets none)."""
        if path.count("/") > (1 if path.startswith(f"{LABELS_GROUP}/") else 0):
            return ""
        return did_you_mean(path, self.modalities() + [label_modality(t) for t in self.label_tracks()])

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.url} was opened read-only")

    # ---- modalities -------------------------------------------------------------------------------
    def modalities(self) -> list[str]:
        """Names of the feature modalities in the store (label tracks excluded)."""
        names = [k for k in self._child_groups("") if k not in (LABELS_GROUP, PRIVATE_GROUP)]
        return sorted(names)

    def label_tracks(self) -> list[str]:
        """Names of the label tracks (``valence`` for ``labels/valence``)."""
        return sorted(self._child_groups(LABELS_GROUP))

    def _child_groups(self, path: str) -> list[str]:
        """Names of the groups directly under ``path`` ("" = the root); empty when it is absent."""
        if self.local_path is None:  # object stores: zarr lists them
            if path and path not in self._root:
                return []
            return list((self._group(path) if path else self._root).group_keys())
        names = []
        for name in self._keys.list(path):
            if name.startswith(".") or name == "zarr.json":
                continue
            key = f"{path}/{name}/zarr.json" if path else f"{name}/zarr.json"
            raw = self._keys.get(key)
            if raw is None:
                continue  # a folder that is no Zarr node (zarr ignores it too)
            try:
                node = json.loads(raw).get("node_type")
            except (ValueError, AttributeError) as exc:
                raise StoreError(f"{key} in {self.url} is unreadable ({exc}); the store was damaged "
                                 "outside affectcache") from exc
            if node == "group":
                names.append(name)
        return names

    def has_modality(self, name: str) -> bool:
        """Whether the modality group exists (it may still hold no entries)."""
        return self._keys.get(f"{check_modality_name(name)}/zarr.json") is not None

    def modality_attrs(self, name: str) -> dict[str, Any]:
        """The modality group's attributes, read fresh (FeatureNotFoundError when absent)."""
        raw = self._keys.get(f"{check_modality_name(name)}/zarr.json")
        if raw is None:
            raise FeatureNotFoundError(f"{name!r} is not in the store {self.url}{self._suggest(name)}")
        try:
            attrs: dict[str, Any] = json.loads(raw).get("attributes") or {}
        except ValueError as exc:
            raise StoreError(f"{name}/zarr.json in {self.url} is unreadable: {exc}") from exc
        return attrs

    def _head(self, name: str) -> tuple[str, dict[str, Any]]:
        """(generation, provenance) this object reads and writes for ``name``."""
        if name in self._views:
            return self._views[name]
        attrs = self.modality_attrs(name)
        if "affectcache" not in attrs:
            raise StoreError(f"{name!r} in {self.url} has no affectcache provenance; it was not "
                             "written by affectcache")
        catalog = attrs.get(CATALOG_ATTR)
        if not isinstance(catalog, dict) or "generation" not in catalog:
            raise OldLayoutError(
                f"modality {name!r} in {self.url} has the per-video layout of an older affectcache; "
                f"convert the store in place with `affectcache store upgrade -s {self.url}`")
        return str(catalog["generation"]), dict(attrs["affectcache"])

    def provenance(self, name: str) -> dict[str, Any]:
        """The provenance record stored at the modality group."""
        # Read fresh every time: another process (or store object) may have rebuilt the modality.
        if name in self._views:
            return dict(self._views[name][1])
        attrs = self.modality_attrs(name)
        if "affectcache" not in attrs:
            raise StoreError(f"{name!r} in {self.url} has no affectcache provenance; it was not "
                             "written by affectcache")
        return dict(attrs["affectcache"])

    def _catalog(self, name: str) -> Catalog:
        generation, _ = self._head(name)
        key = (name, generation)
        catalog = self._catalogs.get(key)
        if catalog is None:
            catalog = self._catalogs[key] = Catalog(self._keys, name, generation)
        return catalog

    def commit_log(self, name: str) -> Catalog:
        """The commit log of the generation this object reads and writes (for compaction, upgrade)."""
        return self._catalog(check_modality_name(name))

    def catalog(self, name: str) -> CatalogState:
        """The committed state of a modality: entries, their fragments and rows, failure records."""
        return self._catalog(check_modality_name(name)).state()

    def _create_modality(self, name: str, provenance: Mapping[str, Any]) -> bool:
        """Create the group of a new modality; False when someone else created it first."""
        if name.startswith(f"{LABELS_GROUP}/") and self._keys.get(f"{LABELS_GROUP}/zarr.json") is None:
            self._keys.put_new(f"{LABELS_GROUP}/zarr.json", group_bytes({}))
        generation = new_generation()
        Catalog(self._keys, name, generation).create()
        self._keys.put_many([(f"{name}/{FRAGMENTS_GROUP}/zarr.json", group_bytes({}))])
        return self._keys.put_new(f"{name}/zarr.json", group_bytes({
            "affectcache": dict(provenance), CATALOG_ATTR: {"format": LAYOUT_VERSION,
                                                            "generation": generation}}))

    def init_modality(self, name: str, provenance: Mapping[str, Any], *, overwrite: bool = False) -> None:
        """Create the modality group, or check that the existing one has the same identity.

        ``overwrite`` deletes the modality first (immediately; the build runner instead rebuilds beside
        the live data with :meth:`begin_rebuild`).

        Raises:
            ProvenanceMismatchError: The modality exists with another extractor, version, fingerprint or
                model and ``overwrite`` is false.
            OldLayoutError: The modality has the per-video layout of an older affectcache.
        """
        self._writable()
        check_modality_name(name)
        prov = json.loads(json.dumps(dict(provenance)))  # attrs must be plain JSON
        if overwrite and self.has_modality(name):
            logger.info("overwrite: deleting modality %s from %s", name, self.url)
            self.delete(name)
        if not self.has_modality(name) and self._create_modality(name, prov):
            return
        self._head(name)  # refuses an old layout before comparing identities
        old = self.provenance(name)
        diffs = identity_differences(old, prov)
        if diffs:
            raise ProvenanceMismatchError(
                f"modality {name!r} in {self.url} was built differently: {'; '.join(diffs)}. "
                f"Mixing would corrupt it: rebuild it (`affectcache rebuild {name} ...` or "
                "--overwrite), or write to another store")
        if old.get("libraries") != prov.get("libraries"):
            logger.warning("modality %s: library versions differ from those it was created with "
                           "(%s now vs %s); config and model are unchanged, so new entries are added",
                           name, prov.get("libraries"), old.get("libraries"))

    def begin_rebuild(self, name: str, provenance: Mapping[str, Any]) -> None:
        """Start (or resume) rebuilding a whole modality beside its live data.

        This object then reads and writes the new generation; other readers keep seeing the live one
        until :meth:`finish_rebuild` switches. A rebuild that crashes leaves the live data readable, and
        the next rebuild with the same identity resumes the pending generation.
        """
        self._writable()
        check_modality_name(name)
        prov = json.loads(json.dumps(dict(provenance)))
        if not self.has_modality(name):
            self.init_modality(name, prov)
            return
        attrs = self.modality_attrs(name)
        pending = attrs.get(REBUILD_ATTR)
        if (isinstance(pending, dict) and not identity_differences(pending.get("provenance") or {}, prov)
                and self._keys.get(f"{name}/{LOG_GROUP}/{pending.get('generation')}/zarr.json")):
            generation = str(pending["generation"])
            logger.info("%s: resuming the pending rebuild (generation %s)", name, generation)
        else:
            generation = new_generation()
            Catalog(self._keys, name, generation).create()
            attrs[REBUILD_ATTR] = {"generation": generation, "provenance": prov}
            self._keys.put(f"{name}/zarr.json", group_bytes(attrs))
        self._views[name] = (generation, prov)

    def finish_rebuild(self, name: str) -> None:
        """Switch a modality to the generation :meth:`begin_rebuild` started, and drop the old one."""
        if name not in self._views:
            return
        generation, prov = self._views.pop(name)
        attrs = self.modality_attrs(name)
        old = attrs.get(CATALOG_ATTR) or {}
        attrs = {"affectcache": prov, CATALOG_ATTR: {"format": LAYOUT_VERSION, "generation": generation}}
        self._keys.put(f"{name}/zarr.json", group_bytes(attrs))  # the switch: one atomic write
        logger.info("%s: switched to the rebuilt data (generation %s replaces %s)", name, generation,
                    old.get("generation"))
        keep = set(Catalog(self._keys, name, generation).state().fragment_rows)
        self._keys.delete_trees(f"{name}/{FRAGMENTS_GROUP}/{f}" for f in self._keys.list(
            f"{name}/{FRAGMENTS_GROUP}") if f != "zarr.json" and f not in keep)
        stale = [f"{name}/{LOG_GROUP}/{gen}" for gen in self._keys.list(f"{name}/{LOG_GROUP}")
                 if gen not in ("zarr.json", generation)]
        # A modality rebuilt from the per-video layout leaves its old entry groups: garbage now too.
        stale += [f"{name}/{k}" for k in self._keys.list(name)
                  if k not in (FRAGMENTS_GROUP, LOG_GROUP, "zarr.json") and not k.startswith(".")]
        self._keys.delete_trees(stale)

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
        """Delete a whole modality, or only some of its entries (their failure records too).

        Deleted entries' rows stay in their fragments as garbage until the next compaction.
        """
        self._writable()
        check_modality_name(name)
        if not self.has_modality(name):
            return
        if video_ids is None:
            self._keys.delete_tree(name)
            self._views.pop(name, None)
            for key in [k for k in self._catalogs if k[0] == name]:
                del self._catalogs[key]
            return
        ids = [validate_video_id(v) for v in video_ids]
        if ids:
            self._catalog(name).add(remove=ids, op="delete")

    # ---- entries ----------------------------------------------------------------------------------
    def entry_states(self, name: str) -> dict[str, EntryState]:
        """State of every committed entry of a modality."""
        state = self.catalog(name)
        out = {}
        for vid in state.videos():
            e = state[vid]
            out[vid] = EntryState(video_id=vid, complete=True, n_rows=e.n_rows, source=e.source,
                                  warning=e.attrs.get("warning"))
        return out

    def videos(self, name: str) -> list[str]:
        """Sorted ids of the committed entries of a modality."""
        return list(self.catalog(name).videos())

    def has(self, name: str, video_id: str) -> bool:
        """True only if the entry is committed."""
        check_modality_name(name)
        if not self.has_modality(name):
            return False
        return validate_video_id(video_id) in self.catalog(name)

    def _kind(self, name: str) -> ModalityKind:
        kind: ModalityKind = self._head(name)[1]["modality_kind"]
        return kind

    def write_fragment(self, name: str, items: Sequence[tuple[FeatureArray, Mapping[str, Any] | None]],
                       ) -> FragmentInfo:
        """Write entries as one new fragment, *without* committing it (a worker's half of a write)."""
        self._writable()
        check_modality_name(name)
        kind = self._kind(name)
        seen: set[str] = set()
        for feats, _ in items:
            vid = validate_video_id(feats.video_id)
            if feats.kind != kind:
                raise StoreError(f"{name}: entry {vid} has {feats.kind!r} rows but the modality is "
                                 f"{kind!r}")
            if vid in seen:
                raise StoreError(f"{name}: entry {vid} appears twice in one write")
            seen.add(vid)
        return write_fragment(self._keys, name, kind, [(f, dict(src or {})) for f, src in items])

    def commit(self, name: str, fragments: Sequence[FragmentInfo] = (), *,
               failures: Mapping[str, Mapping[str, Any]] | None = None,
               resolved: Iterable[str] = ()) -> None:
        """Make written fragments' entries visible and record failures, in one atomic commit."""
        self._writable()
        resolved = list(resolved)
        if fragments or failures or resolved:
            self._catalog(check_modality_name(name)).add(fragments, failures=failures, resolved=resolved)

    def write(self, name: str, feats: FeatureArray, *, source: Mapping[str, Any] | None = None) -> None:
        """Write one entry (replacing any previous one) and commit it."""
        self.commit(name, [self.write_fragment(name, [(feats, source)])])

    def write_many(self, name: str, items: Iterable[tuple[FeatureArray, Mapping[str, Any] | None]],
                   *, fragment_mb: float = 256.0) -> list[str]:
        """Write many entries as few fragments (a commit per fragment of about ``fragment_mb``)."""
        written: list[str] = []
        batch: list[tuple[FeatureArray, Mapping[str, Any] | None]] = []
        size = 0

        def flush() -> None:
            nonlocal size
            if batch:
                self.commit(name, [self.write_fragment(name, batch)])
                written.extend(f.video_id for f, _ in batch)
                batch.clear()
                size = 0

        for feats, source in items:
            if any(f.video_id == feats.video_id for f, _ in batch):
                flush()
            batch.append((feats, source))
            size += feats.values.nbytes
            if size >= fragment_mb * 1e6:
                flush()
        flush()
        return written

    def _meta(self, name: str, fragment: str, key: str) -> ArrayMeta | None:
        path = f"{name}/{FRAGMENTS_GROUP}/{fragment}/{key}"
        meta = self._metas.get(path)
        if meta is None:
            raw = self._keys.get(f"{path}/zarr.json")
            if raw is None:
                return None
            meta = parse_array_meta(path, raw)
            if meta.inner_rows and shard_layout_ok(self._keys, meta):
                meta = dataclasses.replace(meta, direct=True)
            self._metas[path] = meta
        return meta

    def _zarr_array(self, key: str) -> zarr.Array[Any]:
        node = self._root[key]
        if not isinstance(node, zarr.Array):
            raise StoreError(f"{key} in {self.url} is a group, expected an array")
        return node

    def _read_rows(self, name: str, fragment: str, key: str, lo: int, hi: int,
                   out: np.ndarray | None = None) -> np.ndarray:
        meta = self._meta(name, fragment, key)
        if meta is None:
            raise FileNotFoundError(f"{name}/{FRAGMENTS_GROUP}/{fragment}/{key}")
        return read_rows(self._keys, meta, lo, hi, out, zarr_open=self._zarr_array)

    def read(self, name: str, video_id: str) -> FeatureArray:
        """One committed entry as a :class:`FeatureArray`."""
        check_modality_name(name)
        vid = validate_video_id(video_id)
        kind = self._kind(name)
        for attempt in range(_READ_ATTEMPTS):
            entry = self.catalog(name).get(vid)
            if entry is None:
                raise FeatureNotFoundError(
                    f"{name}/{vid} is not in {self.url}; build it with "
                    f"`affectcache extract {name} --only {vid} ...`")
            lo, hi = entry.start, entry.start + entry.n_rows
            try:
                arrays = {key: self._read_rows(name, entry.fragment, key, lo, hi)
                          for key in ("values", *ROW_KEYS[kind], *(("mask",) if entry.has_mask else ()))}
            except FileNotFoundError:
                if attempt == _READ_ATTEMPTS - 1:
                    raise
                continue  # compacted away under us: the refreshed catalog points at the new copy
            return FeatureArray(video_id=vid, kind=kind, attrs=dict(entry.attrs), **arrays)
        raise AssertionError("unreachable")

    def read_many(self, name: str, video_ids: Iterable[str] | None = None,
                  *, batch_mb: float = 256.0) -> Iterator[FeatureArray]:
        """Entries of a modality (all committed ones by default, in id order), loaded in batches."""
        ids = self.videos(name) if video_ids is None else [validate_video_id(v) for v in video_ids]
        state = self.catalog(name)
        batch: list[str] = []
        rows = 0
        row_bytes = max(1, self.row_bytes(name))
        for vid in ids:
            batch.append(vid)
            entry = state.get(vid)
            rows += entry.n_rows if entry is not None else 0
            if rows * row_bytes >= batch_mb * 1e6:
                yield from self.load(name, batch).entries()
                batch, rows = [], 0
        if batch:
            yield from self.load(name, batch).entries()

    def row_bytes(self, name: str) -> int:
        """Bytes of one row of values (64 for text; 0 for a modality without entries)."""
        state = self.catalog(name)
        for vid in state.videos()[:1]:
            meta = self._meta(name, state[vid].fragment, "values")
            return meta.row_bytes if meta is not None and not meta.string else 64
        return 0

    def load(self, name: str, videos: Iterable[str] | None = None) -> PackedModality:
        """A whole modality (or the given entries, in that order) in memory as one packed result.

        Rows are read straight into the result (one ranged read per run of consecutive rows of a
        fragment): no per-entry objects, no intermediate copies.
        """
        check_modality_name(name)
        wanted = None if videos is None else [validate_video_id(v) for v in videos]
        for attempt in range(_READ_ATTEMPTS):
            try:
                return self._load(name, wanted)
            except FileNotFoundError:
                if attempt == _READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _load(self, name: str, wanted: list[str] | None) -> PackedModality:
        _, prov = self._head(name)
        kind: ModalityKind = prov["modality_kind"]
        state = self.catalog(name)
        ids = state.videos() if wanted is None else wanted
        missing = [v for v in ids if v not in state] if wanted is not None else []
        if missing:
            raise FeatureNotFoundError(f"{name}: {len(missing)} entries are not in {self.url} "
                                       f"(first: {missing[:5]})")
        names, frag, start, counts, has_mask = state.columns(ids)
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        n = int(offsets[-1])
        if len(ids):
            first = self._meta(name, names[int(frag[0])], "values")
            if first is None:
                raise FileNotFoundError(f"{name}/{FRAGMENTS_GROUP}/{names[int(frag[0])]}")
            shape, dtype = first.shape[1:], (STRING_DTYPE if first.string else first.dtype)
        else:
            shape, dtype = (), np.dtype(np.float32)
        values = np.empty((n, *shape), dtype=dtype)
        row_arrays = {key: np.empty(n, dtype=np.int64 if key == "frame" else np.float64)
                      for key in ROW_KEYS[kind]}
        mask = np.ones(n, dtype=bool)
        def read_run(run: tuple[int, int, int, int, bool]) -> None:
            k, lo, hi, out_lo, any_mask = run
            fragment = names[k]
            meta = self._meta(name, fragment, "values")
            if meta is None:
                raise FileNotFoundError(f"{name}/{FRAGMENTS_GROUP}/{fragment}")
            if meta.shape[1:] != shape:
                raise StoreError(f"{name}: fragment {fragment} has feature shape {meta.shape[1:]}, "
                                 f"others {shape}; rebuild the modality")
            out_hi = out_lo + hi - lo
            self._read_rows(name, fragment, "values", lo, hi, values[out_lo:out_hi])
            for key, arr in row_arrays.items():
                self._read_rows(name, fragment, key, lo, hi, arr[out_lo:out_hi])
            if any_mask:
                self._read_rows(name, fragment, "mask", lo, hi, mask[out_lo:out_hi])

        runs = list(_runs(frag, start, counts, has_mask, offsets))
        if values.nbytes >= PARALLEL_LOAD_BYTES:
            # Pieces of a few tens of MB, so one large (compacted) fragment is read in parallel too.
            step = max(1, (PARALLEL_LOAD_BYTES // 2) // max(1, values[:1].nbytes))
            runs = [(k, a, min(a + step, hi), out_lo + a - lo, any_mask)
                    for k, lo, hi, out_lo, any_mask in runs for a in range(lo, hi, step)]
        if len(runs) > 1 and values.nbytes >= PARALLEL_LOAD_BYTES:
            # Large reads overlap well (file reads release the GIL; object stores answer in parallel);
            # every run fills its own slice of the preallocated result.
            with cf.ThreadPoolExecutor(LOAD_THREADS, thread_name_prefix="affectcache-load") as pool:
                list(pool.map(read_run, runs))  # re-raises the first error
        else:
            for run in runs:
                read_run(run)
        attrs = state.attrs_of(ids)
        return PackedModality(modality=name, kind=kind, video_ids=tuple(ids), offsets=offsets,
                              values=values, mask=mask, row_arrays=row_arrays, entry_attrs=attrs,
                              provenance=prov)

    def open_dataset(self, name: str, video_ids: Sequence[str] | None = None) -> xarray.Dataset:
        """Lazy (dask-backed) view of a whole modality: every entry's rows stacked along ``row``.

        One dask task per fragment (the graph grows with fragments, not entries). Rows are in storage
        order; the ``video_id`` dimension lists the entries in that order with their ``row_start`` and
        ``n_rows``, and the per-row ``entry`` coordinate indexes it. Provenance is in
        ``ds.attrs["affectcache"]``, each entry's extractor attrs in ``ds.attrs["entry_attrs"][video_id]``;
        the ``feature`` axis is labelled where the extractor names its columns
        (:meth:`~affectcache.extractors.core.base.Extractor.feature_names`). Text values are loaded
        eagerly (strings do not chunk usefully).
        """
        import dask.array as da
        import xarray as xr
        from dask.delayed import delayed

        state = self.catalog(name)
        ids = state.videos() if video_ids is None else [validate_video_id(v) for v in video_ids]
        if not ids:
            raise FeatureNotFoundError(f"modality {name!r} in {self.url} has no committed entries")
        unknown = [v for v in ids if v not in state] if video_ids is not None else []
        if unknown:
            raise FeatureNotFoundError(f"{name}: {unknown[:5]} are not in {self.url}")
        names, frag, start, counts, _ = state.columns(ids)
        # Storage order: by fragment, then row, so each fragment is one block (one task).
        perm = np.lexsort((start, frag))
        # Object arrays throughout: indexing and slicing them is C-level, no per-entry Python.
        order_arr = np.array(ids, dtype=object)
        if (perm[1:] < perm[:-1]).any():  # mostly already in storage order (ids sorted per fragment)
            order_arr, frag, counts = order_arr[perm], frag[perm], counts[perm]
        kind = self._kind(name)
        first = self._meta(name, names[int(frag[0])], "values")
        if first is None:
            raise FileNotFoundError(f"{name}/{FRAGMENTS_GROUP}/{names[int(frag[0])]}")
        keys = ("values", *ROW_KEYS[kind], "mask")
        columns: dict[str, list[Any]] = {k: [] for k in keys}
        cuts = np.concatenate([[0], np.flatnonzero(frag[1:] != frag[:-1]) + 1, [len(frag)]]).tolist()
        for a, b in itertools.pairwise(cuts):
            n = int(counts[a:b].sum())
            # The ids travel as one numpy array: dask would walk (and hash) a list item by item.
            part = delayed(self._fragment_block, pure=False)(name, order_arr[a:b])
            for key in keys:
                shape = (n, *first.shape[1:]) if key == "values" else (n,)
                dtype = first.dtype if key == "values" else np.dtype(
                    {"frame": np.int64, "mask": np.bool_}.get(key, np.float64))
                columns[key].append(da.from_delayed(part[key], shape=shape, dtype=dtype))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        data_vars: dict[str, Any] = {}
        for key, parts in columns.items():
            stacked = (np.concatenate([p.compute() for p in parts]) if key == "values" and first.string
                       else da.concatenate(parts, axis=0))
            dims = ("row", *tuple(f"feature_{i}" if i > 1 else "feature" for i in range(1, stacked.ndim)))
            data_vars[key] = (dims, stacked)
        data_vars["row_start"] = ("video_id", starts)
        data_vars["n_rows"] = ("video_id", counts)
        coords: dict[str, Any] = {"video_id": ("video_id", order_arr),
                                  "entry": ("row", np.repeat(np.arange(len(order_arr), dtype=np.int32),
                                                             counts))}
        provenance = self.provenance(name)
        features = _feature_names(provenance)
        values = data_vars["values"][1]
        if features is not None and values.ndim == 2 and values.shape[1] == len(features):
            coords["feature"] = ("feature", np.array(features))
        # Per-entry extractor attrs (fps sampled, warnings, layouts), by video id.
        entry_attrs = state.nonempty_attrs(None if video_ids is None else ids)
        return xr.Dataset(data_vars, coords=coords,
                          attrs={"affectcache": provenance, "entry_attrs": entry_attrs})

    def _fragment_block(self, name: str, vids: np.ndarray) -> dict[str, np.ndarray]:
        packed = self.load(name, vids.tolist())
        return {"values": packed.values, "mask": packed.mask, **packed.row_arrays}

    # ---- failures ---------------------------------------------------------------------------------
    def failures(self, name: str) -> dict[str, dict[str, Any]]:
        """Per-item failure records of a modality: ``{video_id: {error, message, time}}``."""
        if not self.has_modality(name):
            return {}
        return {k: dict(v) for k, v in self.catalog(name).failures.items()}

    def record_failures(self, name: str, failures: Mapping[str, Mapping[str, Any]],
                        *, resolved: Iterable[str] = ()) -> None:
        """Append failure records and drop those of ``resolved`` ids (called by the driver only)."""
        self.commit(name, failures=failures, resolved=resolved)


def _runs(frag: np.ndarray, start: np.ndarray, counts: np.ndarray, has_mask: np.ndarray,
          offsets: np.ndarray) -> Iterator[tuple[int, int, int, int, bool]]:
    """Entries stored back to back in one fragment, as runs: (fragment index, lo, hi, out_lo, any mask)."""
    if not len(frag):
        return
    # A run breaks where the fragment changes or the next entry does not start where this one ends.
    breaks = np.flatnonzero((frag[1:] != frag[:-1]) | (start[1:] != start[:-1] + counts[:-1])) + 1
    bounds = np.concatenate([[0], breaks, [len(frag)]])
    mask_cum = np.concatenate([[0], np.cumsum(has_mask)])
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        lo = int(start[a])
        yield (int(frag[a]), lo, lo + int(offsets[b] - offsets[a]), int(offsets[a]),
               bool(mask_cum[b] - mask_cum[a]))


def _is_v3_group(path: Path) -> bool:
    """Whether ``path`` holds a Zarr v3 group (what opening it read-only through zarr would accept)."""
    try:
        meta = json.loads((path / "zarr.json").read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("zarr_format") == 3 and meta.get("node_type") == "group"


def new_generation() -> str:
    """A fresh catalog generation name."""
    return new_fragment_id("g")


def _feature_names(provenance: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The column names the modality's extractor gives for its stored config (None: unnamed)."""
    try:
        cls = get_extractor_cls(str(provenance.get("extractor")))
    except UnknownExtractorError:
        return None  # written by something other than a registered extractor (predictions, labels)
    return cls(cls.config_type.from_dict(provenance["config"])).feature_names()


def identity_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
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
