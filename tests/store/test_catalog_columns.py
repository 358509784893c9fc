"""The catalog's columnar paths (checkpoint merge, vectorised source check) against the per-entry rules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from affectcache.store.format.catalog import CatalogState, _pack
from affectcache.store.zarr_store import source_changed

if TYPE_CHECKING:
    from collections.abc import Mapping


def _record(version: int, entries: list[list[Any]], **more: Any) -> dict[str, Any]:
    return {"version": version, "time_s": 100.0 + version, "entries": entries, **more}


def _source(i: int, *, size: int | None = None, mtime: float | None = None) -> dict[str, Any]:
    return {"path": f"/m/{i}.mp4", "size": 10 + i if size is None else size,
            "mtime": 1.5 + i if mtime is None else mtime, "start_s": None, "end_s": None}


def _random_state(seed: int) -> CatalogState:
    """A checkpointed state with entries of every source shape, then an overlay of later records."""
    rng = np.random.default_rng(seed)
    state = CatalogState()
    version = 0
    sources: list[Mapping[str, Any]] = [
        _source(0), {"path": "/clip", "size": 5, "mtime": 2.0, "start_s": 0.5, "end_s": 1.5},
        {"path": "/gone", "size": None, "mtime": None, "start_s": None, "end_s": None},
        {"path": "/extra", "size": 7, "mtime": 3.0, "start_s": None, "end_s": None, "track": [1, 2]}]
    for step in range(3):
        entries = []
        for i in rng.choice(60, size=25, replace=False).tolist():
            src = dict(sources[int(rng.integers(len(sources)))])
            attrs = {"warning": "dark"} if i % 7 == 0 else {}
            entries.append([f"v{i:03d}", f"f{step}", i, int(rng.integers(0, 4)), bool(i % 2), src, attrs])
        state.apply(_record(version, entries, fragments={f"f{step}": 100}))
        version += 1
        state.apply(_record(version, [], remove=[f"v{int(i):03d}" for i in rng.choice(60, 3)]))
        version += 1
        if step == 1:
            state = CatalogState.from_checkpoint(*state.to_checkpoint())
    return state


def test_checkpoint_merge_keeps_every_entry_as_the_overlay_says() -> None:
    for seed in range(4):
        state = _random_state(seed)
        assert state._over, "the state must carry an overlay for this test to mean anything"
        again = CatalogState.from_checkpoint(*state.to_checkpoint())
        assert again.videos() == state.videos()
        assert [again[v] for v in again.videos()] == [state[v] for v in state.videos()]
        assert again.warnings() == state.warnings()
        assert again.live_rows() == state.live_rows()


def test_vectorised_source_check_matches_the_per_entry_rule() -> None:
    state = _random_state(7)
    rng = np.random.default_rng(3)
    current: dict[str, dict[str, Any]] = {}
    for i in range(70):  # some ids are not in the catalog at all
        vid = f"v{i:03d}"
        entry = state.get(vid)
        now = dict(entry.source) if entry is not None else _source(i)
        change = int(rng.integers(5))
        if change == 1:
            now["size"] = (now.get("size") or 0) + 1
        elif change == 2:
            now["mtime"] = 99.0
        elif change == 3:
            now["size"] = None  # media gone: not comparable
        elif change == 4:
            now["end_s"] = 9.0
        current[vid] = now
    expected = {v for v, now in current.items()
                if (e := state.get(v)) is not None and source_changed(e.source, now)}
    assert expected, "some entries must have changed for this test to mean anything"
    assert state.changed_sources(current) == expected
    # Also on a state read straight from a checkpoint (source columns still packed).
    checkpointed = CatalogState.from_checkpoint(*state.to_checkpoint())
    assert checkpointed.changed_sources(current) == expected


def test_checkpoints_with_every_optional_column_spelled_out_still_read() -> None:
    """Checkpoints written before absent / all-present columns were abbreviated."""
    state = _random_state(11)
    data, parts = state.to_checkpoint()
    for key in ("size", "mtime", "start_s", "end_s"):
        values = [e.source.get(key) for e in (state[v] for v in state.videos())]
        present = np.array([v is not None for v in values])
        filled = np.array([v if v is not None else 0 for v in values], dtype=np.float64)
        data["entries"][f"source_{key}"] = {"values": _pack(filled, "<f8"), "present": _pack(present, "|b1")}
    old = CatalogState.from_checkpoint(data, parts)
    assert [old[v].source for v in old.videos()] == [state[v].source for v in state.videos()]
    compact = state.to_checkpoint()[0]["entries"]
    assert compact["source_start_s"].keys() <= {"absent", "values", "present"}
