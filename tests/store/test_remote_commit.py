"""Commits through an fsspec filesystem that is neither local nor zarr's ``memory://`` path: an object-store
stand-in that counts requests, answers slowly and has only a conditional create (S3's ``If-None-Match``)
for exclusivity. Two committers race for every version; each commit must land exactly once."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from affectcache.extractors import FeatureArray
from affectcache.store.format.catalog import Catalog
from affectcache.store.zarr_store import FeatureStore
from tests.store.test_zarr_store import prov


class ObjectStoreFS(MemoryFileSystem):
    """In-memory objects with S3-like semantics: a conditional create is atomic, everything else is a
    plain request (a check-then-write done by a client is not), each one slow enough to interleave."""

    protocol = "objstore"
    lock = threading.Lock()
    requests: ClassVar[dict[str, int]] = {"create": 0, "create_conflict": 0, "other": 0}
    latency_s = 0.002

    def _request(self, kind: str) -> None:
        with self.lock:
            self.requests[kind] += 1
        time.sleep(self.latency_s)

    def pipe_file(self, path: str, value: Any, mode: str = "overwrite", **kwargs: Any) -> None:
        if mode != "create":
            self._request("other")
            super().pipe_file(path, value, mode=mode, **kwargs)
            return
        self._request("create")
        with self.lock:  # the server decides atomically
            if self.exists(path):
                self.requests["create_conflict"] += 1
                raise FileExistsError(path)
            super().pipe_file(path, value, mode="overwrite", **kwargs)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> Any:
        self._request("other")
        return super().cat_file(path, start=start, end=end, **kwargs)

    def exists(self, path: str, **kwargs: Any) -> bool:
        time.sleep(self.latency_s)  # a HEAD request: the answer may be stale by the time it is used
        return bool(super().exists(path, **kwargs))


@pytest.fixture
def object_store() -> Any:
    fsspec.register_implementation("objstore", ObjectStoreFS, clobber=True)
    url = f"objstore://race-{time.time_ns()}"
    yield url
    name = url.removeprefix("objstore://")
    for key in [k for k in MemoryFileSystem.store if k.lstrip("/").startswith(name)]:
        del MemoryFileSystem.store[key]


def _entry(vid: str, value: float) -> FeatureArray:
    return FeatureArray(video_id=vid, kind="frame", values=np.full((2, 3), value, np.float32),
                        frame=[0, 1], time_s=[0.0, 0.1])


def test_two_committers_racing_through_fsspec_commit_exactly_once(object_store: str) -> None:
    FeatureStore(object_store).init_modality("feat", prov())
    rounds = 12
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def committer(who: str) -> None:
        try:
            fs = FeatureStore(object_store)
            for i in range(rounds):
                fragment = fs.write_fragment("feat", [(_entry(f"{who}{i:02d}", i), None)])
                fs.catalog("feat")  # both read the same version, then race for the next one
                barrier.wait(timeout=60)
                fs.commit("feat", [fragment])
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    ObjectStoreFS.requests.update(create=0, create_conflict=0, other=0)
    threads = [threading.Thread(target=committer, args=(who,)) for who in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    # They really raced: every round one committer lost a version and retried.
    assert ObjectStoreFS.requests["create_conflict"] >= rounds
    reader = FeatureStore(object_store, read_only=True)
    expected = sorted(f"{who}{i:02d}" for who in "ab" for i in range(rounds))
    assert reader.videos("feat") == expected
    packed = reader.load("feat")
    for k, vid in enumerate(packed.video_ids):
        np.testing.assert_array_equal(packed.values[packed.offsets[k]: packed.offsets[k + 1]],
                                      np.full((2, 3), int(vid[1:]), np.float32))
    # Exactly once: one log version per commit (plus none lost or doubled).
    generation = reader.modality_attrs("feat")["affectcache_catalog"]["generation"]
    assert Catalog(reader.keys, "feat", generation).state().version == 2 * rounds - 1


def test_a_taken_version_is_refused_by_the_backend_not_by_a_check(object_store: str) -> None:
    fs = FeatureStore(object_store)
    fs.init_modality("feat", prov())
    assert fs.keys.put_new("feat/probe/zarr.json", b"first")
    before = dict(ObjectStoreFS.requests)
    assert not fs.keys.put_new("feat/probe/zarr.json", b"second")
    # The refusal came from the conditional create itself (one request), not a read before it.
    assert ObjectStoreFS.requests["create_conflict"] == before["create_conflict"] + 1
    assert ObjectStoreFS.requests["other"] == before["other"]
    assert fs.keys.get("feat/probe/zarr.json") == b"first"
