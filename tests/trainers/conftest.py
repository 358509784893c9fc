"""Shared fixtures of the trainer tests."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest

from tests.trainers.va_store import build_va_store

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="session")
def va_store_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The planted VA store, built once per session (copy it before writing)."""
    return build_va_store(tmp_path_factory.mktemp("va-store"))


@pytest.fixture
def va_store(va_store_template: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the planted store and its manifest."""
    store, manifest = va_store_template
    shutil.copytree(store, tmp_path / store.name)
    shutil.copy(manifest, tmp_path / manifest.name)
    return tmp_path / store.name, tmp_path / manifest.name
