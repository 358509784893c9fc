"""Tiny contract-suite factories of the LaScA extractors (registered in tests/extractors/conftest.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from affectcache.extractors import ExtractorConfig, MediaItem
from affectcache.extractors.visual.blendshapes import BlendshapesConfig
from tests.asset_cache import ensure_test_assets

if TYPE_CHECKING:
    from pathlib import Path


def blendshapes(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    """The real landmarker on the shared synthetic clips (no face in them: every row masked)."""
    ensure_test_assets()
    items = [MediaItem(video_id=n, path=str(media / f"{n}.mp4")) for n in ("a", "b", "c")]
    items.append(MediaItem(video_id="b_clip", path=str(media / "b.mp4"), start_s=0.5, end_s=1.5))
    return BlendshapesConfig(fps=5.0, max_side=64), items, {}


def _fake_items(tmp: Path, durations: dict[str, float]) -> tuple[list[MediaItem], dict[str, Any]]:
    from tests.extractors.lasca.upstream import fake_upstream
    from tests.helpers import make_items

    items = make_items(tmp, list(durations))
    return items, {vid: fake_upstream(vid, d, seed=i) for i, (vid, d) in enumerate(durations.items())}


def lasca_windows(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    """Synthetic upstream; normaliser fit on the first item only (as if it were the train split)."""
    from affectcache.extractors.lasca.windows import LascaWindowsConfig, fit_stats, pool_windows

    items, upstream = _fake_items(tmp, {"w1": 7.0, "w2": 12.5, "w3": 2.0})
    stats = fit_stats([pool_windows(upstream["w1"]["blendshapes"], upstream["w1"]["mfcc"], window_s=3.0,
                                    hop_s=3.0)], window_s=3.0, hop_s=3.0, info={})
    path = stats.save(tmp / "stats.json")
    config = LascaWindowsConfig(window_s=3.0, normaliser=str(path), normaliser_sha256=stats.sha256)
    return config, items, upstream


def lasca_text(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    """``lasca-windows`` rows computed from synthetic upstream."""
    from affectcache.extractors.lasca.text import LascaTextConfig
    from affectcache.extractors.lasca.windows import LascaWindowsExtractor

    config, items, upstream = lasca_windows(tmp, media)
    windows = LascaWindowsExtractor(config)  # type: ignore[arg-type]
    rows = {it.video_id: {"lasca-windows": windows.extract(it, upstream[it.video_id])} for it in items}
    return LascaTextConfig(), items, rows


def lasca_embedding(tmp: Path, media: Path) -> tuple[ExtractorConfig, list[MediaItem], dict[str, Any]]:
    """``lasca-text`` rows from synthetic upstream; the real offline MiniLM."""
    from affectcache.extractors.lasca.embedding import LascaEmbeddingConfig
    from affectcache.extractors.lasca.text import LascaTextExtractor

    config, items, upstream = lasca_text(tmp, media)
    text = LascaTextExtractor(config)  # type: ignore[arg-type]
    return LascaEmbeddingConfig(batch_size=8), items, {
        it.video_id: {"lasca-text": text.extract(it, upstream[it.video_id])} for it in items}
