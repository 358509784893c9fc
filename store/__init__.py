"""Feature store (Zarr v3), manifests, and the build runner: the public API.

```python
from affectcache.store import FeatureStore, build, load_manifest
```

Names are imported on first use (PEP 562), so ``import affectcache.store`` (which the CLI does for its
error classes) does not pull zarr, dask or the extractors in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from affectcache.store.align import align_feature_array, align_track
    from affectcache.store.errors import (
        FeatureNotFoundError,
        InvalidVideoIdError,
        LockHeldError,
        ManifestError,
        ProvenanceMismatchError,
        StoreError,
    )
    from affectcache.store.manifest import Manifest, load_manifest, write_manifest
    from affectcache.store.packed import PackedModality
    from affectcache.store.runner import BuildReport, build, build_many
    from affectcache.store.zarr_store import FeatureStore

_EXPORTS: dict[str, str] = {
    "FeatureStore": "zarr_store",
    "PackedModality": "packed",
    "build": "runner",
    "build_many": "runner",
    "BuildReport": "runner",
    "Manifest": "manifest",
    "load_manifest": "manifest",
    "write_manifest": "manifest",
    "align_track": "align",
    "align_feature_array": "align",
    "StoreError": "errors",
    "FeatureNotFoundError": "errors",
    "InvalidVideoIdError": "errors",
    "LockHeldError": "errors",
    "ManifestError": "errors",
    "ProvenanceMismatchError": "errors",
}

__all__ = [
    "BuildReport",
    "FeatureNotFoundError",
    "FeatureStore",
    "InvalidVideoIdError",
    "LockHeldError",
    "Manifest",
    "ManifestError",
    "PackedModality",
    "ProvenanceMismatchError",
    "StoreError",
    "align_feature_array",
    "align_track",
    "build",
    "build_many",
    "load_manifest",
    "write_manifest",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'affectcache.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"affectcache.store.{module}"), name)
    globals()[name] = value
    return value
