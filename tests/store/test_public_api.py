"""``affectcache.store`` re-exports the public API lazily: the README's imports work, nothing heavy loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

import affectcache.store as store
from affectcache.store.manifest import load_manifest
from affectcache.store.runner import build, build_many
from affectcache.store.zarr_store import FeatureStore


def test_public_names_are_the_modules_objects() -> None:
    assert store.FeatureStore is FeatureStore
    assert store.build is build
    assert store.build_many is build_many
    assert store.load_manifest is load_manifest
    assert set(store.__all__) == set(store._EXPORTS)
    for name in store.__all__:
        assert getattr(store, name) is not None


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="nope"):
        store.nope  # type: ignore[attr-defined]  # noqa: B018


def test_importing_the_package_loads_neither_zarr_nor_dask() -> None:
    code = ("import sys, affectcache.store, affectcache.store.errors; "
            "print(sorted(m for m in ('zarr', 'dask', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
