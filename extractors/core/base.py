"""The extractor contract.

An extractor turns one :class:`~affectcache.extractors.core.records.MediaItem` into one
:class:`~affectcache.extractors.core.records.FeatureArray`. Construction is cheap (no weights): models load
lazily on first use, on the worker, and are never pickled. ``extract_batch`` lets fast backends batch rows
across videos; the default loops over ``extract``.

Derived extractors declare ``requires`` (modality names); the build runner hands them those modalities'
stored arrays, and their fingerprint chains the upstream fingerprints so rebuilding an upstream modality
marks them stale.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from affectcache.extractors.core.config import ExtractorConfig
from affectcache.extractors.core.errors import ConfigError, ExtractorError, ModelUnavailableError
from affectcache.extractors.core.provenance import library_versions, stable_hash, utc_now
from affectcache.extractors.core.records import FeatureArray, MediaItem, ModalityKind
from affectcache.extractors.media.decode_memo import NO_MEDIA, MediaNeeds

if TYPE_CHECKING:
    from pathlib import Path

C = TypeVar("C", bound=ExtractorConfig)

Upstream = Mapping[str, FeatureArray]
"""Stored arrays of the modalities an extractor ``requires``, keyed by modality name."""

NO_UPSTREAM: Upstream = {}


class Extractor(ABC, Generic[C]):
    """Base class of every extractor. Subclasses set the class attributes and implement
    :meth:`_load` and :meth:`extract`."""

    name: ClassVar[str]
    """Registry key and store group name (``[a-z0-9][a-z0-9_.-]*``)."""
    version: ClassVar[str]
    """Integer string bumped by hand whenever code changes alter the numbers written."""
    modality_kind: ClassVar[ModalityKind]
    """How rows are keyed (frame / segment / text / clip)."""
    config_type: ClassVar[type[ExtractorConfig]]
    """The config dataclass of this extractor."""
    requires: ClassVar[tuple[str, ...]] = ()
    """Modalities that must be in the store (complete) before this one can be built. Extractors whose
    inputs depend on the config (e.g. "embed whichever text modality is configured") override
    :meth:`upstream_modalities` instead."""
    libraries: ClassVar[tuple[str, ...]] = ()
    """Extra packages whose versions belong in provenance (beyond the core set)."""
    summary: ClassVar[str] = ""
    """One line for ``affectcache list``."""

    config: C

    def __init__(self, config: C | None = None) -> None:
        if config is None:
            config = self.config_type()  # type: ignore[assignment]
        if not isinstance(config, self.config_type):
            raise ConfigError(f"{self.name}: expected a {self.config_type.__name__}, "
                              f"got {type(config).__name__}")
        config.check()
        self.config = config
        self._model: Any = None

    # ---- model lifecycle ----------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The loaded model (or engine); loaded on first access, once per process."""
        if self._model is None:
            self.config.check_device()
            try:
                self._model = self._load()
            except ExtractorError:  # already ours, with its own remedy (e.g. a missing pinned asset)
                raise
            except OSError as exc:
                # transformers/hub report an unreachable hub, a missing repo or an empty folder as OSError
                # (multi-line): one line naming the model and what to do instead of an "internal error".
                raise ModelUnavailableError(
                    f"{self.name}: cannot load model {self.model_info().get('id')!r}: "
                    f"{' '.join(str(exc).split())[:300]} -- fetch it where the hub is reachable "
                    f"(`affectcache models fetch {self.name}`, then HF_HUB_OFFLINE=1 here) or give a local "
                    f"folder (--set {self.name}.model=/path)") from exc
        return self._model

    @abstractmethod
    def _load(self) -> Any:
        """Heavy imports and weight loading live here, and only here."""

    def feature_names(self) -> tuple[str, ...] | None:
        """Names of the value columns (the ``feature`` axis of ``FeatureStore.open_dataset``) where this
        config fixes them; None when the columns are unnamed (embeddings) or only known per item."""
        return None

    def model_info(self) -> dict[str, Any]:
        """Identity of the weights: ``{"id", "revision", "sha256"}``; None where not applicable.

        Compared when an existing modality is reopened, so swapped weights never mix with old rows.
        """
        return {"id": None, "revision": None, "sha256": None}

    def __getstate__(self) -> dict[str, Any]:
        # Weights must never travel to Dask workers: each worker loads its own copy lazily.
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    # ---- extraction -----------------------------------------------------------------------------------
    @abstractmethod
    def extract(self, item: MediaItem, upstream: Upstream = NO_UPSTREAM) -> FeatureArray:
        """Features of one item. Raise ``BadMediaError`` for unusable input; anything else is a bug."""

    def extract_batch(self, items: Sequence[MediaItem],
                      upstream: Sequence[Upstream] | None = None) -> list[FeatureArray]:
        """Features of several items; override to batch rows across items. Must equal per-item results."""
        ups = list(upstream) if upstream is not None else [NO_UPSTREAM] * len(items)
        return [self.extract(item, up) for item, up in zip(items, ups, strict=True)]

    @classmethod
    def demo_config(cls, workdir: Path) -> ExtractorConfig | None:
        """Config the offline demo builds this extractor with, or None to leave it out of the demo.

        ``workdir`` is a folder for anything the demo config needs offline (e.g. a tiny random model
        saved there when no real weights are configured).
        """
        return None

    def upstream_modalities(self) -> tuple[str, ...]:
        """The modalities this instance reads from the store (default: the class's ``requires``)."""
        return self.requires

    def media_needs(self) -> MediaNeeds:
        """The audio sample rates and frame samplings this instance decodes from each item (default:
        none), so a build task decodes each item once for all its extractors. Frames chosen by an upstream
        modality's stored sampling need not be declared: the extractor that made it declares them."""
        return NO_MEDIA

    # ---- identity -------------------------------------------------------------------------------------
    def fingerprint(self, upstream_fingerprints: Mapping[str, str] | None = None) -> str:
        """Config fingerprint, chained with the fingerprints of required modalities."""
        own = self.config.fingerprint()
        required = self.upstream_modalities()
        if not required:
            return own
        ups = dict(upstream_fingerprints or {})
        missing = [name for name in required if name not in ups]
        if missing:
            raise ValueError(f"{self.name}: fingerprint needs the fingerprints of {missing}")
        return stable_hash({"config": own, "upstream": {n: ups[n] for n in required}})

    def provenance(self, upstream_fingerprints: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Everything stored at the modality group: who made the arrays, how, with what."""
        ups = {n: (upstream_fingerprints or {})[n] for n in self.upstream_modalities()}
        return {
            "extractor": self.name,
            "version": self.version,
            "modality_kind": self.modality_kind,
            "config": self.config.to_dict(),
            "config_fingerprint": self.fingerprint(ups),
            "upstream": ups,
            "model": self.model_info(),
            "libraries": library_versions(self.libraries),
            "created": utc_now(),
        }
