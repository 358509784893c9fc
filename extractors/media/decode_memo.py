"""Decoded media shared by the extractors that one build task runs, so each file is decoded once.

A task that builds several modalities (``affectcache extract face clip-face clip-scene ...``) opens
:func:`shared_decoding` with what its extractors declared they decode (:class:`MediaNeeds`: audio sample
rates and frame samplings). Inside it, :func:`affectcache.extractors.media.audio.decode_audio` and
:func:`~affectcache.extractors.media.video.iter_frames` decode a file once for *every* declared rate and
sampling, keep the results in a :class:`DecodeMemo`, and serve later requests from it. The memo holds
media, never features, and outputs do not change: the shared pass runs the very resampler and frame
selection a lone request would, once per rate or sampling.

Memory is bounded by a byte budget: results that do not fit are not kept (a later request decodes
again, and the memo counts it), so a task of long videos degrades to one decode per request instead of
running out of memory. The memo is thread-safe, and a request for a file another thread is decoding
waits for that decode rather than starting its own.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from affectcache.extractors.core.errors import BadMediaError

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping

logger = logging.getLogger(__name__)

DEFAULT_BUDGET_MB: Final = 2048
"""Default size of a task's memo: decoded frames (native resolution, YUV) and audio it may keep."""


@dataclass(frozen=True, kw_only=True)
class FrameSampling:
    """Which frames of a video a request selects
    (see :func:`~affectcache.extractors.media.video.iter_frames`)."""

    fps: float | None = None
    """One frame per ``1/fps`` s tick; None = not rate-based."""
    n_frames: int | None = None
    """This many frames spread uniformly (``linspace``); None = not count-based. With neither, every
    frame."""


@dataclass(frozen=True, kw_only=True)
class MediaNeeds:
    """What an extractor decodes from each item, declared so a task can decode it together with the
    needs of the task's other extractors (:meth:`affectcache.extractors.core.base.Extractor.media_needs`)."""

    audio_rates: frozenset[int] = frozenset()
    """Sample rates (Hz) at which the extractor decodes audio."""
    frame_samplings: frozenset[FrameSampling] = frozenset()
    """Frame selections the extractor decodes (sizes do not matter: frames are kept as decoded and
    converted at each request's size)."""

    def __or__(self, other: MediaNeeds) -> MediaNeeds:
        return MediaNeeds(audio_rates=self.audio_rates | other.audio_rates,
                          frame_samplings=self.frame_samplings | other.frame_samplings)


NO_MEDIA: Final = MediaNeeds()


@dataclass(frozen=True)
class Failed:
    """A decode that raised ``BadMediaError``, kept so a later request re-raises it without decoding."""

    message: str
    kind: type[BadMediaError] = BadMediaError
    """The error class raised (a missing stream stays a :class:`MissingStreamError`)."""

    def error(self) -> BadMediaError:
        """The error to raise again."""
        return self.kind(self.message)


@dataclass
class MemoStats:
    """What the memo did, for logs and tests."""

    decodes: int = 0
    """Decode passes run (one per file and clip, unless results were dropped for the budget)."""
    hits: int = 0
    """Requests served from the memo."""
    dropped: int = 0
    """Results not kept because the budget was full."""


@dataclass
class _Claim:
    done: threading.Event = field(default_factory=threading.Event)


