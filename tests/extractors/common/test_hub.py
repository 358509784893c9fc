"""Hub models: which a config needs, the local cache, offline and unreachable refusals (no network:
an address nothing listens on stands in for an unreachable hub)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from affectcache.extractors import Extractor, ExtractorConfig, FeatureArray, MediaItem
from affectcache.extractors.common.hub import (
    HubModel,
    cached_path,
    check_model_available,
    fetch_model,
    hub_models,
)
from affectcache.extractors.core.errors import ConfigError, ModelUnavailableError
from affectcache.store.runner import make_extractor

if TYPE_CHECKING:
    from pathlib import Path

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: connection refused at once, nothing leaves the host
MODEL = HubModel(extractor="clip-face", repo_id="org/tiny", revision="abc123")


def fake_hub_cache(root: Path, repo_id: str = "org/tiny", revision: str = "abc123") -> Path:
    """A hub cache folder holding one snapshot, laid out as huggingface_hub writes it."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / revision).write_text(commit)
    return snapshot


def test_hub_models_of_configs(tmp_path: Path) -> None:
    assert hub_models(make_extractor("clip-face")) == (
        HubModel(extractor="clip-face", repo_id="openai/clip-vit-base-patch16", revision=None),)
    pinned = make_extractor("wavlm", {"revision": "r1"})
    assert hub_models(pinned)[0].describe() == "microsoft/wavlm-large@r1"
    assert hub_models(make_extractor("clip-face", {"model": str(tmp_path)})) == ()  # local folder
    assert hub_models(make_extractor("mfcc")) == ()
    assert hub_models(make_extractor("face")) == ()  # pinned assets carry a sha256


def test_cached_model_passes_offline_and_missing_is_refused(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = fake_hub_cache(tmp_path)
    assert cached_path(MODEL, cache_dir=tmp_path) == snapshot
    check_model_available(MODEL, cache_dir=tmp_path)  # no network needed
    assert fetch_model(MODEL, cache_dir=tmp_path) == snapshot
    other = HubModel(extractor="wavlm", repo_id="org/absent", revision="v1")
    with pytest.raises(ModelUnavailableError) as info:
        check_model_available(other, cache_dir=tmp_path)
    message = str(info.value)
    assert "org/absent@v1" in message
    assert "HF_HUB_OFFLINE" in message
    assert "affectcache models fetch wavlm" in message
    assert "--set wavlm.model=" in message
    assert "\n" not in message
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE is set"):
        fetch_model(other, cache_dir=tmp_path)


def test_unreachable_hub_is_refused_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    other = HubModel(extractor="wavlm", repo_id="org/absent", revision=None)
    with pytest.raises(ModelUnavailableError, match=r"org/absent@main .*cannot be looked up"):
        check_model_available(other, cache_dir=tmp_path, endpoint=UNREACHABLE, timeout_s=2)
    with pytest.raises(ModelUnavailableError, match=r"cannot fetch org/absent@main"):
        fetch_model(other, cache_dir=tmp_path, endpoint=UNREACHABLE, timeout_s=2)


@dataclass(frozen=True, kw_only=True)
class _NoConfig(ExtractorConfig):
    """Nothing to configure."""


class _HubLoader(Extractor[_NoConfig]):
    """Loads like transformers does when the hub is unreachable: an OSError."""

    name = "test-hub-loader"
    version = "1"
    modality_kind = "frame"
    config_type = _NoConfig

    def model_info(self) -> dict[str, Any]:
        return {"id": "org/tiny", "revision": None, "sha256": None}

    def _load(self) -> Any:
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files,\nand couldn't "
                      "find them in the cached files.")

    def extract(self, item: MediaItem, upstream: Any = None) -> FeatureArray:
        raise NotImplementedError


def test_load_failure_names_model_and_remedy_in_one_line() -> None:
    with pytest.raises(ModelUnavailableError) as info:
        _ = _HubLoader().model
    message = str(info.value)
    assert "'org/tiny'" in message
    assert "affectcache models fetch test-hub-loader" in message
    assert "\n" not in message


def test_unavailable_cuda_device_is_a_config_error() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=r"device='cuda'.*--set device=cpu"):
        _NoConfig(device="cuda").check_device()
    _NoConfig(device="cpu").check_device()
