"""Which items a downstream step (the LaScA chain, a trainer) can use, and why the others cannot.

An item whose upstream entry failed (bad media) or does not apply (no audio track) is skipped by every
later step with ONE warning naming the items and the recorded cause, instead of refusing the whole step;
an item whose entry is simply not built (no failure recorded) still needs the build command, and a step
with no usable item left is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from affectcache.store.errors import FeatureNotFoundError, StoreError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from affectcache.store.zarr_store import FeatureStore

logger = logging.getLogger(__name__)

_SHOWN = 5
"""Items named in a warning or error before "... and N more"."""


@dataclass(frozen=True, kw_only=True)
class Usability:
    """The items of a step sorted into usable, skipped (failed or not applicable upstream) and not built."""

    usable: list[str] = field(default_factory=list)
    """Ids whose entries of every modality are complete, in the given order."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Id -> recorded cause, for items that failed or do not apply in some modality."""
    not_built: dict[str, list[str]] = field(default_factory=dict)
    """Modality -> ids with neither a complete entry nor a recorded failure."""

    def warn(self, step: str) -> None:
        """Log one warning naming the skipped items and their causes (nothing when none was skipped)."""
        if not self.skipped:
            return
        shown = [f"{vid} ({cause})" for vid, cause in list(self.skipped.items())[:_SHOWN]]
        more = len(self.skipped) - len(shown)
        one = len(self.skipped) == 1
        logger.warning("%s skips %d %s upstream: %s%s", step, len(self.skipped),
                       "item that failed or does not apply" if one else "items that failed or do not apply",
                       "; ".join(shown),
                       f"; ... and {more} more (see `affectcache status`)" if more else "")


def _short(ids: Sequence[str]) -> str:
    more = len(ids) - _SHOWN
    return ", ".join(ids[:_SHOWN]) + (f" ... and {more} more" if more > 0 else "")


def usability(fs: FeatureStore, modalities: Sequence[str], video_ids: Sequence[str]) -> Usability:
    """Sort ``video_ids`` by whether every one of ``modalities`` has a complete entry for them.

    Raises:
        FeatureNotFoundError: A modality is not in the store at all.
    """
    usable: list[str] = []
    skipped: dict[str, str] = {}
    not_built: dict[str, list[str]] = {}
    complete = {}
    failures = {}
    for name in modalities:
        if not fs.has_modality(name):
            raise FeatureNotFoundError(f"{name!r} is not in {fs.url}; build it first "
                                       f"(`affectcache extract {name} ...`)")
        complete[name] = set(fs.videos(name))
        failures[name] = fs.failures(name)
    for vid in video_ids:
        causes, absent = [], []
        for name in modalities:
            if vid in complete[name]:
                continue
            record = failures[name].get(vid)
            if record is None:
                absent.append(name)
            else:
                verb = "does not apply" if record.get("not_applicable") else "failed"
                causes.append(f"{name} {verb}: {record.get('message') or record.get('error')}")
        if causes:
            # One cause is enough: the others are mostly the same failure seen through another modality.
            skipped[vid] = causes[0]
        elif absent:
            for name in absent:
                not_built.setdefault(name, []).append(vid)
        else:
            usable.append(vid)
    return Usability(usable=usable, skipped=skipped, not_built=not_built)


def usable_ids(fs: FeatureStore, modalities: Sequence[str], video_ids: Sequence[str], *, step: str,
               require_built: bool = True) -> list[str]:
    """The ids a step can use; skipped ones are named in one warning.

    Args:
        fs: The store.
        modalities: What the step reads for every item.
        video_ids: The step's items.
        step: The step's name, for the messages (``"lasca normalise"``, ``"train ras-face"``).
        require_built: Refuse items whose entries are not built and have no recorded failure (else they
            are dropped with the skipped ones, named "not built").

    Raises:
        FeatureNotFoundError: An entry is missing with no recorded failure (``require_built``), or a
            modality is not in the store.
        StoreError: No item is usable.
    """
    result = usability(fs, modalities, video_ids)
    if result.not_built and require_built:
        name, ids = next(iter(result.not_built.items()))
        raise FeatureNotFoundError(f"{step}: {name} is not built for {len(ids)} items ({_short(ids)}); "
                                   f"run `affectcache extract {name} ...` first")
    skipped = dict(result.skipped)
    for name, ids in result.not_built.items():
        for vid in ids:
            skipped[vid] = f"{name} not built" if vid not in skipped else f"{skipped[vid]}; {name} not built"
    Usability(usable=result.usable, skipped=skipped).warn(step)
    if not result.usable:
        raise StoreError(f"{step}: none of the {len(video_ids)} items is usable ({_short(list(skipped))} "
                         "failed, do not apply or are not built upstream; see `affectcache status`)")
    return result.usable
