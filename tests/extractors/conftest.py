"""Tiny test factories for the contract suite: one per registered extractor, or the suite fails.

A factory takes ``(tmp_path, media_dir)`` and returns ``(config, items)``: a config that runs offline in
well under a second per item, and at least two items of different lengths.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from affectcache.extractors import ExtractorConfig, MediaItem
from affectcache.extractors.audio.ast import ASTConfig
from affectcache.extractors.audio.clap_audio import ClapAudioConfig
from affectcache.extractors.audio.mfcc import MFCCConfig
from affectcache.extractors.audio.wav2vec2_emotion import Wav2Vec2EmotionConfig
from affectcache.extractors.audio.wavlm import WavLMConfig
from affectcache.extractors.audio.wavlm_frames import WavLMFramesConfig
from tests.extractors.language import factories as language_factories
from tests.extractors.lasca import factories as lasca_factories
from tests.extractors.visual import factories as visual_factories
from tests.helpers import AudioLevelConfig, CountingConfig, DerivedConfig, make_items

Factory = Callable[[Path, Path], tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]]


def _media_items(media_dir: Path, *names: str) -> list[MediaItem]:
    return [MediaItem(video_id=n, path=str(media_dir / f"{n}.mp4")) for n in names]


def _mfcc(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    items = [*_media_items(media, "a", "b", "c"),
             MediaItem(video_id="b_clip", path=str(media / "b.mp4"), start_s=0.5, end_s=1.5)]
    return MFCCConfig(batch_size=64), items, {}


def _counting(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    return CountingConfig(), make_items(tmp, ["x1", "x2", "x3"]), {}


def _derived(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    from affectcache.extractors import FeatureArray

    items = make_items(tmp, ["d1", "d2"])
    upstream = {
        it.video_id: {"test-counting": FeatureArray(
            video_id=it.video_id, kind="frame", values=[[1.0, 2.0]] * (3 + i), frame=list(range(3 + i)),
            time_s=[0.1 * k for k in range(3 + i)])}
        for i, it in enumerate(items)}
    return DerivedConfig(), items, upstream


def _audio_model(kind: str, config_type: type[ExtractorConfig], **fields: Any) -> Factory:
    def factory(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
        from tests.tiny_models import tiny_model

        items = [*_media_items(media, "a", "b", "c"),
                 MediaItem(video_id="b_clip", path=str(media / "b.mp4"), start_s=0.5, end_s=1.9)]
        # Short windows so the 0.6-2 s test clips give several (overlapping) windows each.
        return config_type.from_dict({"model": tiny_model(kind), "window_s": 1.0, "hop_s": 0.5,
                                      "min_window_s": 0.25, "batch_size": 3, **fields}), items, {}

    return factory


def _audio_level(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    return AudioLevelConfig(), _media_items(media, "a", "b", "c"), {}


TEST_FACTORIES: dict[str, Factory] = {
    "test-audio-level": _audio_level,
    "ast": _audio_model("ast", ASTConfig),
    "clap-audio": _audio_model("clap-fused", ClapAudioConfig),
    "wav2vec2-emotion": _audio_model("wav2vec2-emotion", Wav2Vec2EmotionConfig),
    "wavlm": _audio_model("wavlm", WavLMConfig, layers=[-1, 1]),
    # float32: a float16 ULP flip between batch groupings exceeds the contract's 1e-4 tolerance.
    "wavlm-frames": _audio_model("wavlm", WavLMFramesConfig, layers=[-1, 1], output_dtype="float32"),
    "blendshapes": lasca_factories.blendshapes,
    "lasca-embedding": lasca_factories.lasca_embedding,
    "lasca-text": lasca_factories.lasca_text,
    "lasca-windows": lasca_factories.lasca_windows,
    "mfcc": _mfcc,
    "behaviour-caption": language_factories.behaviour_caption,
    "behaviour-hidden": language_factories.behaviour_hidden,
    "text-embedding": language_factories.text_embedding,
    "transcript-whisper": language_factories.transcript_whisper,
    "face": visual_factories.face,
    "clip-face": visual_factories.clip_face,
    "clip-scene": visual_factories.clip_scene,
    "grada-face": visual_factories.grada_face,
    "test-counting": _counting,
    "test-derived": _derived,
}
