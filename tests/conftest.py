"""Shared fixtures: synthetic media, test-only extractors, and the --integration tier."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

from hypothesis import settings

# CI must not turn red on a new random example found by chance: run the property tests on a fixed
# sequence there (locally they keep exploring).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--integration", action="store_true", default=False,
                     help="also run tests that need real weights or a GPU")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--integration"):
        return
    skip = pytest.mark.skip(reason="needs --integration (real weights or a GPU)")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of small synthetic clips shared by the session (never modified by tests)."""
    from affectcache.extractors.testing.synthetic import write_test_clip

    root = tmp_path_factory.mktemp("media")
    write_test_clip(root / "a.mp4", duration_s=1.0)
    write_test_clip(root / "b.mp4", duration_s=2.0, tone_hz=660.0)
    write_test_clip(root / "c.mp4", duration_s=0.6, tone_hz=220.0)
    write_test_clip(root / "silent_video.mp4", duration_s=1.0, audio=False)
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n")
    data = (root / "b.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    return root


@pytest.fixture
def store_path(tmp_path: Path) -> Iterator[Path]:
    """A fresh store location."""
    return tmp_path / "features.zarr"


@pytest.fixture(scope="session")
def asset_home() -> Path:
    """``AFFECTCACHE_HOME`` holding every registered model asset, verified (fetched once per session)."""
    from tests.asset_cache import ensure_test_assets

    return ensure_test_assets()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch intra-op thread for the test (restored after): tiny models train several times faster
    on one thread than with two fighting over a shared CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
