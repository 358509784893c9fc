"""Qwen-VL through transformers without a processor: geometry, patches, prompts, generation, embeddings."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import pytest

from affectcache.extractors import BadMediaError, MediaItem
from affectcache.extractors.engines.video_prompting import plan_segments
from affectcache.extractors.engines.vlm import (
    VIDEO_PAD,
    TransformersVideoLM,
    VideoPrompt,
    VisionGeometry,
    VLMSettings,
    chat_prompt,
    patchify,
)
from affectcache.extractors.language.behaviour_caption import BehaviourCaptionExtractor, ras
from affectcache.extractors.language.behaviour_hidden import (
    BehaviourHiddenConfig,
    BehaviourHiddenExtractor,
    pool_states,
)
from tests.extractors.language.factories import SMALL_VIDEO
from tests.tiny_models import tiny_model

if TYPE_CHECKING:
    from pathlib import Path


@functools.cache
def engine(kind: str) -> TransformersVideoLM:
    return TransformersVideoLM(VLMSettings(model=tiny_model(kind)))


def _frames(n: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_frame_size_is_qwens_smart_resize() -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    geo = engine("qwen2.5-vl").geometry
    for h, w, lo, hi in [(240, 320, 56 * 56, 768 * 28 * 28), (720, 1280, 128 * 28 * 28, 768 * 28 * 28),
                         (64, 64, 56 * 56, 64 * 96), (1080, 1920, 4 * 28 * 28, 16 * 28 * 28)]:
        expected = smart_resize(h, w, factor=28, min_pixels=lo, max_pixels=hi)
        assert geo.frame_size(h, w, min_pixels=lo, max_pixels=hi) == expected
    # perf.md: a 720p source becomes 560x1008 under the default maximum, 720 tokens per frame pair.
    h, w = geo.frame_size(720, 1280, min_pixels=128 * 28 * 28, max_pixels=768 * 28 * 28)
    assert geo.tokens_per_frame_group(h, w) == 720
    assert geo.visual_tokens_per_second(2.0, h, w) == 720.0


def test_patchify_matches_an_explicit_loop() -> None:
    geo = VisionGeometry(model_type="qwen2_5_vl", patch_size=2, merge_size=2, temporal_patch_size=2,
                         mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7))
    frames = _frames(3, 8, 12)
    pixels, grid = patchify(frames, geo)
    assert grid == (2, 4, 6)
    x = (frames / 255.0 - np.array(geo.mean)) / np.array(geo.std)
    x = np.concatenate([x, x[-1:]])  # padded to whole temporal patches with the last frame
    rows = []
    for g in range(2):
        for by in range(2):
            for bx in range(3):
                for my in range(2):
                    for mx in range(2):
                        y0, x0 = (by * 2 + my) * 2, (bx * 2 + mx) * 2
                        patch = x[g * 2:(g + 1) * 2, y0:y0 + 2, x0:x0 + 2, :]  # (t, y, x, c)
                        rows.append(patch.transpose(3, 0, 1, 2).reshape(-1))  # (c, t, y, x)
    np.testing.assert_allclose(pixels, np.stack(rows), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["qwen2.5-vl", "qwen3-vl"])
def test_generation_expands_the_video_to_its_visual_tokens(kind: str) -> None:
    eng = engine(kind)
    h, w = eng.geometry.frame_size(48, 64, min_pixels=1, max_pixels=64 * 96)
    request = VideoPrompt(key="v#0", prompt=chat_prompt("Describe."), frames=_frames(5, h, w), fps=4.0)
    inputs = eng.inputs(request)
    n_visual = int((inputs["input_ids"][0] == eng.video_token_id).sum())
    factor = eng.geometry.factor
    assert n_visual == eng.geometry.visual_tokens(5, h, w) == 3 * (h // factor) * (w // factor)
    assert inputs["pixel_values_videos"].shape[0] == n_visual * 4
    assert set(inputs["mm_token_type_ids"][0].tolist()) == {0, 2}
    (gen,) = eng.generate([request], max_new_tokens=5)
    assert gen.finish_reason in ("stop", "length")
    assert 1 <= gen.n_new_tokens <= 5
    assert gen.n_prompt_tokens == inputs["input_ids"].shape[1]
    assert eng.generate([request], max_new_tokens=5) == [gen]  # greedy: reproducible


def test_qwen3_prompt_stamps_every_temporal_patch() -> None:
    eng = engine("qwen3-vl")
    text = eng.expand_prompt(chat_prompt("x"), (3, 2, 4), fps=4.0)
    assert text.count("<|vision_start|>") == 3
    assert "<0.1 seconds>" in text
    assert "<0.6 seconds>" in text
    assert "<1.1 seconds>" in text
    assert text.count(VIDEO_PAD) == 3 * 2 * 4 // 4


def test_too_long_for_the_context_is_an_error_result_then_bad_media(media_dir: Path) -> None:
    eng = TransformersVideoLM(VLMSettings(model=tiny_model("qwen2.5-vl"), max_model_len=40))
    request = VideoPrompt(key="v#0", prompt=chat_prompt("Describe."), frames=_frames(4, 56, 56), fps=2.0)
    (gen,) = eng.generate([request], max_new_tokens=8)
    assert gen.finish_reason == "error"
    assert "exceeds the context of 40" in (gen.error or "")
    cfg = ras(model=tiny_model("qwen2.5-vl"), max_model_len=40, window_s=None, hop_s=None, fps=2.0,
              min_pixels=56 * 56, max_pixels=56 * 56)
    with pytest.raises(BadMediaError, match="exceeds the context"):
        BehaviourCaptionExtractor(cfg).extract(MediaItem(video_id="a", path=str(media_dir / "a.mp4")))


def test_caption_rows_follow_the_windows(media_dir: Path) -> None:
    cfg = ras(model=tiny_model("qwen3-vl"), max_new_tokens=4, **SMALL_VIDEO)
    feats = BehaviourCaptionExtractor(cfg).extract(MediaItem(video_id="b", path=str(media_dir / "b.mp4")))
    assert feats.kind == "text"
    np.testing.assert_allclose(feats.start_s, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(feats.end_s, [1.0, 1.5, 2.0])
    assert feats.attrs["n_frames"] == [2, 2, 2]
    assert all(s in ("ok", "truncated", "empty") for s in feats.attrs["status"])
    assert feats.attrs["frame_size"] == [64, 64]
    assert all(str(v) == " ".join(str(v).split()) for v in feats.values)  # whitespace-normalised


def test_segments_plan() -> None:
    assert plan_segments(10.0, window_s=4.0, hop_s=2.0, min_window_s=0.5) == [
        (0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0)]
    assert plan_segments(9.2, window_s=4.0, hop_s=2.0, min_window_s=0.5)[-1] == (6.0, 9.2)
    assert plan_segments(3.0, window_s=4.0, hop_s=2.0, min_window_s=0.5) == [(0.0, 3.0)]
    assert plan_segments(3.0, window_s=None, hop_s=None, min_window_s=0.5) == [(0.0, 3.0)]


def test_pooling_statistics() -> None:
    x = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    pooled = pool_states(x, ["mean", "std", "last"])
    np.testing.assert_allclose(pooled[:5], x.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled[5:10], np.sqrt(x.var(0) + 1e-6), rtol=1e-4)
    np.testing.assert_array_equal(pooled[10:], x[-1])


def test_hidden_branches(media_dir: Path) -> None:
    item = MediaItem(video_id="a", path=str(media_dir / "a.mp4"))
    out = {branch: BehaviourHiddenExtractor(BehaviourHiddenConfig(
        model=tiny_model("qwen3-vl"), branch=branch, **SMALL_VIDEO)).extract(item)
        for branch in ("multimodal", "visual", "text")}
    for feats in out.values():
        assert feats.values.dtype == np.float16
        assert feats.values.shape == (1, 3 * 64)
        assert feats.mask is not None
        assert feats.mask.all()
    assert not np.allclose(out["multimodal"].values, out["visual"].values)
    assert not np.allclose(out["multimodal"].values, out["text"].values)
    # The text branch never sees the video: the same for any clip.
    other = BehaviourHiddenExtractor(BehaviourHiddenConfig(model=tiny_model("qwen3-vl"), branch="text",
                                                           **SMALL_VIDEO)).extract(
        MediaItem(video_id="c", path=str(media_dir / "c.mp4")))
    np.testing.assert_array_equal(other.values[0], out["text"].values[0])
