"""Clip-level examples for MCDM: mean‖std vectors per modality over several corpora, with task labels.

One example per manifest item (an utterance or clip). For each input modality, the entry's valid rows
(``mask`` true; a row of shape ``(..., d)`` counts as its ``prod(...)`` time steps of width ``d``, e.g.
CLAP "seq" rows of ``(T, 768)``) are reduced to ``mean ‖ std`` with the population std, as the authors'
``average_features="mean_std"`` does: ``2d`` values. This is computed once from
:meth:`FeatureStore.load` output, vectorised over entries (a sparse entry-by-step sum) in bounded chunks,
and kept in memory. An entry that is not in the store, or has no valid row, leaves the modality absent for
that example.

Corpora come as (store, manifest) pairs — one corpus per store is how the corpus adapters write label
tracks — and are concatenated; labels come from the manifests (:mod:`affectcache.trainers.mcdm.labels`).
A batch keeps only the modalities present in all of its examples.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch

from affectcache.trainers.mcdm.labels import TaskLabels, task_labels

if TYPE_CHECKING:
    from collections.abc import Sequence

    from affectcache.store.manifest import Manifest
    from affectcache.store.packed import PackedModality
    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 2**20
"""Float32 working set of one aggregation chunk (a chunk holds whole entries; a bigger entry is alone)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class ClipVectors:
    """One modality's clip vectors for a list of entries."""

    modality: str
    """Store modality they were computed from."""
    video_ids: tuple[str, ...]
    """Entries, in row order."""
    values: npt.NDArray[np.float32]
    """(n, 2d) ``mean ‖ std`` per entry (zeros where absent)."""
    present: npt.NDArray[np.bool_]
    """(n,) whether the entry had at least one valid row."""


