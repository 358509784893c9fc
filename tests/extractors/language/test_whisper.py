"""transcript-whisper: both backends on real (espeak-ng) speech, one schema, masking not dropping."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors import MediaItem
from affectcache.extractors.engines.speech import SPEECH_RECOGNIZERS, SpeechSegment, Transcript
from affectcache.extractors.language.transcript_whisper import (
    WhisperTranscriptConfig,
    WhisperTranscriptExtractor,
)
from tests.tiny_models import tiny_model

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

ROW_ATTRS = ("avg_logprob", "no_speech_prob", "language")


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four seconds of synthetic English speech (espeak-ng; .ci/run installs it)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng); speech clips cannot be made")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run([exe, "-v", "en-us", "-s", "150", "-w", str(path),
                    "Hello there. I am really happy to see you today."], check=True, capture_output=True)
    return path


def _check_schema(feats: object, duration_s: float) -> None:
    from affectcache.extractors import FeatureArray

    assert isinstance(feats, FeatureArray)
    assert feats.kind == "text"
    assert feats.n_rows >= 1
    for key in ROW_ATTRS:
        assert len(feats.attrs[key]) == feats.n_rows, key
    assert feats.start_s is not None
    assert feats.end_s is not None
    assert feats.mask is not None
    assert (feats.start_s >= 0).all()
    assert (feats.end_s <= duration_s + 1e-6).all()
    assert (feats.end_s >= feats.start_s).all()


def test_transformers_backend_on_speech(speech_wav: Path) -> None:
    cfg = WhisperTranscriptConfig(backend="transformers", model=tiny_model("hf-whisper"), language="en",
                                  max_new_tokens=10)
    ext = WhisperTranscriptExtractor(cfg)
    item = MediaItem(video_id="speech", path=str(speech_wav))
    feats = ext.extract(item)
    _check_schema(feats, feats.attrs["duration_s"])
    assert 3.0 < feats.attrs["duration_s"] < 6.0
    assert feats.attrs["language"][0] == "en"
    assert all(0.0 <= p <= 1.0 for p in feats.attrs["no_speech_prob"])
    assert ext.extract(item).allclose(feats)  # deterministic


def test_openai_whisper_backend_on_speech(speech_wav: Path) -> None:
    if importlib.util.find_spec("whisper") is None:
        pytest.skip("openai-whisper is not installed (pip install --no-deps openai-whisper; see README)")
    cfg = WhisperTranscriptConfig(backend="openai-whisper", model=tiny_model("openai-whisper"),
                                  language="en", max_new_tokens=8, word_timestamps=True)
    feats = WhisperTranscriptExtractor(cfg).extract(MediaItem(video_id="speech", path=str(speech_wav)))
    _check_schema(feats, feats.attrs["duration_s"])
    assert len(feats.attrs["words"]) == feats.n_rows
    assert feats.attrs["language"] == ["en"] * feats.n_rows


class _FakeRecognizer:
    """Returns planted segments, out of order, for every waveform."""

    def __init__(self, settings: object) -> None:
        self.settings = settings

    def transcribe(self, waves: Sequence[np.ndarray]) -> list[Transcript]:
        out = []
        for wave in waves:
            if not np.abs(wave).max() > 0:
                out.append(Transcript(language="en", segments=[]))
                continue
            out.append(Transcript(language="de", segments=[
                SpeechSegment(start_s=0.5, end_s=0.9, text=" (music) ", avg_logprob=-1.5, no_speech_prob=0.9),
                SpeechSegment(start_s=0.0, end_s=0.5, text=" Hallo. ", avg_logprob=-0.2, no_speech_prob=0.9),
                SpeechSegment(start_s=0.9, end_s=5.0, text="  ", avg_logprob=float("-inf"),
                              no_speech_prob=0.1),
            ]))
        return out

    def describe(self) -> dict[str, str]:
        return {"backend": "fake"}


@pytest.fixture
def fake_backend() -> Iterator[str]:
    SPEECH_RECOGNIZERS["test-fake"] = _FakeRecognizer
    yield "test-fake"
    SPEECH_RECOGNIZERS.pop("test-fake", None)


def test_non_speech_is_masked_not_dropped(fake_backend: str, media_dir: Path, tmp_path: Path) -> None:
    from affectcache.extractors.testing.synthetic import write_test_clip

    ext = WhisperTranscriptExtractor(WhisperTranscriptConfig(backend=fake_backend, model="x"))
    feats = ext.extract(MediaItem(video_id="a", path=str(media_dir / "a.mp4")))
    assert [str(v) for v in feats.values] == ["Hallo.", "(music)", ""]
    np.testing.assert_allclose(feats.start_s, [0.0, 0.5, 0.9])
    assert feats.end_s is not None
    assert feats.end_s[-1] <= feats.attrs["duration_s"] + 1e-6
    # no_speech 0.9 but confident text stays; no_speech 0.9 with a low logprob and empty text are masked.
    assert feats.mask is not None
    assert feats.mask.tolist() == [True, False, False]
    assert feats.attrs["avg_logprob"] == [-0.2, -1.5, None]
    assert feats.attrs["language"] == ["de"] * 3
    silent = write_test_clip(tmp_path / "silent.mp4", duration_s=1.0, amplitude=1e-9)
    quiet = ext.extract(MediaItem(video_id="s", path=str(silent)))
    if quiet.attrs["detected_language"] == "en":  # nothing recognised: one masked row spans the item
        assert quiet.n_rows == 1
        assert quiet.mask is not None
        assert not quiet.mask[0]


def test_transformers_backend_refuses_sampling_settings() -> None:
    from affectcache.extractors.core.errors import ConfigError

    with pytest.raises(ConfigError, match="greedily"):
        WhisperTranscriptConfig.from_dict({"backend": "transformers", "temperatures": [0.0, 0.2]})
