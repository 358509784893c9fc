"""What makes stored arrays self-describing: library versions, file hashes, timestamps."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

CORE_LIBRARIES: tuple[str, ...] = (
    "affectcache", "numpy", "scipy", "zarr", "av", "torch", "transformers", "dask", "distributed",
)


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Installed versions of the core libraries plus ``extra`` ones (absent packages are left out).

    Reads package metadata only; nothing is imported, so this is cheap on the driver.
    """
    versions = {"python": platform.python_version()}
    for name in (*CORE_LIBRARIES, *extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def sha256_file(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".json", ".task", ".tflite", ".txt", ".model")


def sha256_tree(root: str | Path, *, suffixes: tuple[str, ...] = WEIGHT_SUFFIXES) -> str:
    """sha256 over the relative names and bytes of the files under ``root`` (for local model folders)."""
    base = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in base.rglob("*") if p.is_file() and p.suffix in suffixes):
        digest.update(str(path.relative_to(base)).encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def utc_now() -> str:
    """Current UTC time as ISO-8601 text (seconds precision)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()

def stable_hash(payload: Any) -> str:
    """sha256 hex digest of a JSON-serialisable payload with sorted keys (order-independent)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
