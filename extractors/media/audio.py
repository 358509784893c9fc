"""Audio with PyAV: a clip decoded once, downmixed to mono float32 and resampled to each rate asked for.

Streams in bounded memory (:func:`iter_audio` yields chunks); :func:`decode_audio` returns the whole
clip. Times follow :mod:`affectcache.extractors.media.probe`'s convention: seconds from the file start.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import av
import av.error
import numpy as np
import numpy.typing as npt

from affectcache.extractors.core.errors import BadMediaError
from affectcache.extractors.media.decode_memo import DecodeMemo, Failed, MediaNeeds, current_memo
from affectcache.extractors.media.probe import (
    SEEK_SLACK_S,
    TRUNCATION_SLACK_S,
    check_bounds,
    check_clip_args,
    check_file,
    container_start_s,
    decode_stream,
    describe_clip,
    file_duration_s,
    media_source,
    open_container,
    require_audio,
    seek,
    stream_end_s,
    truncation_error,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path


logger = logging.getLogger(__name__)

__all__ = ["decode_audio", "iter_audio"]

AUDIO_PREROLL_S: Final = 0.5
"""Audio clips are decoded from this long before ``start_s`` and the extra samples dropped: after a
seek the first frames of lapped codecs are wrong (AAC's first frame misses its MDCT overlap, MP3's bit
reservoir is empty, Opus asks for 80 ms of pre-roll)."""


# ------------------------------------------------------------------------------------------------ audio


def _check_audio_args(sample_rate: int, start_s: float | None, end_s: float | None) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    check_clip_args(start_s, end_s)


def iter_audio(
    path: str | Path,
    *,
    sample_rate: int,
    chunk_s: float = 30.0,
    start_s: float | None = None,
    end_s: float | None = None,
) -> Iterator[npt.NDArray[np.float32]]:
    """Decode the first audio stream as mono float32 at ``sample_rate``, in chunks.

    Channels are averaged down to mono and resampled by FFmpeg's resampler (flushed at the end).
    The clip is cut at exact sample bounds: sample ``i`` of the output lies at
    ``start_s + i / sample_rate`` (``start_s`` rounded to a whole sample; the stream's first sample,
    normally 0 s, without ``start_s``). Without ``end_s``, decoding stops where the stream says it
    ends, which drops the encoder padding AAC adds at the end (its priming at the start is removed by
    the MP4 edit list); other formats can still leave up to a few thousand extra samples.

    Argument errors (``ValueError``) and missing or empty files (``BadMediaError``) are raised by
    this call; everything found while decoding is raised during iteration.

    Args:
        path: Media file (or URL FFmpeg can open).
        sample_rate: Output sample rate in Hz.
        chunk_s: Chunk length in seconds; every chunk but the last has exactly
            ``round(chunk_s * sample_rate)`` samples.
        start_s: Clip start, seconds from the file start; None = file start.
        end_s: Clip end (exclusive), seconds from the file start; None = end of the audio.

    Returns:
        A generator of 1-D float32 arrays (samples in [-1, 1] for normal audio).

    Raises:
        ValueError: Invalid arguments.
        BadMediaError: Missing/empty/corrupt/truncated file, no audio stream, clip bounds outside
            the file, or no sample decoded.
    """
    src = media_source(path)
    _check_audio_args(sample_rate, start_s, end_s)
    if not (math.isfinite(chunk_s) and chunk_s > 0):
        raise ValueError(f"chunk_s must be a finite number > 0, got {chunk_s!r}")
    chunk_len = max(1, round(chunk_s * sample_rate))
    check_file(src)
    return _rechunk(_audio_blocks(src, sample_rate, start_s, end_s), chunk_len, src, start_s, end_s)


def _rechunk(
    blocks: Iterator[npt.NDArray[np.float32]], chunk_len: int, src: str, start_s: float | None,
    end_s: float | None,
) -> Iterator[npt.NDArray[np.float32]]:
    """Regroup variable-length blocks into ``chunk_len``-sample chunks (the last may be shorter)."""
    pending: list[npt.NDArray[np.float32]] = []
    n_pending = 0
    total = 0
    for block in blocks:
        pending.append(block)
        n_pending += block.size
        while n_pending >= chunk_len:
            joined = np.concatenate(pending)
            yield joined[:chunk_len]
            total += chunk_len
            rest = joined[chunk_len:]
            pending, n_pending = ([rest], rest.size) if rest.size else ([], 0)
    if n_pending:
        total += n_pending
        yield np.concatenate(pending)
    if total == 0:
        raise _no_audio_error(src, start_s, end_s)



@dataclass(eq=False)
class _RateCut:
    """One output rate of an audio pass: its resampler and where its clip starts and ends."""

    rate: int
    lo: int | None
    """First wanted sample (file-time index at ``rate``); None = from the stream start."""
    hi: int | None
    """End (exclusive) of the wanted samples; None = to the stream end."""
    resampler: av.AudioResampler
    pos: int | None = None
    """File-time sample index of the next resampled sample; None until the first output."""


_AudioEvent = tuple[int, "npt.NDArray[np.float32] | BadMediaError | None"]
"""``(rate, samples)`` for a block of a rate's clip, ``(rate, None)`` when that rate's clip is complete,
``(rate, error)`` when that rate failed on its own (truncation)."""


def _audio_pass(
    src: str, rates: Sequence[int], start_s: float | None, end_s: float | None, *, allow_seek: bool = True,
) -> Iterator[_AudioEvent]:
    """Decode the clip once and resample it to each of ``rates``, each through its own resampler.

    Per rate, the samples are exactly those of a pass for that rate alone: each resampler sees the same
    decoded frames and stops where it would alone. Failures that hit every rate (no audio stream,
    decoding errors) are raised.
    """
    with open_container(src) as container:
        stream = require_audio(container, src)
        check_bounds(src, start_s, end_s, file_duration_s(container, src))
        origin_s = container_start_s(container)
        declared_end_s = stream_end_s(container, stream)
        hi_s = end_s if declared_end_s is None else (
            declared_end_s if end_s is None else min(end_s, declared_end_s))
        seek_s = None if start_s is None else start_s - AUDIO_PREROLL_S
        seeked = allow_seek and seek_s is not None and seek_s > 0 and seek(container, stream, src, seek_s)
        active = [_RateCut(rate=rate, lo=None if start_s is None else round(start_s * rate),
                           hi=None if hi_s is None else round(hi_s * rate),
                           resampler=av.AudioResampler(format="flt", layout="mono", rate=rate))
                  for rate in rates]
        retry: list[int] = []  # rates whose first samples came after the clip start: the seek overshot
        for frame in _chain_flush(decode_stream(container, stream, src, "audio")):
            for cut in list(active):
                for out in _resample(cut.resampler, frame, src):
                    if cut.pos is None:
                        if out.pts is not None and out.time_base is not None:
                            cut.pos = round((float(out.pts * out.time_base) - origin_s) * cut.rate)
                        else:
                            cut.pos = 0
                        if (seeked and cut.lo is not None
                                and cut.pos > cut.lo + round(SEEK_SLACK_S * cut.rate) + 1):
                            active.remove(cut)
                            retry.append(cut.rate)
                            break
                    samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    first, cut.pos = cut.pos, cut.pos + samples.size
                    a = 0 if cut.lo is None else min(max(cut.lo - first, 0), samples.size)
                    b = samples.size if cut.hi is None else min(max(cut.hi - first, 0), samples.size)
                    if b > a:
                        yield cut.rate, samples[a:b]
                    if cut.hi is not None and cut.pos >= cut.hi:
                        active.remove(cut)
                        yield cut.rate, None
                        break
            if not active:
                break
        for cut in active:  # the stream ended before these rates reached their clip end
            if seeked and cut.pos is None:  # nothing at all came after the seek: retry from the top
                retry.append(cut.rate)
            elif declared_end_s is not None and cut.pos is not None and (
                    (declared_end_s if end_s is None else min(end_s, declared_end_s)) - cut.pos / cut.rate
                    > TRUNCATION_SLACK_S):
                yield cut.rate, truncation_error(src, "audio", cut.pos / cut.rate, declared_end_s)
            else:
                yield cut.rate, None
    if retry:  # the container is closed; decode these rates from the top
        logger.debug("%s: audio seek to %.3f s missed the clip start; decoding from the start", src, seek_s)
        yield from _audio_pass(src, retry, start_s, end_s, allow_seek=False)


def _audio_blocks(
    src: str, sample_rate: int, start_s: float | None, end_s: float | None,
) -> Iterator[npt.NDArray[np.float32]]:
    """Resampled mono blocks covering samples ``[round(start_s*sr), round(end_s*sr))`` of file time."""
    for _, event in _audio_pass(src, (sample_rate,), start_s, end_s):
        if isinstance(event, BadMediaError):
            raise event
        if event is None:
            return
        yield event


def _resample(resampler: av.AudioResampler, frame: av.AudioFrame | None, src: str) -> list[av.AudioFrame]:
    """``resampler.resample(frame)`` (None flushes its buffered tail), failures as BadMediaError."""
    try:
        return resampler.resample(frame)
    except (av.error.FFmpegError, ValueError) as exc:
        # ValueError: PyAV refuses frames whose format/layout/rate changed mid-stream.
        raise BadMediaError(f"{src}: resampling the audio failed: {exc}") from exc


def _chain_flush(frames: Iterator[av.AudioFrame]) -> Iterator[av.AudioFrame | None]:
    """The decoded frames, then None: ``resample(None)`` flushes the resampler's buffered tail."""
    yield from frames
    yield None


