"""The LaScA chain on a store: train-split normaliser stats, then the window, text and embedding modalities.

:func:`fit_normaliser` reads the stored ``blendshapes`` and ``mfcc`` entries of the manifest's **train
split only**, pools them into windows exactly as ``lasca-windows`` does, and saves the per-feature min/max
as a :class:`~affectcache.extractors.lasca.windows.NormaliserStats` file whose content hash then pins the
``lasca-windows`` config (so no other split can leak into it, and refitting on other data changes the
fingerprint of everything downstream). :func:`build_lasca` runs the whole chain. One store holds one
window configuration (modalities are named by extractor); use one store per window length.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from affectcache.extractors.lasca.windows import UPSTREAM, NormaliserStats, fit_stats, pool_windows
from affectcache.store.errors import StoreError
from affectcache.store.runner import BuildReport, build
from affectcache.store.usable import usable_ids

if TYPE_CHECKING:
    from affectcache.store.manifest import Manifest
    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)


def default_stats_path(fs: FeatureStore, window_s: float, hop_s: float, sha256: str) -> Path:
    """``<store folder>/lasca/normaliser-w<window>-h<hop>-<hash>.json`` beside a local store."""
    root = fs.local_path
    if root is None:
        raise StoreError(f"{fs.url} is not local: give an explicit path for the normaliser stats")
    return root.parent / "lasca" / f"normaliser-w{window_s:g}-h{hop_s:g}-{sha256[:12]}.json"


def fit_normaliser(fs: FeatureStore, manifest: Manifest, *, window_s: float, hop_s: float | None = None,
                   split: str = "train", out: str | Path | None = None) -> tuple[NormaliserStats, Path]:
    """Fit min-max stats of the pooled window features on the ``split`` items and save them.

    Returns:
        The stats and the file they were saved to.

    Raises:
        StoreError: No usable item of the split.
        FeatureNotFoundError: The upstream modalities are not built (nor failed) for some of them.
    """
    hop = window_s if hop_s is None else hop_s
    train = manifest.select(split=split)
    ids = train.ids()
    if not ids:
        raise StoreError(f"the manifest has no {split!r} items to fit the normaliser on")
    # Items that failed or do not apply upstream (bad media, no audio) are skipped with one warning.
    ids = usable_ids(fs, UPSTREAM, ids, step=f"the normaliser ({split} split)")
    pooled = [pool_windows(fs.read("blendshapes", vid), fs.read("mfcc", vid), window_s=window_s, hop_s=hop)
              for vid in ids]
    info: dict[str, Any] = {
        "store": fs.url, "split": split, "videos": ids,
        "upstream": {n: fs.provenance(n)["config_fingerprint"] for n in UPSTREAM},
    }
    stats = fit_stats(pooled, window_s=window_s, hop_s=hop, info=info)
    path = Path(out) if out is not None else default_stats_path(fs, window_s, hop, stats.sha256)
    stats.save(path)
    logger.info("normaliser: %d windows of %d %s items -> %s (sha256 %s)", stats.info["n_windows"], len(ids),
                split, path, stats.sha256[:12])
    return stats, path


@dataclass(frozen=True, kw_only=True)
class LascaChain:
    """What :func:`build_lasca` did."""

    stats_path: Path
    """Normaliser stats file."""
    stats: NormaliserStats
    """The stats."""
    reports: tuple[BuildReport, ...]
    """Build reports of lasca-windows, lasca-text, lasca-embedding."""


def build_lasca(fs: FeatureStore, manifest: Manifest, *, window_s: float = 5.0, hop_s: float | None = None,
                text: dict[str, Any] | None = None, embedding: dict[str, Any] | None = None,
                workers: int | None = 0, overwrite: bool = False) -> LascaChain:
    """Fit the normaliser on the train split, then build lasca-windows, lasca-text, lasca-embedding.

    Args:
        fs: Store holding ``blendshapes`` and ``mfcc`` for the manifest's items.
        manifest: The items (its ``train`` split fits the normaliser).
        window_s: Window length, seconds.
        hop_s: Hop, seconds (None = window_s).
        text: ``lasca-text`` config fields (lexicon, template, ...).
        embedding: ``lasca-embedding`` config fields (encoder, ...).
        workers: Local workers per build (0 = in this process: the chain is light, and the encoder then
            loads once).
        overwrite: Rebuild the three modalities from scratch.
    """
    stats, path = fit_normaliser(fs, manifest, window_s=window_s, hop_s=hop_s)
    windows_cfg = {"window_s": window_s, "hop_s": hop_s, "normaliser": str(path),
                   "normaliser_sha256": stats.sha256}
    reports = []
    for name, cfg in (("lasca-windows", windows_cfg), ("lasca-text", dict(text or {})),
                      ("lasca-embedding", dict(embedding or {}))):
        reports.append(build(name, manifest, fs, config=cfg, workers=workers, overwrite=overwrite))
    return LascaChain(stats_path=path, stats=stats, reports=tuple(reports))
