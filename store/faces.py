"""Which videos of a store have no face at all (recorded by the ``face`` extractor, not an error)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from affectcache.store.zarr_store import FeatureStore


def videos_without_face(fs: FeatureStore, modality: str = "face") -> list[str]:
    """Sorted ids of the complete ``modality`` entries whose attrs say ``no_face`` (every row masked)."""
    # Entry metadata only: no array is read.
    return sorted(vid for vid, state in fs.entry_states(modality).items()
                  if state.complete and state.warning is not None and state.warning.startswith("no face"))