def _no_audio_error(src: str, start_s: float | None, end_s: float | None) -> BadMediaError:
    clip = describe_clip(start_s, end_s)
    return BadMediaError(f"{src}: no audio sample decoded{clip}; the audio stream is empty or corrupt"
                         + ("" if not clip else ", or the clip lies outside it"))


def _decode_audio_rates(
    src: str, rates: Sequence[int], start_s: float | None, end_s: float | None,
) -> dict[int, npt.NDArray[np.float32] | BadMediaError]:
    """The whole clip at each rate from one decode, or the error that rate ended with."""
    blocks: dict[int, list[npt.NDArray[np.float32]]] = {rate: [] for rate in rates}
    outcome: dict[int, npt.NDArray[np.float32] | BadMediaError] = {}
    try:
        for rate, event in _audio_pass(src, rates, start_s, end_s):
            if isinstance(event, np.ndarray):
                blocks[rate].append(event)
            elif event is not None:
                outcome[rate] = event
            elif blocks[rate]:
                outcome[rate] = np.concatenate(blocks.pop(rate))  # a copy, off the decoder's buffers
            else:
                outcome[rate] = _no_audio_error(src, start_s, end_s)
    except BadMediaError as exc:
        for rate in rates:
            outcome.setdefault(rate, exc)
    return outcome