def aggregate_mean_std(packed: PackedModality, *, chunk_bytes: int = CHUNK_BYTES) -> ClipVectors:
    """``mean ‖ std`` (population) of each entry's valid rows; see the module docstring."""
    values = packed.values
    if values.dtype.kind not in "fiu":
        raise TypeError(f"{packed.modality}: rows hold {values.dtype} values (text?); aggregate an embedding "
                        "modality such as text-embedding instead")
    if values.ndim < 2:
        raise ValueError(f"{packed.modality}: rows must be vectors, got shape {values.shape}")
    dim = int(values.shape[-1])
    steps = math.prod(values.shape[1:-1])          # time steps per row (1 for plain vectors)
    n = len(packed.video_ids)
    out = np.zeros((n, 2 * dim), dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    offsets = packed.offsets
    rows_per_chunk = max(1, chunk_bytes // (4 * steps * dim))
    start = 0
    while start < n:
        # Whole entries up to the row budget (at least one entry).
        stop = int(np.searchsorted(offsets, offsets[start] + rows_per_chunk, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        _aggregate_chunk(packed, start, stop, steps, dim, out, present)
        start = stop
    return ClipVectors(modality=packed.modality, video_ids=packed.video_ids, values=out, present=present)


def _aggregate_chunk(packed: PackedModality, start: int, stop: int, steps: int, dim: int,
                     out: npt.NDArray[np.float32], present: npt.NDArray[np.bool_]) -> None:
    from scipy.sparse import csr_matrix

    r0, r1 = int(packed.offsets[start]), int(packed.offsets[stop])
    n_entries = stop - start
    steps_per_entry = np.diff(packed.offsets[start:stop + 1]) * steps
    x = packed.values[r0:r1].reshape(-1, dim).astype(np.float32, copy=False)
    weight = np.repeat(packed.mask[r0:r1], steps).astype(np.float32)
    # Entry i's row of this (entries x time steps) matrix holds its steps' validity, so a sparse product
    # sums each entry's valid steps: one pass over x, no Python loop, empty entries give zero rows.
    indptr = np.concatenate([[0], np.cumsum(steps_per_entry)])
    owner_sum = csr_matrix((weight, np.arange(len(weight)), indptr), shape=(n_entries, len(weight)))
    counts = np.asarray(owner_sum.sum(axis=1)).ravel()
    denominator = np.maximum(counts, 1.0)[:, None]
    mean = np.asarray(owner_sum @ x) / denominator
    # Second pass on deviations (stable where mean² ≫ variance, unlike E[x²] − E[x]²).
    deviation = x - np.repeat(mean.astype(np.float32), steps_per_entry, axis=0)
    np.square(deviation, out=deviation)
    var = np.asarray(owner_sum @ deviation) / denominator
    out[start:stop, :dim] = mean
    out[start:stop, dim:] = np.sqrt(var)
    present[start:stop] = counts > 0


@dataclass(frozen=True, kw_only=True, eq=False)
class ClipCorpus:
    """One (store, manifest) corpus as clip vectors and task labels, in manifest order."""

    name: str
    """Corpus name (for logs and per-corpus metrics)."""
    video_ids: tuple[str, ...]
    """Items, in manifest order."""
    splits: npt.NDArray[np.str_]
    """(n,) split of each item ('' when the manifest gives none)."""
    labels: TaskLabels
    """Task labels, NaN where unlabelled."""
    features: Mapping[str, ClipVectors]
    """Input modality name → clip vectors aligned with ``video_ids``."""


def load_clip_corpus(store: FeatureStore, manifest: Manifest, modalities: Mapping[str, str], *,
                     corpus: str | None = None) -> ClipCorpus:
    """Aggregate each input modality of the manifest's items and read their task labels.

    Args:
        store: the feature store holding the corpus's modalities.
        manifest: the corpus's items (labels in its columns, see :mod:`.labels`).
        modalities: input name (as the model calls it, e.g. ``face``) → store modality (e.g. ``clip-face``).
        corpus: label reader to use for every item (default: each item's ``corpus`` column).
    """
    ids = tuple(manifest.ids())
    position = {vid: i for i, vid in enumerate(ids)}
    features: dict[str, ClipVectors] = {}
    for name, source in modalities.items():
        if not store.has_modality(source):
            raise ValueError(f"{store.url} has no modality {source!r} (input {name!r}); build it with "
                             f"`affectcache extract {source} -m MANIFEST -s {store.url}`")
        stored = set(store.videos(source))
        wanted = [vid for vid in ids if vid in stored]
        vectors = aggregate_mean_std(store.load(source, wanted))
        values = np.zeros((len(ids), vectors.values.shape[1]), dtype=np.float32)
        present = np.zeros(len(ids), dtype=bool)
        rows = np.array([position[v] for v in wanted], dtype=np.int64)
        values[rows] = vectors.values
        present[rows] = vectors.present
        if not present.all():
            logger.warning("%s: %d of %d items have no valid %s rows (absent from their batches)",
                           corpus or store.url, int((~present).sum()), len(ids), source)
        features[name] = ClipVectors(modality=source, video_ids=ids, values=values, present=present)
    splits = np.array([item.split or "" for item in manifest], dtype=str)
    return ClipCorpus(name=corpus or _corpus_name(manifest), video_ids=ids, splits=splits,
                      labels=task_labels(manifest, corpus), features=features)


def _corpus_name(manifest: Manifest) -> str:
    names = sorted({item.corpus or "" for item in manifest})
    return "+".join(n for n in names if n) or "unnamed"


@dataclass(frozen=True, kw_only=True)
class ClipBatch:
    """One batch: the modalities present in all its examples, and every task's labels (NaN = unlabelled)."""

    features: dict[str, torch.Tensor]
    """Input modality → ``[B, 2d]``."""
    labels: dict[str, torch.Tensor]
    """``emotion [B, 7]``, ``personality [B, 5]``, ``ah [B]``."""
    index: torch.Tensor
    """``[B]`` example indices in the dataset."""


class ClipDataset:
    """Several corpora concatenated; the arrays are torch tensors, batches are index selections."""

    def __init__(self, corpora: Sequence[ClipCorpus]) -> None:
        if not corpora:
            raise ValueError("ClipDataset needs at least one corpus")
        self.corpora = tuple(corpora)
        names = sorted({m for c in corpora for m in c.features})
        widths: dict[str, int] = {}
        for c in corpora:
            for m, vec in c.features.items():
                width = widths.setdefault(m, vec.values.shape[1])
                if width != vec.values.shape[1]:
                    raise ValueError(f"modality {m!r} is {width}-d in one corpus and {vec.values.shape[1]}-d "
                                     f"in {c.name!r}: build it with the same extractor config everywhere")
        sizes = [len(c.video_ids) for c in corpora]
        self.video_ids: tuple[str, ...] = tuple(v for c in corpora for v in c.video_ids)
        self.corpus_names = np.concatenate([np.full(n, c.name) for c, n in zip(corpora, sizes, strict=True)])
        self.splits = np.concatenate([c.splits for c in corpora])
        labels = TaskLabels.concatenate([c.labels for c in corpora])
        self.labels = {"emotion": torch.from_numpy(labels.emotion),
                       "personality": torch.from_numpy(labels.personality), "ah": torch.from_numpy(labels.ah)}
        self.features: dict[str, torch.Tensor] = {}
        self.present: dict[str, torch.Tensor] = {}
        for m in names:
            parts, present = [], []
            for c, n in zip(corpora, sizes, strict=True):
                found = c.features.get(m)
                parts.append(found.values if found is not None else np.zeros((n, widths[m]), np.float32))
                present.append(found.present if found is not None else np.zeros(n, bool))
            self.features[m] = torch.from_numpy(np.concatenate(parts))
            self.present[m] = torch.from_numpy(np.concatenate(present))

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def modality_dims(self) -> dict[str, int]:
        """Input modality → clip-vector width."""
        return {m: int(t.shape[1]) for m, t in self.features.items()}

    def indices(self, *, split: str | None = None, corpus: str | None = None) -> torch.Tensor:
        """Example indices of one split and/or corpus."""
        keep = np.ones(len(self), dtype=bool)
        if split is not None:
            keep &= self.splits == split
        if corpus is not None:
            keep &= self.corpus_names == corpus
        return torch.from_numpy(np.flatnonzero(keep))

    def batch(self, index: torch.Tensor) -> ClipBatch:
        """Examples ``index``: features of the modalities present in all of them, and their labels."""
        features = {m: t.index_select(0, index) for m, t in self.features.items()
                    if bool(self.present[m].index_select(0, index).all())}
        labels = {task: t.index_select(0, index) for task, t in self.labels.items()}
        return ClipBatch(features=features, labels=labels, index=index)

    def batches(self, index: torch.Tensor, batch_size: int, *,
                generator: torch.Generator | None = None) -> list[ClipBatch]:
        """``index`` cut into batches, shuffled first when a generator is given."""
        if generator is not None:
            index = index[torch.randperm(len(index), generator=generator)]
        return [self.batch(index[i:i + batch_size]) for i in range(0, len(index), batch_size)]