class DecodeMemo:
    """Decoded media keyed by request, within a byte budget; safe to share between threads."""

    def __init__(self, needs: MediaNeeds | Mapping[str, MediaNeeds] = NO_MEDIA, *,
                 budget_mb: int = DEFAULT_BUDGET_MB) -> None:
        if budget_mb < 0:
            raise ValueError(f"budget_mb must be >= 0, got {budget_mb}")
        self._needs = needs
        self.requested = NO_MEDIA
        """Every rate and sampling asked for so far (the contract suite checks it against ``needs``)."""
        self.budget_bytes = budget_mb * 1024 * 1024
        self.used_bytes = 0
        self.stats = MemoStats()
        self._values: dict[Hashable, Any] = {}
        self._claims: dict[Hashable, _Claim] = {}
        self._lock = threading.Lock()

    def needs_for(self, source: str) -> MediaNeeds:
        """What the task's extractors will decode from ``source`` (a path or URL, as given)."""
        if isinstance(self._needs, MediaNeeds):
            return self._needs
        return self._needs.get(source, NO_MEDIA)

    def note_request(self, needs: MediaNeeds) -> None:
        """Record a request (see :attr:`requested`)."""
        with self._lock:
            self.requested = self.requested | needs

    def get(self, key: Hashable) -> Any | None:
        """The kept value for ``key`` (counted as a hit), or None."""
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self.stats.hits += 1
            return value

    def has(self, key: Hashable) -> bool:
        """Whether a value for ``key`` is kept (not counted as a hit)."""
        with self._lock:
            return key in self._values

    def reserve(self, nbytes: int) -> bool:
        """Take ``nbytes`` of the budget if that much is left."""
        with self._lock:
            if self.used_bytes + nbytes > self.budget_bytes:
                return False
            self.used_bytes += nbytes
            return True

    def release(self, nbytes: int) -> None:
        """Give back budget taken by :meth:`reserve` for results that are not kept after all."""
        with self._lock:
            self.used_bytes -= nbytes

    def put(self, key: Hashable, value: Any) -> None:
        """Keep ``value`` (its bytes must already be reserved, or it must be small, like a failure)."""
        with self._lock:
            self._values[key] = value

    def count_dropped(self) -> None:
        """Count a result not kept for lack of budget."""
        with self._lock:
            self.stats.dropped += 1

    def kept_or_decode(self, clip: tuple[Hashable, ...], what: Hashable, decode: Callable[[], Any]) -> Any:
        """The value kept for ``(*clip, what)``, else what ``decode()`` returns (it keeps what it decoded
        for the other requests). Decodes of one ``clip`` run one at a time: a request waits for a decode in
        progress in another thread, then looks again."""
        key = (*clip, what)
        kept = self.get(key)
        if kept is None:
            with self._decoding(clip):
                kept = self.get(key)
                if kept is None:
                    with self._lock:
                        self.stats.decodes += 1
                    kept = decode()
        return kept

    @contextlib.contextmanager
    def _decoding(self, key: Hashable) -> Iterator[None]:
        """One decode of ``key`` at a time: waits while another thread decodes it."""
        while True:
            with self._lock:
                claim = self._claims.get(key)
                if claim is None:
                    mine = self._claims[key] = _Claim()
                    break
            claim.done.wait()
        try:
            yield
        finally:
            with self._lock:
                del self._claims[key]
            mine.done.set()


_MEMO: ContextVar[DecodeMemo | None] = ContextVar("affectcache_decode_memo", default=None)


def current_memo() -> DecodeMemo | None:
    """The memo of the enclosing :func:`shared_decoding` block, if any."""
    return _MEMO.get()


def combined_needs(needs: Iterable[MediaNeeds]) -> MediaNeeds:
    """The union of several extractors' needs."""
    total = NO_MEDIA
    for need in needs:
        total = total | need
    return total


@contextlib.contextmanager
def shared_decoding(needs: MediaNeeds | Mapping[str, MediaNeeds] = NO_MEDIA, *,
                    budget_mb: int = DEFAULT_BUDGET_MB) -> Iterator[DecodeMemo]:
    """Within the block, media decoded for one request is decoded for all of ``needs`` and kept.

    ``needs`` is one :class:`MediaNeeds` for every file, or one per file (keyed by the path or URL as the
    extractors pass it), so a file is decoded only for the modalities that will read it.

    Threads started inside the block see the memo only if they run in a copy of this context
    (``contextvars.copy_context().run``), as the build runner's do.
    """
    memo = DecodeMemo(needs, budget_mb=budget_mb)
    token = _MEMO.set(memo)
    try:
        yield memo
    finally:
        _MEMO.reset(token)
        if memo.stats.decodes:
            logger.debug("decode memo: %d decodes, %d hits, %d results dropped for the %d MB budget, "
                         "%.1f MB kept", memo.stats.decodes, memo.stats.hits, memo.stats.dropped,
                         budget_mb, memo.used_bytes / 2**20)
