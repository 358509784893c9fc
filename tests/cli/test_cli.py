"""The CLI: thin commands, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest
from typer.testing import CliRunner

import tests.helpers  # noqa: F401  (registers the test-only extractors)
from affectcache.cli.main import app
from affectcache.store.manifest import write_manifest
from affectcache.store.zarr_store import FeatureStore
from tests.helpers import make_items

if TYPE_CHECKING:
    from pathlib import Path

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_manifest(make_items(tmp_path, ["a", "b", "bad_c"]), tmp_path / "m.jsonl")


def test_list_and_show_config() -> None:
    code, out, _ = run("list")
    assert code == 0
    assert "mfcc" in out
    code, out, _ = run("show-config", "mfcc")
    assert code == 0
    assert "n_mfcc: 15" in out
    assert "# Number of cepstral coefficients kept" in out
    code, _, err = run("show-config", "nope")
    assert code == 2
    assert "no extractor named 'nope'" in err


def test_extract_reports_item_failures_with_exit_1(manifest: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    code, out, err = run("extract", "test-counting", "-m", str(manifest), "-s", store, "--workers", "0")
    assert code == 1
    assert "2 written" in out
    assert "1 failed" in out
    assert "bad_c" in err
    code, out, _ = run("extract", "test-counting", "-m", str(manifest), "-s", store, "--workers", "0",
                       "--only", "a", "--only", "b")
    assert code == 0
    assert "2 already complete" in out
    code, out, _ = run("status", "-s", store, "-m", str(manifest))
    assert code == 0
    assert "test-counting" in out
    assert "failed bad_c: BadMediaError" in out
    code, out, _ = run("status", "-s", store, "--json")
    rows = json.loads(out)
    assert rows[0]["complete"] == 2
    assert rows[0]["failed"] == 1


def test_config_changes_are_refused_with_exit_2(manifest: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0", "--only", "a")
    code, _, err = run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0",
                       "--set", "dim=7", "--only", "a")
    assert code == 2
    assert "error: modality 'test-counting'" in err
    assert "dim: 4 -> 7" in err
    assert "Traceback" not in err
    code, _, err = run("extract", "test-counting", "-m", str(manifest), "-s", store, "--set", "dimm=7")
    assert code == 2
    assert "unknown keys ['dimm']" in err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dim: 7\n")
    code, _, _ = run("rebuild", "test-counting", "-s", store, "-m", str(manifest), "-w", "0",
                     "--config", str(cfg), "--only", "a")
    assert code == 2  # --only keeps the modality, so a config change is still refused
    code, _out, _ = run("rebuild", "test-counting", "-s", store, "-m", str(manifest), "-w", "0",
                       "--config", str(cfg))
    assert code == 1  # rebuilt all; bad_c still fails
    assert FeatureStore(store).provenance("test-counting")["config"]["dim"] == 7


def test_rebuild_only_uses_stored_config(manifest: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0", "--set", "dim=3",
        "--only", "a")
    code, out, _ = run("rebuild", "test-counting", "-s", store, "-m", str(manifest), "-w", "0", "--only", "a")
    assert code == 0
    assert "1 written" in out
    assert FeatureStore(store).read("test-counting", "a").values.shape[1] == 3


def test_bad_manifest_and_usage_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,path\n../x,a.mp4\n")
    code, _, err = run("extract", "mfcc", "-m", str(bad), "-s", str(tmp_path / "s.zarr"))
    assert code == 2
    assert "invalid video id" in err
    code, _, err = run("extract", "mfcc", "-m", str(bad), "-s", str(tmp_path / "s.zarr"), "-w", "0",
                       "--scheduler", "tcp://127.0.0.1:1")
    assert code == 2


def test_cli_import_loads_no_heavy_library() -> None:
    # `affectcache --help` stays fast because nothing heavy is imported until a command needs it.
    code = ("import sys; from affectcache.cli.main import app; "
            "print([m for m in ('torch', 'transformers', 'zarr', 'dask', 'xarray') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_run = subprocess.run([sys.executable, "-m", "affectcache.cli.main", "--help"], capture_output=True,
                              text=True, check=True)
    assert "extract" in help_run.stdout


def test_extract_several_modalities_with_per_modality_settings(manifest: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    code, out, err = run("extract", "test-derived", "test-counting", "-m", str(manifest), "-s", store,
                         "-w", "0", "--set", "test-counting.dim=2", "--set", "test-derived.scale=3")
    assert code == 1  # bad_c fails in test-counting; test-derived skips it (counted once, upstream)
    assert "test-counting: 2 written" in out
    assert "test-derived: 2 written, 0 already complete, 0 failed, 1 not applicable" in out
    assert sum("bad_c" in line for line in err.splitlines()) == 1  # printed once
    fs = FeatureStore(store)
    assert fs.provenance("test-counting")["config"]["dim"] == 2
    assert fs.provenance("test-derived")["config"]["scale"] == 3.0
    code, _, err = run("extract", "test-derived", "test-counting", "-m", str(manifest), "-s", store,
                       "--set", "dim=2")
    assert code == 2
    assert "name the modality" in err
    tuned = str(tmp_path / "tuned.zarr")
    code, out, _ = run("extract", "test-derived", "test-counting", "-m", str(manifest), "-s", tuned,
                       "-w", "0", "--set", "test-counting.dim=2", "--set", "test-derived.scale=3",
                       "--modality-threads", "2", "--decode-budget-mb", "0")
    assert code == 1
    assert "test-derived: 2 written" in out
    for name in ("test-counting", "test-derived"):
        for vid in FeatureStore(store).videos(name):
            np.testing.assert_array_equal(FeatureStore(tuned).read(name, vid).values,
                                          FeatureStore(store).read(name, vid).values)


# ---- models and devices are checked before anything is created (issue 17.1) ----------------------------
def test_unavailable_model_or_device_is_refused_before_the_modality_exists(manifest: Path,
                                                                          tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    # conftest sets HF_HUB_OFFLINE=1 and the default CLIP is not in this machine's hub cache
    code, _, err = run("extract", "clip-face", "-m", str(manifest), "-s", str(store), "-w", "0")
    assert code == 2
    assert "openai/clip-vit-base-patch16@main" in err
    assert "affectcache models fetch clip-face" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run("extract", "test-counting", "-m", str(manifest), "-s", str(store), "-w", "0",
                       "--set", "device=cuda")
    assert code == 2
    assert "device='cuda'" in err
    assert not store.exists() or not FeatureStore(store).modalities()


def test_modality_without_complete_entry_is_reconfigured(manifest: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    code, _, _ = run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0", "--only",
                     "bad_c")
    assert code == 1  # the modality exists, but nothing in it is complete
    code, _, err = run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0",
                       "--set", "dim=7", "--only", "a")
    assert code == 0, err
    assert FeatureStore(store).provenance("test-counting")["config"]["dim"] == 7
    code, _, err = run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0",
                       "--set", "dim=5", "--only", "b")
    assert code == 2  # now an entry is complete: a change is refused
    assert "dim: 7 -> 5" in err


def test_models_list_verify_fetch_use_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.extractors.common.test_hub import fake_hub_cache

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub_cache(tmp_path / "hub", "openai/clip-vit-base-patch16", "main")
    code, out, _ = run("models", "list", "clip-face", "wavlm", "--cache-dir", str(tmp_path / "hub"))
    assert code == 0
    assert "openai/clip-vit-base-patch16@main" in out
    assert "cached" in out.splitlines()[1]
    assert "missing" in out.splitlines()[2]
    code, _, err = run("models", "verify", "clip-face", "--cache-dir", str(tmp_path / "hub"))
    assert code == 0, err
    code, _, err = run("models", "verify", "clip-face", "wavlm", "--set", "wavlm.revision=r1",
                       "--cache-dir", str(tmp_path / "hub"))
    assert code == 1
    assert "microsoft/wavlm-large@r1 missing" in err
    code, _, err = run("models", "fetch", "wavlm", "--cache-dir", str(tmp_path / "hub"))
    assert code == 2
    assert "HF_HUB_OFFLINE" in err
    code, _, err = run("models", "fetch")
    assert code == 2


# ---- failure policy, stored configs, --set names, status (issue 17.2, 17.6, 17.8) ---------------------
def test_recorded_failures_are_not_retried_until_the_media_changes(manifest: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    code, _, err = run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0")
    assert code == 1
    assert sum("bad_c" in line for line in err.splitlines()) == 1  # printed once, as it failed
    code, out, err = run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0")
    assert code == 0, err
    assert "0 failed, 1 remain failed (see status; --retry-failed)" in out
    assert "bad_c" not in err
    code, out, _ = run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0",
                       "--retry-failed")
    assert code == 1
    assert "1 failed" in out
    (tmp_path / "bad_c.bin").write_bytes(b"y" * 5)  # the media changed: tried again
    code, out, _ = run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0")
    assert code == 1
    assert "remain failed" not in out
    code, out, _ = run("status", "-s", store, "-m", str(manifest))
    row = next(line for line in out.splitlines() if line.startswith("test-counting"))
    # complete 2, missing 0 (the failed item is counted once, as failed), incomplete 0, failed 1, n/a 0
    assert row.split()[3:9] == ["2", "0", "0", "1", "0", "0"]


def test_no_audio_track_is_not_applicable(media_dir: Path, tmp_path: Path) -> None:
    from affectcache.extractors.core.records import MediaItem

    m = write_manifest([MediaItem(video_id="talk", path=str(media_dir / "a.mp4")),
                        MediaItem(video_id="mute", path=str(media_dir / "silent_video.mp4"))],
                       tmp_path / "m.jsonl")
    store = str(tmp_path / "s.zarr")
    code, out, err = run("extract", "test-audio-level", "-m", str(m), "-s", store, "-w", "0")
    assert code == 0, err
    assert "test-audio-level: 1 written, 0 already complete, 0 failed, 1 not applicable" in out
    code, out, _ = run("status", "-s", store, "-m", str(m))
    assert "not applicable mute" in out
    assert "has no audio stream" in out
    assert "failed mute" not in out


def test_extract_keeps_the_stored_config_and_set_names_the_modality(manifest: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s.zarr")
    run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0", "--set", "dim=7",
        "--only", "a")
    code, _out, err = run("extract", "test-counting", "-m", str(manifest), "-s", store, "-w", "0",
                         "--only", "b")
    assert code == 0, err  # no --set: the stored dim=7 is used, not refused as a change
    assert FeatureStore(store).read("test-counting", "b").values.shape[1] == 7
    code, _, err = run("extract", "test-counting", "-m", str(manifest), "-s", store, "--set",
                       "test-countng.dim=3")
    assert code == 2
    assert "'test-countng' is not one of the names being built (test-counting) (did you mean " in err


def test_version_and_status_caps_long_lists(tmp_path: Path) -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert out.startswith("affectcache ")
    items = make_items(tmp_path, [f"bad_{i:02d}" for i in range(14)] + ["ok"])
    m = write_manifest(items, tmp_path / "m.jsonl")
    store = str(tmp_path / "s.zarr")
    run("extract", "test-counting", "-m", str(m), "-s", store, "-w", "0")
    _, out, _ = run("status", "-s", store)
    assert "... and 4 more; --all or --json" in out
    _, out, _ = run("status", "-s", store, "--all")
    assert "failed bad_13" in out


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")}


def test_dry_run_prints_the_plan_and_writes_nothing(manifest: Path, tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    # No store yet: everything would be built, through the upstream planned in the same call.
    code, out, err = run("extract", "test-counting", "test-derived", "-m", str(manifest), "-s", str(store),
                         "--dry-run")
    assert code == 0, err
    assert "test-counting: 3 to build, 0 complete, 0 failed and unchanged" in out
    assert "test-derived: 3 to build" in out
    assert not store.exists()
    run("extract", "test-counting", "-m", str(manifest), "-s", str(store), "-w", "0", "--only", "a",
        "--only", "bad_c")
    before = _tree(store)
    code, out, err = run("extract", "test-counting", "test-derived", "-m", str(manifest), "-s", str(store),
                         "--dry-run")
    assert code == 0, err
    assert "plan (dry run: nothing was written)" in out
    assert "test-counting: 1 to build, 1 complete, 1 failed and unchanged" in out
    assert "  build: b\n" in out
    assert "  failed and unchanged (--retry-failed): bad_c" in out
    # test-derived: a and b (b through test-counting built in the same call); bad_c failed upstream.
    assert "test-derived: 2 to build, 0 complete, 0 failed and unchanged, 1 not applicable" in out
    assert "  not applicable: bad_c: test-counting failed" in out
    # A changed config on a modality with complete entries: refused, exit 2, with the command to run.
    code, out, _ = run("extract", "test-counting", "-m", str(manifest), "-s", str(store), "--set", "dim=7",
                       "--dry-run")
    assert code == 2
    assert "test-counting: refused: built differently: config fingerprint" in out
    assert "(changed: dim: 4 -> 7)" in out
    assert "affectcache rebuild test-counting" in out
    code, out, _ = run("rebuild", "test-counting", "-m", str(manifest), "-s", str(store), "--dry-run")
    assert code == 0
    assert "test-counting: 3 to build, 0 complete" in out
    assert _tree(store) == before  # nothing written, not even a lock or a failure record
