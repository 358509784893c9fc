"""Environment errors: a full disk, a quota, a permission or a read-only filesystem.

They stop a run like a bug does (nothing more can be written), but they are not bugs: the user fixes the
machine and reruns, and the run resumes where it stopped (complete entries are never redone). The
command line reports them in one line with the remedy and an exit code of their own.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

ENVIRONMENT_ERRNOS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device holding {where}", "free space"),
    errno.EDQUOT: ("disk quota exceeded on {where}", "free space or raise the quota"),
    errno.EACCES: ("permission denied on {where}", "give this user write access, or use another location"),
    errno.EPERM: ("operation not permitted on {where}", "give this user write access, or use another "
                                                         "location"),
    errno.EROFS: ("{where} is on a read-only filesystem", "use a writable location"),
}
"""errno -> (what happened, what to do); ``{where}`` is the path the error names."""


def find_environment_error(exc: BaseException) -> OSError | None:
    """The OSError with an environment errno that is ``exc`` or caused it (``from`` or during), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in ENVIRONMENT_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def describe_environment_error(exc: BaseException, *, where: str | None = None) -> str | None:
    """One line saying what happened and what to do, or None if ``exc`` is not an environment error.

    Args:
        exc: The error that stopped the run.
        where: The location to name (e.g. the store) when the error names no file or one inside it.
    """
    found = find_environment_error(exc)
    if found is None:
        return None
    what, remedy = ENVIRONMENT_ERRNOS[found.errno or 0]
    filename = None if found.filename is None else os.fsdecode(found.filename)
    if filename is None or (where is not None and _inside(filename, where)):
        place = where or "the target location"  # a chunk deep in the store says less than the store
    else:
        place = filename
    return f"{what.format(where=place)}: {remedy} and rerun"


def _inside(path: str, folder: str) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, ValueError):
        return False
