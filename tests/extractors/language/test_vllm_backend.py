"""The vLLM captioning path with a fake engine: requests, sampling, batching, order, failures."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors import BadMediaError, MediaItem
from affectcache.extractors.core.errors import ConfigError
from affectcache.extractors.engines.video_prompting import SCD_FULL_PROMPT, SCD_SHORT_PROMPT
from affectcache.extractors.engines.vlm import VIDEO_PLACEHOLDER, VLM_BACKENDS, VLLMVideoLM, VLMSettings
from affectcache.extractors.language.behaviour_caption import (
    BehaviourCaptionExtractor,
    normalise_caption,
    ras,
    scd,
)
from affectcache.store.runner import build
from affectcache.store.zarr_store import FeatureStore
from tests.extractors.language.factories import SMALL_VIDEO
from tests.extractors.language.fakes import FakeLLM, FakeSamplingParams
from tests.tiny_models import tiny_model

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

FAKE = "test-fake-vllm"


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    llm = FakeLLM()
    VLM_BACKENDS[FAKE] = lambda settings: VLLMVideoLM(settings, llm=llm,
                                                      sampling_params=FakeSamplingParams.make)
    yield llm
    VLM_BACKENDS.pop(FAKE, None)


def _items(media: Path) -> list[MediaItem]:
    return [MediaItem(video_id="a", path=str(media / "a.mp4")),
            MediaItem(video_id="b", path=str(media / "b.mp4"))]


def test_vllm_is_imported_lazily_and_a_missing_vllm_says_what_to_do() -> None:
    import importlib.util

    engine = VLLMVideoLM(VLMSettings(model=tiny_model("qwen2.5-vl")))
    assert "vllm" not in sys.modules  # importing the backends and building one did not import it
    assert engine.generate([], max_new_tokens=4) == []
    if importlib.util.find_spec("vllm") is not None:  # pragma: no cover - GPU hosts
        pytest.skip("vllm is installed here")
    with pytest.raises(ConfigError, match="vlm"):
        engine._engine()


def test_requests_carry_prompt_frames_metadata_and_greedy_sampling(fake_llm: FakeLLM,
                                                                    media_dir: Path) -> None:
    cfg = ras(model=tiny_model("qwen2.5-vl"), backend=FAKE, max_new_tokens=50, batch_size=64, **SMALL_VIDEO)
    ext = BehaviourCaptionExtractor(cfg)
    out = ext.extract_batch(_items(media_dir))
    assert len(fake_llm.calls) == 1  # every segment of both videos in one engine call
    inputs, params = fake_llm.calls[0]
    assert params.kwargs == {"temperature": 0.0, "max_tokens": 50, "seed": 0}
    assert len(inputs) == out[0].n_rows + out[1].n_rows
    for request in inputs:
        assert request["prompt"].count(VIDEO_PLACEHOLDER) == 1
        assert request["prompt"].endswith("<|im_start|>assistant\n")
        assert cfg.prompt in request["prompt"]
        frames, meta = request["multi_modal_data"]["video"]
        assert frames.dtype == np.uint8
        assert frames.ndim == 4
        assert frames.shape[3] == 3
        assert frames.shape[1] % 28 == 0
        assert frames.shape[2] % 28 == 0
        assert frames.shape[1] * frames.shape[2] <= cfg.max_pixels
        assert 1 <= len(frames) <= cfg.max_frames
        assert meta["do_sample_frames"] is False
        assert meta["fps"] == cfg.fps
        assert meta["total_num_frames"] == len(frames) == len(meta["frames_indices"])
    # Output order follows request order: each caption names its own segment's frame count.
    for feats in out:
        counts = feats.attrs["n_frames"]
        assert [str(v) for v in feats.values] == [f"a person, {n} frames" for n in counts]
        assert feats.attrs["status"] == ["ok"] * feats.n_rows
        assert feats.attrs["visual_tokens_per_second"] > 0


def test_batches_of_batch_size_segments_span_videos(fake_llm: FakeLLM, media_dir: Path) -> None:
    cfg = ras(model=tiny_model("qwen2.5-vl"), backend=FAKE, batch_size=3, **SMALL_VIDEO)
    out = BehaviourCaptionExtractor(cfg).extract_batch(_items(media_dir))
    sizes = [len(inputs) for inputs, _ in fake_llm.calls]
    assert sum(sizes) == sum(f.n_rows for f in out)
    assert all(s <= 3 for s in sizes)
    assert sizes[0] == 3
    assert len(sizes) == -(-sum(sizes) // 3)


def test_empty_and_truncated_answers_are_flagged(fake_llm: FakeLLM, media_dir: Path) -> None:
    cfg = ras(model=tiny_model("qwen2.5-vl"), backend=FAKE, max_new_tokens=3, **SMALL_VIDEO)
    fake_llm.answers = {1: "   \n "}
    feats = BehaviourCaptionExtractor(cfg).extract(_items(media_dir)[1])
    status = feats.attrs["status"]
    for row, (s, text, ok) in enumerate(zip(status, feats.values, feats.mask, strict=True)):
        if row == 1:
            assert s == "empty"
            assert str(text) == ""
            assert not ok
        else:
            assert s == "truncated"
            assert ok
            assert len(str(text).split()) == 3
    assert "empty" in status
    assert "truncated" in status


def test_one_video_too_long_for_the_context_fails_alone(fake_llm: FakeLLM, media_dir: Path,
                                                         store_path: Path) -> None:
    # Whole-clip segments: the 2 s clip gives 4 frames at 2 fps, the 1 s clip 2.
    fake_llm.max_frames = 3
    cfg = scd(model=tiny_model("qwen2.5-vl"), backend=FAKE, fps=2.0, min_pixels=56 * 56, max_pixels=64 * 96)
    with pytest.raises(BadMediaError, match="no usable behaviour caption for b"):
        BehaviourCaptionExtractor(cfg).extract_batch(_items(media_dir))
    report = build("behaviour-caption", _items(media_dir), store_path, config=cfg, workers=0)
    assert report.written == ["a"]
    assert [f.video_id for f in report.failed] == ["b"]
    assert "maximum model length" in report.failed[0].message
    assert FeatureStore(store_path).failures("behaviour-caption")["b"]["error"] == "BadMediaError"


def test_bad_media_fails_its_item_only(fake_llm: FakeLLM, media_dir: Path, store_path: Path) -> None:
    items = [*_items(media_dir), MediaItem(video_id="broken", path=str(media_dir / "truncated.mp4")),
             MediaItem(video_id="audio_only", path=str(media_dir / "empty.mp4"))]
    cfg = ras(model=tiny_model("qwen2.5-vl"), backend=FAKE, **SMALL_VIDEO)
    report = build("behaviour-caption", items, store_path, config=cfg, workers=0)
    assert sorted(report.written) == ["a", "b"]
    assert sorted(f.video_id for f in report.failed) == ["audio_only", "broken"]


def test_presets_and_whitespace() -> None:
    s = scd()
    assert s.model == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert s.window_s is None
    assert s.prompt == SCD_FULL_PROMPT
    assert scd(short_prompt=True).prompt == SCD_SHORT_PROMPT
    r = ras()
    assert (r.model, r.window_s, r.hop_s, r.fps, r.max_frames, r.max_new_tokens) == (
        "Qwen/Qwen3-VL-4B-Instruct", 4.0, 2.0, 4.0, 16, 100)
    assert "valence" in r.prompt
    assert "arousal" in r.prompt
    assert normalise_caption("  The  person\n\tsmiles.\n") == "The person smiles."
    with pytest.raises(ConfigError, match="backend"):
        ras(backend="nope")
