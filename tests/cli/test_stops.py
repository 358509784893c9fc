"""Builds that stop early, through the real command line: SIGTERM (exit 143) and Ctrl-C (130) on a local
Dask cluster, and a full disk (exit 4, a real small tmpfs where we may mount one, else an injected
ENOSPC). Each says in one line what happened and how much is done, leaves no traceback, no lock and no
process behind, and a plain rerun then completes equal to a clean build."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from typer.testing import CliRunner

import tests.helpers  # noqa: F401  (registers the test-only extractors)
from affectcache.cli.main import app
from affectcache.store.lock import ModalityLock
from affectcache.store.manifest import write_manifest
from affectcache.store.runner import build
from affectcache.store.zarr_store import FeatureStore
from tests.helpers import make_items, store_snapshot

if TYPE_CHECKING:
    from collections.abc import Iterator

    from affectcache.extractors import MediaItem

REPO_ROOT = Path(__file__).resolve().parents[2]
NAME = "test-counting"
CLI = "import sys, tests.helpers; from affectcache.cli.main import main; sys.argv[0] = 'affectcache'; main()"
DONE_NOTE = r"(\d+) entries are complete and will not be redone"


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[list[MediaItem], Path]:
    (tmp_path / "media").mkdir()
    items = make_items(tmp_path / "media", [f"v{i:02d}" for i in range(16)])
    return items, write_manifest(items, tmp_path / "m.jsonl")


def _start(manifest: Path, store: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-c", CLI, "extract", NAME, "-m", str(manifest), "-s",
                             str(store), *extra], env=env, cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for_entries(store: Path, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if (store / NAME).exists() and len(FeatureStore(store, read_only=True).videos(NAME)) >= n:
            return
        time.sleep(0.1)
    pytest.fail(f"the build under test never wrote {n} entries (exit code {proc.poll()})")


def _live_processes(group: int) -> list[str]:
    """Processes of a process group that are still alive (zombies awaiting a reaper do not count)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            alive.append(stat.parent.name)
    return alive


def _assert_clean_stop(proc: subprocess.Popen[str], code: int, first_words: str, store: Path) -> int:
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    last = err.strip().splitlines()[-1]
    done = re.fullmatch(rf"error: {first_words}; {DONE_NOTE}(; rerun the same command to finish)?", last)
    assert done, err
    for noise in ("Traceback", "KeyboardInterrupt", "CommClosedError", "Compute Failed", "distributed."):
        assert noise not in err, err
    deadline = time.monotonic() + 20  # the cluster is shut down by the driver; its workers go with it
    while _live_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _live_processes(proc.pid) == []
    with ModalityLock(FeatureStore(store), NAME):  # released: a rerun from anywhere may build
        pass
    complete = int(done.group(1))
    assert complete == len(FeatureStore(store, read_only=True).videos(NAME))
    return complete


def _assert_rerun_equals_clean(items: list[MediaItem], store: Path, tmp_path: Path, before: int) -> None:
    report = build(NAME, items, store, workers=0)
    assert len(report.skipped) == before
    assert sorted(report.written + report.skipped) == [it.video_id for it in items]
    clean = tmp_path / "clean.zarr"
    build(NAME, items, clean, workers=0)
    got, want = store_snapshot(FeatureStore(store), NAME), store_snapshot(FeatureStore(clean), NAME)
    assert got.keys() == want.keys()
    for vid in want:
        for key in want[vid]:
            np.testing.assert_array_equal(got[vid][key], want[vid][key])


@pytest.mark.slow
def test_sigterm_stops_a_dask_build_cleanly_with_143(corpus: tuple[list[MediaItem], Path],
                                                    tmp_path: Path) -> None:
    items, manifest = corpus
    store = tmp_path / "s.zarr"
    proc = _start(manifest, store, "--workers", "2", "--set", "sleep_s=0.3")
    _wait_for_entries(store, 2, proc)
    os.kill(proc.pid, signal.SIGTERM)  # the driver only, as `kill` and Kubernetes do
    complete = _assert_clean_stop(proc, 143, "stopped by SIGTERM", store)
    assert complete < len(items)
    _assert_rerun_equals_clean(items, store, tmp_path, complete)


@pytest.mark.slow
def test_ctrl_c_stops_a_dask_build_without_worker_tracebacks(corpus: tuple[list[MediaItem], Path],
                                                            tmp_path: Path) -> None:
    _items, manifest = corpus
    store = tmp_path / "s.zarr"
    proc = _start(manifest, store, "--workers", "2", "--set", "sleep_s=0.3")
    _wait_for_entries(store, 2, proc)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole process group
    _assert_clean_stop(proc, 130, "interrupted", store)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 256 kB tmpfs (needs root); remounted larger by the test to 'free space'."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                       check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}); test_injected_enospc covers the same path")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True, timeout=10)


@pytest.mark.slow
def test_full_disk_on_a_real_tmpfs_exits_4_and_resumes(corpus: tuple[list[MediaItem], Path],
                                                       small_tmpfs: Path, tmp_path: Path) -> None:
    items, manifest = corpus
    store = small_tmpfs / "s.zarr"
    proc = _start(manifest, store, "--workers", "2")
    complete = _assert_clean_stop(proc, 4, f"no space left on the device holding {re.escape(str(store))}: "
                                           "free space and rerun", store)
    assert complete < len(items)
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_tmpfs)], check=True, timeout=10)
    _assert_rerun_equals_clean(items, store, tmp_path, complete)


def test_injected_enospc_exits_4_with_one_line_and_resumes(corpus: tuple[list[MediaItem], Path],
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    items, manifest = corpus
    store = tmp_path / "s.zarr"
    real_write = FeatureStore.write_fragment
    calls = []

    def write_until_full(self: FeatureStore, name: str, entries: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(entries))
        if len(calls) > 1:  # the disk fills up while the second task writes its fragment
            path = store / name / "fragments" / "x" / "values" / "c" / "0"
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_write(self, name, entries, *args, **kwargs)

    monkeypatch.setattr(FeatureStore, "write_fragment", write_until_full)
    args = ["extract", NAME, "-m", str(manifest), "-s", str(store), "-w", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.stderr
    complete = calls[0]  # the first task's fragment was committed
    assert 0 < complete < len(items)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: no space left on the device holding {store}: free space and rerun; "
        f"{complete} entries are complete and will not be redone")
    monkeypatch.setattr(FeatureStore, "write_fragment", real_write)  # space freed
    _assert_rerun_equals_clean(items, store, tmp_path, complete)