def decode_audio(
    path: str | Path,
    *,
    sample_rate: int,
    start_s: float | None = None,
    end_s: float | None = None,
) -> npt.NDArray[np.float32]:
    """Decode the first audio stream (or the ``start_s``..``end_s`` clip of it) to one mono array.

    Same semantics as :func:`iter_audio`, concatenated; for long files prefer :func:`iter_audio`.
    Inside :func:`~affectcache.extractors.media.decode_memo.shared_decoding`, one decode serves every declared
    sample rate (each resampled on its own, so the samples are those of a lone call) and is reused.

    Args:
        path: Media file (or URL FFmpeg can open).
        sample_rate: Output sample rate in Hz.
        start_s: Clip start, seconds from the file start; None = file start.
        end_s: Clip end (exclusive), seconds from the file start; None = end of the audio.

    Returns:
        1-D float32 array of mono samples at ``sample_rate``.

    Raises:
        ValueError: Invalid arguments.
        BadMediaError: Missing/empty/corrupt/truncated file, no audio stream, clip bounds outside
            the file, or no sample decoded.
    """
    src = media_source(path)
    _check_audio_args(sample_rate, start_s, end_s)
    check_file(src)
    memo = current_memo()
    if memo is None:
        result = _decode_audio_rates(src, (sample_rate,), start_s, end_s)[sample_rate]
    else:
        result = _shared_audio(memo, src, sample_rate, start_s, end_s)
    if isinstance(result, BadMediaError):
        raise result
    return result


def _shared_audio(memo: DecodeMemo, src: str, sample_rate: int, start_s: float | None,
                  end_s: float | None) -> npt.NDArray[np.float32] | BadMediaError:
    memo.note_request(MediaNeeds(audio_rates=frozenset({sample_rate})))
    clip = ("audio", src, start_s, end_s)
    kept = memo.kept_or_decode(clip, sample_rate, lambda: _decode_audio_and_keep(memo, clip, src, sample_rate,
                                                                                 start_s, end_s))
    if isinstance(kept, Failed):
        return kept.error()
    assert isinstance(kept, (np.ndarray, BadMediaError))
    # A copy: callers may modify their waveform in place, and the kept one serves other extractors.
    return kept.copy() if isinstance(kept, np.ndarray) else kept


def _decode_audio_and_keep(memo: DecodeMemo, clip: tuple[str, str, float | None, float | None], src: str,
                           sample_rate: int, start_s: float | None, end_s: float | None,
                           ) -> npt.NDArray[np.float32] | BadMediaError:
    """One decode resampled to ``sample_rate`` and every other declared rate, kept within the budget."""
    rates = [sample_rate, *sorted(r for r in memo.needs_for(src).audio_rates
                                  if r != sample_rate and not memo.has((*clip, r)))]
    outcomes = _decode_audio_rates(src, rates, start_s, end_s)
    for rate, outcome in outcomes.items():
        if isinstance(outcome, BadMediaError):
            memo.put((*clip, rate), Failed(str(outcome), type(outcome)))
        elif memo.reserve(outcome.nbytes):
            memo.put((*clip, rate), outcome)
        else:
            memo.count_dropped()
    return outcomes[sample_rate]
