"""`affectcache manifest` / `corpora` and `status --by-split` through Typer's CliRunner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typer.testing import CliRunner

from affectcache.cli.main import app
from affectcache.store.manifest import load_manifest
from affectcache.store.zarr_store import FeatureStore
from tests.store.corpora.corpus_fixtures import corpus_clip, write_affwild2

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["corpus_clip"]

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_corpora_lists_every_adapter() -> None:
    code, out, _ = run("corpora")
    assert code == 0
    for name in ("aff-wild2", "mosei", "fiv2", "bah", "meld", "sewa"):
        assert name in out


def test_manifest_writes_manifest_and_labels_then_status_by_split(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_affwild2(tmp_path / "corpus", corpus_clip)
    out, store = tmp_path / "aff.csv", str(tmp_path / "s.zarr")
    code, stdout, stderr = run("manifest", "aff-wild2", "--root", str(root), "--media", str(root / "media"),
                               "--out", str(out), "--store", store)
    assert code == 0, stderr
    assert "aff-wild2: 5 items (train 3, val 1, test 1)" in stdout
    assert "labels/valence 4" in stdout
    assert load_manifest(out).get("vidA").corpus == "aff-wild2"
    assert FeatureStore(store).videos("labels/arousal") == ["vidA", "vidB", "video2_left", "video2_right"]

    code, stdout, _ = run("status", "-s", store, "-m", str(out), "--by-split")
    assert code == 0
    rows = [line.split() for line in stdout.splitlines()]
    assert ["labels/valence", "aff-wild2", "train", "3", "3", "100.0%"] in rows
    assert ["labels/valence", "aff-wild2", "test", "0", "1", "0.0%"] in rows
    code, _, stderr = run("status", "-s", store, "--by-split")
    assert code == 2
    assert "--by-split needs --manifest" in stderr


def test_manifest_refusals_exit_2_and_write_nothing(tmp_path: Path, corpus_clip: Path) -> None:
    root = write_affwild2(tmp_path / "corpus", corpus_clip, media_names=("vidA", "video2", "vidB"))
    out, store = tmp_path / "aff.jsonl", tmp_path / "s.zarr"
    code, stdout, stderr = run("manifest", "aff-wild2", "--root", str(root), "--media", str(root / "media"),
                               "--out", str(out), "--store", str(store), "--strict")
    assert code == 2
    assert "VA_Estimation_Challenge/Test_Set/vidC.txt: warning: label file without media" in stderr
    assert not out.exists()
    assert not store.exists()

    code, stdout, stderr = run("manifest", "aff-wild2", "--root", str(root), "--media", str(root / "media"),
                               "--out", str(out))
    assert code == 0
    assert "VA_Estimation_Challenge/Test_Set/vidC.txt: warning: label file without media" in stderr
    assert "1 warning(s)" in stdout
    assert len(load_manifest(out)) == 4

    code, _, stderr = run("manifest", "nope", "--root", str(root), "--out", str(out))
    assert code == 2
    assert "no corpus adapter named 'nope'" in stderr
    code, _, stderr = run("manifest", "aff-wild2", "--root", str(tmp_path / "absent"), "--out", str(out))
    assert code == 2
    assert "is not a folder" in stderr
