"""Synthetic media for tests and the demo, encoded with PyAV (H.264 yuv420p video + AAC audio).

:func:`write_clip` encodes any frame/sample functions; :func:`write_test_clip` makes tiny clips for unit
tests in milliseconds; :func:`generate_demo_corpus` writes a small labelled corpus with a *planted
signal*: per-frame arousal drives the loudness and pitch of a voice-like tone, per-frame valence drives
the scene's colour and brightness, and a real face photo (scikit-image's astronaut) moves and scales
through every frame, so face detectors, audio and visual extractors and the trainers all have
something genuine to find.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import av
import numpy as np
import numpy.typing as npt

from affectcache.extractors.core.atomic import atomic_path, atomic_write_json
from affectcache.extractors.core.provenance import library_versions, sha256_file, utc_now

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import OutputContainer
    from av.video.stream import VideoStream

logger = logging.getLogger(__name__)

__all__ = [
    "DEMO_GENERATOR_VERSION",
    "AudioFn",
    "DemoClip",
    "FrameFn",
    "generate_demo_corpus",
    "write_clip",
    "write_test_clip",
]

FrameFn = Callable[[int, float], npt.NDArray[np.uint8]]
"""``(frame index, time in s) -> (height, width, 3)`` uint8 RGB frame."""
AudioFn = Callable[[npt.NDArray[np.float64]], npt.NDArray[Any]]
"""``sample times in s -> samples in [-1, 1]`` (same length), called on consecutive chunks."""

DEMO_GENERATOR_VERSION: Final = 1
"""Bumped by hand whenever a change alters the demo corpus' pixels, samples or labels, so existing
corpora are regenerated instead of reused."""

_X264_OPTIONS: Final = {
    # ultrafast keeps encoding at ~1 ms/frame at 320x240; B-frames are switched back on so decoders
    # see reordered timestamps as in real files; one thread makes the bytes reproducible (x264's
    # output depends on its thread count).
    "preset": "ultrafast",
    "x264-params": "bframes=2",
    "crf": "23",
    "threads": "1",
}
_GOP_S: Final = 2.0
"""Keyframe interval in seconds, typical of web video, so seeking lands near the target."""
_AUDIO_CHUNK_S: Final = 1.0
"""Audio is generated and encoded one second at a time, keeping long clips in bounded memory."""
_MP4_LIKE: Final = frozenset({".mp4", ".m4v", ".m4a", ".mov"})


# ------------------------------------------------------------------------------------------- encoding


def _rate(fps: float) -> Fraction:
    """Frame rate as a fraction; NTSC-style rates such as 30000/1001 come back exactly."""
    return Fraction(fps).limit_denominator(1001)


def write_clip(
    path: str | Path,
    *,
    duration_s: float,
    fps: float = 25.0,
    size: tuple[int, int] = (320, 240),
    frame_fn: FrameFn | None = None,
    audio_fn: AudioFn | None = None,
    sample_rate: int = 44100,
) -> Path:
    """Encode a clip from a frame function and/or a sample function.

    Video is H.264 yuv420p (``round(duration_s * fps)`` frames, frame ``i`` at ``i / fps`` s, a
    keyframe every 2 s), audio is mono AAC (``round(duration_s * sample_rate)`` samples); MP4/MOV files
    get their index at the front (``faststart``) like web video. The file is written under a temporary
    name and renamed into place, so an interrupted run never leaves a half-written clip at ``path``.

    Args:
        path: Output file; the suffix picks the container (``.mp4``, ``.mov``, ``.mkv``, ...).
        duration_s: Clip length in seconds.
        fps: Frame rate.
        size: ``(width, height)``, both even (H.264 4:2:0 needs even dimensions).
        frame_fn: ``(frame index, t) -> (height, width, 3) uint8`` frame; None = no video stream.
        audio_fn: Sample times (s, float64) -> samples in [-1, 1]; called on consecutive chunks of at
            most one second, so it must be a pure function of time. None = no audio stream.
        sample_rate: Audio sample rate in Hz.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: Invalid arguments, or a frame/sample function returned the wrong shape or type.
    """
    out = Path(path)
    if frame_fn is None and audio_fn is None:
        raise ValueError("write_clip needs a frame_fn, an audio_fn, or both")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a finite number > 0, got {duration_s!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    width, height = size
    if frame_fn is not None and not (width > 0 and height > 0 and width % 2 == 0 and height % 2 == 0):
        raise ValueError(f"size must be two positive even ints (width, height), got {size!r}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate!r}")

    options = {"movflags": "+faststart"} if out.suffix.lower() in _MP4_LIKE else {}
    with atomic_path(out) as tmp, av.open(str(tmp), mode="w", options=options) as container:
        _encode(container, duration_s=duration_s, fps=fps, size=size, frame_fn=frame_fn,
                audio_fn=audio_fn, sample_rate=sample_rate)
    return out


def _encode(
    container: OutputContainer, *, duration_s: float, fps: float, size: tuple[int, int],
    frame_fn: FrameFn | None, audio_fn: AudioFn | None, sample_rate: int,
) -> None:
    """Encode video and audio interleaved (audio up to one second ahead of the video)."""
    width, height = size
    rate = _rate(fps)
    video: VideoStream | None = None
    audio: AudioStream | None = None
    if frame_fn is not None:
        video = container.add_stream("libx264", rate=rate, options=dict(_X264_OPTIONS))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.gop_size = max(1, round(_GOP_S * fps))
    if audio_fn is not None:
        audio = container.add_stream("aac", rate=sample_rate)
        audio.layout = "mono"

    n_frames = max(1, round(duration_s * fps)) if video is not None else 0
    n_samples = round(duration_s * sample_rate) if audio is not None else 0
    chunk = max(1, round(_AUDIO_CHUNK_S * sample_rate))
    written = 0  # audio samples encoded so far

    def audio_until(target: int) -> None:
        nonlocal written
        assert audio is not None
        assert audio_fn is not None
        while written < min(target, n_samples):
            stop = min(written + chunk, n_samples)
            times = np.arange(written, stop, dtype=np.float64) / sample_rate
            samples = np.asarray(audio_fn(times), dtype=np.float64)
            if samples.shape != times.shape:
                raise ValueError(f"audio_fn returned shape {samples.shape} for {times.size} sample times")
            mono = np.clip(samples, -1.0, 1.0).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(mono, format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = written
            frame.time_base = Fraction(1, sample_rate)
            container.mux(audio.encode(frame))
            written = stop

    for i in range(n_frames):
        assert video is not None
        assert frame_fn is not None
        t = float(i / rate)
        rgb = frame_fn(i, t)
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.shape == (height, width, 3)):
            got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise ValueError(f"frame_fn must return a ({height}, {width}, 3) uint8 array, got {got} "
                             f"for frame {i}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = i
        frame.time_base = 1 / rate
        # The encoder converts rgb24 to yuv420p itself, with one cached swscale context.
        container.mux(video.encode(frame))
        if audio is not None:
            # Round the audio target up to whole chunks so audio runs ahead of the video in steps.
            audio_until(math.ceil(float((i + 1) / rate) / _AUDIO_CHUNK_S) * chunk)
    if audio is not None:
        audio_until(n_samples)
        container.mux(audio.encode(None))
    if video is not None:
        container.mux(video.encode(None))


def write_test_clip(
    path: str | Path,
    *,
    duration_s: float = 1.0,
    fps: float = 10.0,
    size: tuple[int, int] = (64, 64),
    tone_hz: float = 440.0,
    video: bool = True,
    audio: bool = True,
    sample_rate: int = 44100,
    amplitude: float = 0.5,
) -> Path:
    """A tiny clip for tests: a white square moving left to right on a dark background, and a sine tone.

    The square is ``min(size) // 4`` pixels wide and crosses the frame once over the clip; the tone has
    peak ``amplitude`` (RMS ``amplitude / sqrt(2)``). Encodes in milliseconds at the defaults.

    Args:
        path: Output file (``.mp4`` unless you need another container).
        duration_s: Clip length in seconds.
        fps: Frame rate.
        size: ``(width, height)``, both even.
        tone_hz: Tone frequency in Hz.
        video: Whether to write a video stream.
        audio: Whether to write an audio stream.
        sample_rate: Audio sample rate in Hz.
        amplitude: Peak amplitude of the tone, in (0, 1].

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    width, height = size
    side = max(2, min(width, height) // 4)
    n_frames = max(1, round(duration_s * fps))
    background = np.full((height, width, 3), 24, dtype=np.uint8)
    top = (height - side) // 2

    def square(i: int, t: float) -> npt.NDArray[np.uint8]:
        frame = background.copy()
        left = round((width - side) * i / max(1, n_frames - 1))
        frame[top:top + side, left:left + side] = 255
        return frame

    def tone(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return amplitude * np.sin(2 * np.pi * tone_hz * t)

    return write_clip(path, duration_s=duration_s, fps=fps, size=size,
                      frame_fn=square if video else None, audio_fn=tone if audio else None,
                      sample_rate=sample_rate)


# ----------------------------------------------------------------------------------------- demo corpus


@dataclass(frozen=True, kw_only=True, eq=False)
class DemoClip:
    """One clip of the demo corpus with its per-frame labels."""

    video_id: str
    """``demo_000``, ``demo_001``, ..."""
    path: Path
    """The MP4 file."""
    split: str
    """``train`` (first ~2/3 of the clips), then ``val``, then ``test``."""
    duration_s: float
    """Clip length in seconds (``n_frames / fps``)."""
    fps: float
    """Frame rate."""
    n_frames: int
    """Number of video frames; frame ``i`` is shown at ``i / fps`` s."""
    valence: npt.NDArray[np.float64]
    """``(n_frames,)`` valence in [-1, 1] per video frame; drives scene colour and brightness."""
    arousal: npt.NDArray[np.float64]
    """``(n_frames,)`` arousal in [-1, 1] per video frame; drives voice loudness and pitch."""

    @property
    def time_s(self) -> npt.NDArray[np.float64]:
        """``(n_frames,)`` time in seconds of each frame (and label)."""
        return np.arange(self.n_frames, dtype=np.float64) / self.fps


DEMO_AUDIO_RATE: Final = 44100
"""Sample rate of the demo clips' audio (a common real-world rate, so extractors resample as usual)."""
_F0_RANGE_HZ: Final = (120.0, 300.0)
"""Voice pitch at arousal -1 and +1."""
_RMS_RANGE: Final = (0.02, 0.25)
"""Voice RMS amplitude (before syllable modulation) at arousal -1 and +1."""
_NOISE_RMS: Final = 0.004
_FACE_HEIGHT_RANGE: Final = (0.35, 0.60)
"""Face height as a fraction of the frame height."""
_FACE_CROP: Final = (slice(20, 220), slice(140, 320))
"""Rows/columns of ``skimage.data.astronaut()`` holding the face (with hair and collar)."""
_COLD_RGB: Final = (0.25, 0.40, 0.95)
"""Scene colour at valence -1 (blue); it moves to ``_WARM_RGB`` as valence rises."""
_WARM_RGB: Final = (1.00, 0.62, 0.22)
_BRIGHTNESS_RANGE: Final = (0.30, 0.90)
"""Scene brightness at valence -1 and +1."""


def _smooth_curve(rng: np.random.Generator, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A smooth random curve in (-1, 1): a few slow sinusoids with random frequencies and phases.

    Periods of 4-25 s give every clip, even a 5 s one, visible ups and downs while staying slow like
    real continuous annotations (at most ~3 units/s); tanh keeps the sum in range without flattening it.
    """
    n_waves = 3
    freqs = rng.uniform(0.04, 0.25, n_waves)
    phases = rng.uniform(0.0, 2 * np.pi, n_waves)
    amps = rng.uniform(0.5, 1.0, n_waves)
    waves = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])).sum(0)
    curve: npt.NDArray[np.float64] = np.tanh(2.0 * waves / amps.sum() + rng.uniform(-0.3, 0.3))
    return curve


def _demo_audio(rng: np.random.Generator, arousal: npt.NDArray[np.float64], fps: float,
                sample_rate: int) -> npt.NDArray[np.float32]:
    """The planted audio signal: a harmonic voice-like tone whose pitch and loudness rise with arousal,
    amplitude-modulated into syllables (faster when aroused), plus a little noise."""
    n = round(arousal.size / fps * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    level = (np.interp(t, np.arange(arousal.size) / fps, arousal) + 1.0) / 2.0  # 0..1
    vibrato = 1.0 + 0.02 * np.sin(2 * np.pi * 5.0 * t + rng.uniform(0, 2 * np.pi))
    f0 = (_F0_RANGE_HZ[0] + (_F0_RANGE_HZ[1] - _F0_RANGE_HZ[0]) * level) * vibrato
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    n_harmonics = 8
    voice = np.zeros(n)
    for k in range(1, n_harmonics + 1):  # accumulated in place: no (harmonics, samples) temporary
        voice += np.sin(k * phase) / k
    voice /= np.sqrt(sum(1.0 / k**2 for k in range(1, n_harmonics + 1)) / 2)  # unit RMS
    syllable_rate = 3.0 + 3.0 * level  # Hz
    syllables = 0.35 + 0.65 * np.sin(np.pi * np.cumsum(syllable_rate) / sample_rate) ** 2
    rms = _RMS_RANGE[0] + (_RMS_RANGE[1] - _RMS_RANGE[0]) * level
    signal = rms * syllables * voice + rng.normal(0.0, _NOISE_RMS, n)
    clipped: npt.NDArray[np.float32] = np.clip(signal, -1.0, 1.0).astype(np.float32)
    return clipped


def _face_rgba() -> npt.NDArray[np.uint8]:
    """The astronaut's face cropped from scikit-image, with a soft elliptical alpha matte.

    Raises:
        ImportError: scikit-image is not installed.
    """
    try:
        from skimage import data as skdata
    except ImportError as exc:
        raise ImportError(
            "the demo corpus pastes a face photo from scikit-image, which is not installed; "
            "install it with: pip install 'affectcache[demo]'"
        ) from exc
    # Typed alias: scikit-image's loaders are unannotated, and mypy --strict refuses untyped calls.
    astronaut: Callable[[], npt.NDArray[np.uint8]] = skdata.astronaut
    face = np.asarray(astronaut()[_FACE_CROP], dtype=np.float32)
    h, w = face.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Ellipse around head and hair; feathered edge so the paste does not look like a sticker.
    r = np.hypot((yy - h * 0.46) / (h * 0.52), (xx - w * 0.5) / (w * 0.46))
    alpha = np.clip((1.0 - r) / 0.12, 0.0, 1.0)
    rgba: npt.NDArray[np.uint8] = np.rint(np.concatenate([face, 255.0 * alpha[..., None]], axis=2)
                                          ).astype(np.uint8)
    return rgba


class _DemoRenderer:
    """Draws demo frames: a valence-coloured, shaded backdrop with the face pasted on top."""

    def __init__(self, size: tuple[int, int], face: npt.NDArray[np.uint8]) -> None:
        from PIL import Image  # pillow is a core dependency; imported here as only the demo needs it

        self._image = Image
        self.width, self.height = size
        yy, xx = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        # Soft top light and vignette, so frames are not flat colour (more like a real scene).
        vignette = 1.0 - 0.35 * (((xx / self.width - 0.5) ** 2 + (yy / self.height - 0.5) ** 2) * 2)
        shade = vignette * (1.05 - 0.2 * yy / self.height)
        # Shade as 8-bit fixed point: each frame's backdrop is then an integer multiply and shift
        # per channel, ~7x cheaper than float maths over every pixel (this is the hot loop).
        self._shade_max = float(shade.max())
        self._shade = np.rint(shade / self._shade_max * 255).astype(np.uint16)
        self.face = face
        self._cache: dict[int, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]] = {}

    def _face_at(self, face_h: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The face resized to ``face_h`` rows as (alpha-premultiplied RGB, 1 - alpha); cached, as
        heights repeat from frame to frame."""
        if face_h not in self._cache:
            src_h, src_w = self.face.shape[:2]
            face_w = min(self.width, max(1, round(src_w * face_h / src_h)))
            # Resized as straight (not premultiplied) RGBA, as PIL does for mode "RGBA".
            resized = self._image.fromarray(self.face).resize(
                (face_w, face_h), self._image.Resampling.BILINEAR)
            rgba = np.asarray(resized, dtype=np.float32)
            alpha = rgba[..., 3:] / 255.0
            self._cache[face_h] = (rgba[..., :3] * alpha, 1.0 - alpha)
        return self._cache[face_h]

    def render(self, valence: float, face_scale: float, face_x: float, face_y: float
               ) -> npt.NDArray[np.uint8]:
        """One frame. ``face_scale`` is face height / frame height; ``face_x``/``face_y`` in [0, 1]
        place the face within the frame."""
        level = (valence + 1.0) / 2.0
        colour = np.asarray(_COLD_RGB, np.float32) * (1 - level) + np.asarray(_WARM_RGB, np.float32) * level
        brightness = _BRIGHTNESS_RANGE[0] + (_BRIGHTNESS_RANGE[1] - _BRIGHTNESS_RANGE[0]) * level
        frame = np.empty((self.height, self.width, 3), dtype=np.uint8)
        for c in range(3):
            gain = min(256, round(float(colour[c]) * brightness * self._shade_max * 256))
            frame[..., c] = (self._shade * gain) >> 8
        premultiplied, transparency = self._face_at(min(self.height, max(2, round(face_scale * self.height))))
        fh, fw = transparency.shape[:2]
        top = round(face_y * (self.height - fh))
        left = round(face_x * (self.width - fw))
        region = frame[top:top + fh, left:left + fw]
        # The scene light falls on the face too: dim it with the backdrop, as a real camera would.
        blended = region * transparency + premultiplied * (0.55 + 0.6 * brightness)
        region[...] = np.clip(blended, 0, 255).astype(np.uint8)
        return frame


def _splits(n: int) -> list[str]:
    n_train = round(n * 2 / 3)
    n_val = (n - n_train + 1) // 2 if n - n_train > 1 else 0
    return ["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val)


@dataclass(frozen=True)
class _ClipPlan:
    """Everything that determines one demo clip (labels are drawn from ``seed`` alone)."""

    video_id: str
    split: str
    n_frames: int
    seed: tuple[int, int]


def _plan(n_clips: int, seed: int, fps: float, min_duration_s: float, max_duration_s: float
          ) -> list[_ClipPlan]:
    rng = np.random.default_rng(seed)
    durations = rng.uniform(min_duration_s, max_duration_s, n_clips)
    splits = _splits(n_clips)
    return [
        _ClipPlan(f"demo_{i:03d}", splits[i], max(1, round(float(durations[i]) * fps)), (seed, i))
        for i in range(n_clips)
    ]


def _labels(plan: _ClipPlan, fps: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng([*plan.seed, 0])
    t = np.arange(plan.n_frames, dtype=np.float64) / fps
    return _smooth_curve(rng, t), _smooth_curve(rng, t)


def _render_clip(path: Path, plan: _ClipPlan, fps: float, size: tuple[int, int],
                 face: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Encode one demo clip; returns its (valence, arousal)."""
    valence, arousal = _labels(plan, fps)
    rng = np.random.default_rng([*plan.seed, 1])
    t = np.arange(plan.n_frames, dtype=np.float64) / fps
    lo, hi = _FACE_HEIGHT_RANGE
    # Face motion: slow, smooth and independent of the labels, so only valence/arousal carry signal.
    scale = lo + (hi - lo) * (_smooth_curve(rng, t) + 1) / 2
    face_x = (_smooth_curve(rng, t) + 1) / 2
    face_y = 0.2 + 0.6 * (_smooth_curve(rng, t) + 1) / 2
    renderer = _DemoRenderer(size, face)
    audio = _demo_audio(rng, arousal, fps, DEMO_AUDIO_RATE)

    def frame_fn(i: int, _t: float) -> npt.NDArray[np.uint8]:
        return renderer.render(float(valence[i]), float(scale[i]), float(face_x[i]), float(face_y[i]))

    def audio_fn(times: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        idx = np.minimum(np.rint(times * DEMO_AUDIO_RATE).astype(np.int64), audio.size - 1)
        return audio[idx]

    write_clip(path, duration_s=plan.n_frames / fps, fps=fps, size=size, frame_fn=frame_fn,
               audio_fn=audio_fn, sample_rate=DEMO_AUDIO_RATE)
    return valence, arousal


def _write_labels(path: Path, valence: npt.NDArray[np.float64], arousal: npt.NDArray[np.float64],
                  fps: float) -> None:
    time_s = np.arange(valence.size, dtype=np.float64) / fps
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, valence=valence, arousal=arousal, time_s=time_s)


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            loaded = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # unreadable or not JSON: regenerate rather than fail
        logger.warning("ignoring unreadable %s (%s); regenerating the demo corpus", path, exc)
        return None
    return loaded if isinstance(loaded, dict) else None


def _intact(out: Path, entry: Any, name: str) -> bool:
    """Whether the clip file recorded in ``entry`` exists with the recorded sha256."""
    if not isinstance(entry, dict):
        return False
    file_path = out / str(entry.get(name, ""))
    if not entry.get(name) or not file_path.is_file():
        return False
    return sha256_file(file_path) == entry.get(f"{name}_sha256")


def generate_demo_corpus(
    out_dir: str | Path,
    *,
    n_clips: int = 12,
    seed: int = 0,
    fps: float = 25.0,
    size: tuple[int, int] = (320, 240),
    min_duration_s: float = 5.0,
    max_duration_s: float = 20.0,
) -> list[DemoClip]:
    """Write (or reuse) the demo corpus: labelled synthetic clips with a planted signal.

    Each clip ``demo_NNN.mp4`` (H.264 + mono AAC at 44.1 kHz) has smooth random per-frame valence and
    arousal in [-1, 1], stored next to it in ``demo_NNN.npz`` (``valence``, ``arousal``, ``time_s``).
    Arousal drives a voice-like harmonic tone: its pitch (120-300 Hz), loudness and syllable rate rise
    with arousal. Valence drives the scene: its colour moves from blue to warm and its brightness rises
    with valence. A real face photo moves and scales (35-60 % of the frame height) through every frame.

    Deterministic from ``seed``. ``out_dir/corpus.json`` records the parameters and every file's
    sha256; calling again with the same parameters re-encodes only clips whose files are missing or
    changed (none, normally: the call then just hashes the files). Changed parameters regenerate the
    corpus and delete clips the previous corpus.json listed that the new one does not.

    Args:
        out_dir: Folder to write into (created if missing).
        n_clips: Number of clips; ids ``demo_000`` ... and splits train (~2/3), val, test
            (12 -> 8/2/2).
        seed: Seed of every random choice.
        fps: Frame rate.
        size: ``(width, height)``, both even.
        min_duration_s: Shortest clip duration in seconds.
        max_duration_s: Longest clip duration in seconds.

    Returns:
        The clips, in id order.

    Raises:
        ValueError: Invalid arguments.
        ImportError: scikit-image (the ``demo`` extra) is not installed.
    """
    if n_clips < 1:
        raise ValueError(f"n_clips must be >= 1, got {n_clips}")
    if not 0 < min_duration_s <= max_duration_s:
        raise ValueError(f"need 0 < min_duration_s <= max_duration_s, got {min_duration_s}, "
                         f"{max_duration_s}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params: dict[str, Any] = {
        "generator_version": DEMO_GENERATOR_VERSION, "n_clips": n_clips, "seed": seed, "fps": fps,
        "size": list(size), "min_duration_s": min_duration_s, "max_duration_s": max_duration_s,
        "audio_sample_rate": DEMO_AUDIO_RATE,
    }
    manifest_path = out / "corpus.json"
    previous = _load_json(manifest_path)
    same_params = previous is not None and previous.get("params") == params
    previous_entries: dict[str, Any] = {}
    if previous is not None and isinstance(previous.get("clips"), list):
        previous_entries = {str(e.get("video_id")): e for e in previous["clips"] if isinstance(e, dict)}

    plans = _plan(n_clips, seed, fps, min_duration_s, max_duration_s)
    face: npt.NDArray[np.uint8] | None = None
    clips: list[DemoClip] = []
    entries: list[dict[str, Any]] = []
    started = time.perf_counter()
    n_encoded = 0
    for plan in plans:
        path = out / f"{plan.video_id}.mp4"
        labels_path = out / f"{plan.video_id}.npz"
        entry = previous_entries.get(plan.video_id) if same_params else None
        if entry is not None and _intact(out, entry, "file") and _intact(out, entry, "labels"):
            with np.load(labels_path) as npz:
                valence = np.asarray(npz["valence"], dtype=np.float64)
                arousal = np.asarray(npz["arousal"], dtype=np.float64)
            logger.info("%s: reusing %s (intact)", plan.video_id, path)
        else:
            if face is None:
                face = _face_rgba()
            clip_started = time.perf_counter()
            valence, arousal = _render_clip(path, plan, fps, size, face)
            _write_labels(labels_path, valence, arousal, fps)
            n_encoded += 1
            logger.info("%s: encoded %.1f s (%d frames, %s) in %.2f s", plan.video_id,
                        plan.n_frames / fps, plan.n_frames, plan.split, time.perf_counter() - clip_started)
        clips.append(DemoClip(video_id=plan.video_id, path=path, split=plan.split,
                              duration_s=plan.n_frames / fps, fps=fps, n_frames=plan.n_frames,
                              valence=valence, arousal=arousal))
        entries.append({
            "video_id": plan.video_id, "split": plan.split, "n_frames": plan.n_frames,
            "duration_s": plan.n_frames / fps, "file": path.name, "file_sha256": sha256_file(path),
            "labels": labels_path.name, "labels_sha256": sha256_file(labels_path),
        })

    if n_encoded or not same_params:
        # Clips the previous corpus listed that this one does not (fewer clips now): remove them so
        # the folder holds exactly one corpus. Only files the old corpus.json named are touched.
        keep = {e["file"] for e in entries} | {e["labels"] for e in entries}
        for old in previous_entries.values():
            for key in ("file", "labels"):
                name = old.get(key)
                if isinstance(name, str) and name and name not in keep and "/" not in name:
                    (out / name).unlink(missing_ok=True)
        manifest = {"params": params, "clips": entries, "created": utc_now(),
                    "library_versions": library_versions(extra=("scikit-image", "pillow"))}
        atomic_write_json(manifest_path, manifest)
    logger.info("demo corpus in %s: %d clips (%d encoded, %d reused) in %.1f s", out, len(clips),
                n_encoded, len(clips) - n_encoded, time.perf_counter() - started)
    return clips
