"""Fixtures of the LaScA tests: the real model assets (fetched once per session)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.asset_cache import ensure_test_assets

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def asset_home() -> Path:
    """``AFFECTCACHE_HOME`` holding every registered asset, verified."""
    return ensure_test_assets()
