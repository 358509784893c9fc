"""Hub models an extractor config needs: which, whether they are in the local cache, fetching them.

An extractor loads a model from a Hugging Face hub id (+ pinned revision) or from a local folder. Only
hub ids need the network, and only once: :func:`fetch_model` resolves one into the hub cache
(``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``, or a given ``cache_dir``), after which a node
without network runs with ``HF_HUB_OFFLINE=1``. :func:`check_model_available` runs before a build creates
anything: a model that is neither cached nor reachable is refused in one line that names the model id
and the remedies, instead of transformers retrying for half a minute and failing inside a worker.

Tests pass ``endpoint`` (an address nothing listens on) or a ``cache_dir`` laid out like the hub cache;
nothing here is reached over the network in the test suite.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affectcache.extractors.common.pretrained import is_local
from affectcache.extractors.core.errors import ModelUnavailableError

if TYPE_CHECKING:
    from affectcache.extractors.core.base import Extractor

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True, kw_only=True)
class HubModel:
    """One hub repository an extractor config loads."""

    extractor: str
    """The extractor (registry name) whose config names it."""
    repo_id: str
    """Hub id, ``org/name``."""
    revision: str | None
    """Pinned revision (commit, tag or branch); None = the hub's ``main`` on the day (pin one)."""

    def describe(self) -> str:
        """``org/name@revision`` (``@main`` when unpinned)."""
        return f"{self.repo_id}@{self.revision or 'main'}"


def hub_models(extractor: Extractor[Any]) -> tuple[HubModel, ...]:
    """The hub repositories ``extractor``'s config loads (none when its weights are local files).

    Read from :meth:`Extractor.model_info`: a model identified by an id and a revision but no content
    hash, whose id is not a local path, is a hub reference (local weights, pinned assets and lexicons all
    carry a sha256).
    """
    info = extractor.model_info()
    ref = info.get("id")
    if not isinstance(ref, str) or info.get("sha256") is not None or ":" in ref or is_local(ref):
        return ()
    if "/" not in ref and not info.get("revision"):
        return ()  # a preset name resolved elsewhere, not a hub id
    revision = info.get("revision")
    return (HubModel(extractor=extractor.name, repo_id=ref, revision=str(revision) if revision else None),)


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids network access (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The hub cache folder in use: ``cache_dir``, else ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or "~/.cache/huggingface"
    return Path(home).expanduser() / "hub"


def cached_path(model: HubModel, *, cache_dir: str | Path | None = None) -> Path | None:
    """The local snapshot folder of ``model`` at its revision, or None when it is not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = snapshot_download(model.repo_id, revision=model.revision, local_files_only=True,
                                 cache_dir=str(hub_cache_dir(cache_dir)))
    except (LocalEntryNotFoundError, FileNotFoundError):
        return None
    return Path(str(path))


def remedies(model: HubModel) -> str:
    """What a user can do when ``model`` is not available here."""
    return (f"run `affectcache models fetch {model.extractor}` where the hub is reachable (into this "
            f"cache, or copy the cache folder here / point HF_HUB_CACHE at it), then run with "
            f"HF_HUB_OFFLINE=1; or give local weights: --set {model.extractor}.model=/path/to/folder")


def fetch_model(model: HubModel, *, cache_dir: str | Path | None = None, endpoint: str | None = None,
                timeout_s: float = DEFAULT_TIMEOUT_S) -> Path:
    """Download ``model`` (every file of the repository at its revision) into the hub cache.

    Returns:
        The local snapshot folder (already cached: no network access).

    Raises:
        ModelUnavailableError: Offline, the hub cannot be reached, or no such repository / revision.
    """
    cached = cached_path(model, cache_dir=cache_dir)
    if cached is not None:
        return cached
    where = hub_cache_dir(cache_dir)
    if hub_offline():
        raise ModelUnavailableError(f"{model.extractor}: cannot fetch {model.describe()}: HF_HUB_OFFLINE is "
                                    "set; unset it on a machine that can reach the hub")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(model.repo_id, revision=model.revision, cache_dir=str(where),
                                 endpoint=endpoint, etag_timeout=timeout_s)
    except Exception as exc:  # network, auth, missing repo: all mean "not fetched"; the cause is kept
        raise ModelUnavailableError(
            f"{model.extractor}: cannot fetch {model.describe()} into {where}: {_one_line(exc)} -- check "
            "the network (HF_ENDPOINT, proxy), the id and the revision") from exc
    logger.info("%s: fetched %s -> %s", model.extractor, model.describe(), path)
    return Path(str(path))


def check_model_available(model: HubModel, *, cache_dir: str | Path | None = None,
                          endpoint: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Refuse (before anything is created) a model that is neither cached nor fetchable now.

    Cached: fine, no network. Offline (``HF_HUB_OFFLINE``): refused. Otherwise one short look-up of the
    repository at its revision (no download; the build's workers download it): unreachable or unknown is
    refused.

    Raises:
        ModelUnavailableError: Naming the model id, the cache folder and the remedies.
    """
    if cached_path(model, cache_dir=cache_dir) is not None:
        return
    where = hub_cache_dir(cache_dir)
    if hub_offline():
        raise ModelUnavailableError(f"{model.extractor}: model {model.describe()} is not in the hub cache "
                                    f"{where} and HF_HUB_OFFLINE is set: {remedies(model)}")
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(model.repo_id, revision=model.revision, cache_dir=str(where), endpoint=endpoint,
                          etag_timeout=timeout_s, dry_run=True)
    except Exception as exc:  # any failure to look it up means the workers could not load it either
        raise ModelUnavailableError(
            f"{model.extractor}: model {model.describe()} is not in the hub cache {where} and cannot be "
            f"looked up on the hub ({_one_line(exc)}): {remedies(model)}") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:240]}{'...' if len(text) > 240 else ''}"
