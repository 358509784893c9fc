"""What the command line says about a build that stopped early (a signal, a full disk, ...)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from affectcache.store.env_errors import find_environment_error
from affectcache.store.stopping import StopRequested

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger(__name__)


def note_progress(exc: BaseException, store: str, names: Sequence[str]) -> None:
    """Add to a stop (signal or environment error) how many entries are complete, and the remedy.

    Bugs and refusals are left as they are: their message says what to fix.
    """
    stopped = isinstance(exc, StopRequested | KeyboardInterrupt)
    if not stopped and find_environment_error(exc) is None:
        return
    try:
        from affectcache.store.zarr_store import FeatureStore

        fs = FeatureStore(store, read_only=True)
        complete = sum(len(fs.videos(name)) for name in names if fs.has_modality(name))
    except Exception as count_error:  # the count is a courtesy: the stop itself is what gets reported
        logger.debug("could not count the complete entries of %s: %s", store, count_error)
        return
    exc.add_note(f"{complete} entries are complete and will not be redone")
    if stopped:
        exc.add_note("rerun the same command to finish")
